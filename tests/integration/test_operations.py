"""What operators rely on: /metrics counters that match what happened, /healthz and /readyz, and the start-up
recursion guard that refuses configurations where outputs would trigger new notifications."""

from __future__ import annotations

import pytest
from integration_support import (
    exists,
    free_port,
    http_get,
    metric,
    object_keys,
    parse_metrics,
    png_bytes,
    queue_empty,
    read_queue,
    skimage_photo,
    synthetic_png,
    synthetic_rgb,
    wait_for,
)

from worker.runtime import StartupError
from worker.service import build


# -- 10. /metrics after a mixed batch, and the health endpoints --------------------------------------------------------
def test_metrics_match_a_mixed_batch(stack, s3, sqs, make_settings, run_service):
    good = {"ok/coffee.png": skimage_photo("coffee.png"), "ok/chelsea.png": skimage_photo("chelsea.png")}
    cut = png_bytes(synthetic_rgb(256, 192, seed=13))
    bad = {
        "bad/notes.jpg": (b"just some text\n", "not_an_image"),
        "bad/cut.png": (cut[: len(cut) // 2], "corrupt_image"),
    }
    for key, data in good.items():
        s3.put_object(Bucket=stack.source_bucket, Key=key, Body=data)
    for key, (data, _) in bad.items():
        s3.put_object(Bucket=stack.source_bucket, Key=key, Body=data)
    n, m = len(good), len(bad)

    runner = run_service(make_settings(stack, metrics_port=free_port()), own_http=True)
    assert http_get(f"{runner.url}/healthz")[0] == 200

    def scrape() -> dict:
        status, text = http_get(f"{runner.url}/metrics")
        assert status == 200
        return parse_metrics(text)

    def all_settled() -> bool:
        samples = scrape()
        outcomes = ("done", "dead_lettered", "ignored", "retried")
        return sum(metric(samples, "faceblur_messages_total", outcome=o) for o in outcomes) >= n + m + 1

    wait_for(all_settled, timeout=60, what="the whole batch to be settled")
    wait_for(lambda: queue_empty(sqs, stack.queue_url), timeout=15, what="an empty source queue")
    wait_for(lambda: metric(scrape(), "faceblur_in_flight_messages") == 0, timeout=5, what="nothing in flight")
    samples = scrape()

    assert metric(samples, "faceblur_photos_total", outcome="stored") == n
    assert metric(samples, "faceblur_photos_total", outcome="failed") == m
    assert metric(samples, "faceblur_photos_total", outcome="skipped_duplicate") == 0
    assert metric(samples, "faceblur_messages_total", outcome="done") == n
    assert metric(samples, "faceblur_messages_total", outcome="dead_lettered") == m
    assert metric(samples, "faceblur_messages_total", outcome="ignored") == 1
    assert metric(samples, "faceblur_messages_total", outcome="retried") == 0
    assert metric(samples, "faceblur_dlq_sends_total", reason="not_an_image") == 1
    assert metric(samples, "faceblur_dlq_sends_total", reason="corrupt_image") == 1
    dlq_total = sum(v for (name, _), v in samples.items() if name == "faceblur_dlq_sends_total")
    assert dlq_total == m
    assert metric(samples, "faceblur_stage_seconds_count", stage="detect") == n
    assert metric(samples, "faceblur_faces_per_photo_count") == n
    assert metric(samples, "faceblur_pool_size") == 2
    assert metric(samples, "faceblur_receive_errors_total") == 0
    assert metric(samples, "faceblur_last_poll_timestamp_seconds") > 0
    # ...and they agree with the buckets and the DLQ.
    assert object_keys(s3, stack.output_bucket) == set(good)
    assert sorted(msg.attributes["faceblur-reason"] for msg in read_queue(sqs, stack.dlq_url)) == sorted(
        reason for _, reason in bad.values()
    )

    assert http_get(f"{runner.url}/healthz")[0] == 200
    assert http_get(f"{runner.url}/readyz")[0] == 200
    runner.request_stop()
    status, body = http_get(f"{runner.url}/readyz")
    assert status == 503, body
    assert "shutting down" in body
    runner.thread.join(timeout=60)  # the consumer has finished; this test still owns the HTTP server
    assert not runner.alive()
    assert http_get(f"{runner.url}/readyz")[0] == 503
    runner.join()


def test_readyz_is_503_until_the_consumer_runs(stack, make_settings):
    service = build(make_settings(stack, metrics_port=free_port()))
    try:
        status, body = http_get(f"http://127.0.0.1:{service.http.port}/readyz")
        assert status == 503
        assert "starting" in body
        assert http_get(f"http://127.0.0.1:{service.http.port}/healthz")[0] == 200
    finally:
        service.http.stop()


# -- 12. the recursion guard -------------------------------------------------------------------------------------------
def _filter_notification(s3, sqs, stack, prefix: str) -> None:
    """Replace the source bucket's notification with one that only covers keys under `prefix`."""
    arn = sqs.get_queue_attributes(QueueUrl=stack.queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(
        Bucket=stack.source_bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "Id": "faceblur",
                    "QueueArn": arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}},
                }
            ]
        },
    )


@pytest.mark.parametrize(
    ("notification_prefix", "output_prefix"),
    [
        pytest.param(None, "", id="same-bucket-no-prefix"),
        pytest.param(None, "blurred/", id="prefix-covered-by-unfiltered-notification"),
        pytest.param("uploads/", "uploads/blurred/", id="prefix-inside-notification-filter"),
        pytest.param("uploads/", "", id="filtered-notification-but-no-prefix"),
    ],
)
def test_recursive_configuration_refuses_to_start(stack, s3, sqs, make_settings, notification_prefix, output_prefix):
    if notification_prefix is not None:
        _filter_notification(s3, sqs, stack, notification_prefix)
    settings = make_settings(stack, output_bucket=stack.source_bucket, output_prefix=output_prefix)
    with pytest.raises(StartupError, match=r"(?i)recursion|notification|OUTPUT_PREFIX"):
        build(settings)


@pytest.mark.parametrize(
    ("notification_prefix", "output_bucket", "output_prefix"),
    [
        pytest.param(None, "output", "", id="different-bucket"),
        pytest.param("uploads/", "source", "blurred/", id="same-bucket-prefix-outside-the-filter"),
    ],
)
def test_safe_configuration_starts(stack, s3, sqs, make_settings, notification_prefix, output_bucket, output_prefix):
    if notification_prefix is not None:
        _filter_notification(s3, sqs, stack, notification_prefix)
    bucket = stack.output_bucket if output_bucket == "output" else stack.source_bucket
    service = build(make_settings(stack, output_bucket=bucket, output_prefix=output_prefix))
    assert service.consumer.handler.storage.target.bucket == bucket
    assert service.consumer.handler.storage.target.prefix == output_prefix


def test_outputs_under_an_unwatched_prefix_of_the_source_bucket_do_not_loop(stack, s3, sqs, make_settings, run_service):
    _filter_notification(s3, sqs, stack, "uploads/")
    settings = make_settings(stack, output_bucket=stack.source_bucket, output_prefix="blurred/")
    runner = run_service(settings)
    s3.put_object(Bucket=stack.source_bucket, Key="uploads/photo.png", Body=synthetic_png(seed=14))

    wait_for(lambda: exists(s3, stack.source_bucket, "blurred/uploads/photo.png"), timeout=60, what="the output")
    wait_for(lambda: queue_empty(sqs, stack.queue_url), timeout=15, what="an empty source queue")
    assert object_keys(s3, stack.source_bucket) == {"uploads/photo.png", "blurred/uploads/photo.png"}
    head = s3.head_object(Bucket=stack.source_bucket, Key="blurred/uploads/photo.png")
    assert head["Metadata"]["detector"] == "local"
    assert runner.value("faceblur_photos_total", outcome="stored") == 1
    assert runner.value("faceblur_messages_total", outcome="done") == 1
    assert read_queue(sqs, stack.dlq_url) == []
