"""Message lifecycle under time: graceful shutdown on SIGTERM, the visibility heartbeat for slow work, retries with
backoff and the queue's redrive to the DLQ. All against the session's moto server over HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from integration_support import (
    ROOT,
    RecordingQueue,
    SlowDetector,
    drain_queue,
    exists,
    free_port,
    http_get,
    keys_in_body,
    metric,
    object_keys,
    parse_metrics,
    queue_depth,
    queue_empty,
    read_queue,
    skimage_photo,
    synthetic_png,
    wait_for,
)

pytestmark = pytest.mark.slow


# -- 8. SIGTERM while photos are in work -------------------------------------------------------------------------------
def _worker_env(stack, metrics_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MAGICK_TEMPORARY_PATH"))}
    env.update(stack.env())
    env.update(
        {
            "METRICS_PORT": str(metrics_port),
            "METRICS_HOST": "127.0.0.1",
            "SQS_WAIT_SECONDS": "1",
            "LOG_FORMAT": "json",
            "WORKER_CONCURRENCY": "2",
            "SHUTDOWN_GRACE_SECONDS": "30",
            "PYTHONUNBUFFERED": "1",
        }
    )
    # Wand otherwise tries many library names (each spawning ldconfig) before Debian's; this only reorders the search.
    env.setdefault("WAND_MAGICK_LIBRARY_SUFFIX", "-6.Q16")
    return env


def _in_flight(url: str) -> float:
    try:
        status, text = http_get(f"{url}/metrics", timeout=2)
    except OSError:
        return 0.0  # not listening yet
    return metric(parse_metrics(text), "faceblur_in_flight_messages") if status == 200 else 0.0


def _log_events(path) -> list[dict]:
    events = []
    for line in path.read_text().splitlines():
        try:
            doc = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(doc, dict) and "event" in doc:
            events.append(doc)
    return events


def test_sigterm_mid_flight_exits_cleanly_and_loses_nothing(stack, s3, sqs, make_settings, run_service, tmp_path):
    drain_queue(sqs, stack.queue_url)
    keys = [f"sigterm/astronaut {i}.png" for i in range(5)]
    photo = skimage_photo("astronaut.png")
    for key in keys:
        s3.put_object(Bucket=stack.source_bucket, Key=key, Body=photo)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker", "run"],
            cwd=ROOT,
            env=_worker_env(stack, port),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        def working() -> bool:
            assert proc.poll() is None, f"the worker exited early:\n{log_path.read_text()[-3000:]}"
            return _in_flight(url) > 0

        wait_for(working, timeout=90, interval=0.05, what="a photo in work")
        assert http_get(f"{url}/readyz")[0] == 200
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30 + 15)  # SHUTDOWN_GRACE_SECONDS plus time to settle and exit
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    logs = log_path.read_text()
    assert code == 0, logs[-3000:]

    events = _log_events(log_path)
    names = [e["event"] for e in events]
    assert "stop requested: finishing in-flight work" in names, logs[-3000:]
    after_signal = names[names.index("stop requested: finishing in-flight work") :]
    # The photos in work when the signal came were finished, not abandoned.
    assert "photo blurred" in after_signal
    stopped = next(e for e in events if e["event"] == "consumer stopped")
    assert stopped["unfinished"] == 0

    # Nothing lost: every photo has an output or its message is back in the queue, visible.
    stored = {k for k in keys if exists(s3, stack.output_bucket, k)}
    assert stored, "the photos in work were not finished"
    waiting = read_queue(sqs, stack.queue_url)
    waiting_keys = [k for m in waiting for k in keys_in_body(m.body)]
    assert sorted(waiting_keys) == sorted(set(keys) - stored)
    assert queue_depth(sqs, stack.queue_url) == (len(waiting), 0)
    assert read_queue(sqs, stack.dlq_url) == []

    # A second run drains the rest.
    run_service(make_settings(stack))
    wait_for(lambda: object_keys(s3, stack.output_bucket) == set(keys), timeout=90, what="every output")
    wait_for(lambda: queue_empty(sqs, stack.queue_url), timeout=15, what="an empty source queue")
    assert read_queue(sqs, stack.dlq_url) == []


def test_message_received_after_the_stop_signal_goes_straight_back(stack, s3, sqs, make_settings, run_service):
    drain_queue(sqs, stack.queue_url)
    runner = run_service(make_settings(stack, wait_seconds=3))
    wait_for(lambda: runner.service.consumer.ready, timeout=30, what="the consumer to start polling")
    runner.request_stop()  # most likely during the first long poll, which the upload below then ends
    s3.put_object(Bucket=stack.source_bucket, Key="late.png", Body=synthetic_png(seed=16))
    runner.join()

    # Whether or not that poll still received it, the message is visible at once (the queue's own visibility
    # timeout is 60 s), and nothing was processed.
    assert queue_depth(sqs, stack.queue_url) == (1, 0)
    assert object_keys(s3, stack.output_bucket) == set()
    assert runner.value("faceblur_photos_total", outcome="stored") == 0


def test_work_beyond_the_grace_period_is_returned_to_the_queue(stack, s3, sqs, make_settings, run_service):
    drain_queue(sqs, stack.queue_url)
    s3.put_object(Bucket=stack.source_bucket, Key="too slow.png", Body=synthetic_png(seed=17))
    spies: dict[str, SlowDetector] = {}

    def prepare(service) -> None:
        spies["detector"] = service.consumer.handler.detector = SlowDetector(service.consumer.handler.detector, 4.0)

    runner = run_service(make_settings(stack, shutdown_grace_seconds=1), prepare=prepare)
    assert spies["detector"].started.wait(30), "the photo never reached the detector"
    runner.request_stop()
    runner.join(timeout=20)

    assert runner.service.consumer.abandoned == 1
    assert queue_depth(sqs, stack.queue_url) == (1, 0), "the unfinished message must be visible again at once"
    assert runner.value("faceblur_messages_total", outcome="returned_on_shutdown") == 1
    # The abandoned work may still finish in this process; its message is not deleted (nothing lost, and a redelivery
    # is skipped as already done).
    wait_for(lambda: exists(s3, stack.output_bucket, "too slow.png"), timeout=30, what="the abandoned work to end")
    assert queue_depth(sqs, stack.queue_url) == (1, 0)
    assert runner.value("faceblur_messages_total", outcome="done") == 0


# -- 9. the heartbeat keeps slow work invisible ------------------------------------------------------------------------
QUEUE_VISIBILITY = 3  # the queue's own VisibilityTimeout: a message reappears after this unless extended
SLOW = 6.0  # seconds each detection takes: well beyond the queue's visibility


def test_heartbeat_keeps_a_slow_photo_invisible(make_stack, s3, sqs, make_settings, run_service):
    stack = make_stack(visibility_seconds=QUEUE_VISIBILITY)
    drain_queue(sqs, stack.queue_url)
    s3.put_object(Bucket=stack.source_bucket, Key="slow.png", Body=synthetic_png(seed=11))
    spies: dict[str, object] = {}

    def prepare(service) -> None:
        spies["detector"] = service.consumer.handler.detector = SlowDetector(service.consumer.handler.detector, SLOW)
        spies["queue"] = service.consumer.source = RecordingQueue(service.consumer.source)

    # Two slots: if the message reappeared, this very worker would receive it again.
    settings = make_settings(stack, heartbeat_seconds=1, visibility_seconds=10, concurrency=2)
    runner = run_service(settings, prepare=prepare)
    detector: SlowDetector = spies["detector"]  # type: ignore[assignment]
    recorder: RecordingQueue = spies["queue"]  # type: ignore[assignment]

    assert detector.started.wait(30), "the photo never reached the detector"
    received_at = recorder.received[0][0]
    # Once the queue's own visibility is over, another consumer polls: the message must stay invisible.
    time.sleep(max(0.0, received_at + QUEUE_VISIBILITY + 0.5 - time.monotonic()))
    stolen = []
    while time.monotonic() < received_at + SLOW - 1 and not stolen:
        stolen = sqs.receive_message(QueueUrl=stack.queue_url, WaitTimeSeconds=1, VisibilityTimeout=1).get(
            "Messages", []
        )
    assert stolen == [], "the message reappeared while still in work"
    assert queue_depth(sqs, stack.queue_url) == (0, 1)

    wait_for(lambda: exists(s3, stack.output_bucket, "slow.png"), timeout=30, what="the output")
    wait_for(lambda: queue_empty(sqs, stack.queue_url), timeout=15, what="an empty source queue")
    assert detector.calls == 1
    assert [(mid, count) for _, mid, count in recorder.received] == [(recorder.received[0][1], 1)]
    assert runner.value("faceblur_visibility_extensions_total") >= 1
    assert runner.value("faceblur_photos_total", outcome="stored") == 1
    assert runner.value("faceblur_messages_total", outcome="done") == 1
    assert runner.value("faceblur_messages_total", outcome="retried") == 0


# -- 11. a retryable failure: backoff, then the queue's redrive to the DLQ ---------------------------------------------
def _failing_output_stack(make_stack, s3, sqs, max_receive_count: int):
    stack = make_stack(max_receive_count=max_receive_count)
    s3.delete_bucket(Bucket=stack.output_bucket)  # every PUT now fails (NoSuchBucket): a transient S3 error
    drain_queue(sqs, stack.queue_url)
    s3.put_object(Bucket=stack.source_bucket, Key="retry/photo.png", Body=synthetic_png(seed=12))
    return stack


def _record_queue(spies: dict):
    def prepare(service) -> None:
        spies["queue"] = service.consumer.source = RecordingQueue(service.consumer.source)

    return prepare


def test_transient_failure_backs_off_then_redrives_to_the_dlq(make_stack, s3, sqs, make_settings, run_service):
    stack = _failing_output_stack(make_stack, s3, sqs, max_receive_count=2)
    spies: dict[str, RecordingQueue] = {}
    # (heartbeat_seconds=50: no heartbeat in this test, so every visibility change recorded is a retry)
    settings = make_settings(stack, retry_base_seconds=2, retry_max_seconds=60, heartbeat_seconds=50)
    runner = run_service(settings, prepare=_record_queue(spies))
    recorder = spies["queue"]
    wait_for(lambda: read_queue(sqs, stack.dlq_url), timeout=60, what="the queue's redrive to the DLQ")

    (dead,) = read_queue(sqs, stack.dlq_url)
    assert keys_in_body(dead.body) == ["retry/photo.png"]  # nothing lost: the original notification, for a redrive
    assert queue_empty(sqs, stack.queue_url)
    assert {mid for _, mid, _ in recorder.received} == {dead.message_id}

    receives = [(t, count) for t, _, count in recorder.received]
    retries = [(t, seconds) for t, _, seconds in recorder.visibility]
    assert [count for _, count in receives] == [1, 2]  # maxReceiveCount=2: the third receive moved it to the DLQ
    assert len(retries) == 2
    first, second = retries[0][1], retries[1][1]
    assert 1 <= first <= 2, f"first retry delay {first} s (base 2 s)"
    assert 2 <= second <= 4, f"second retry delay {second} s (base 2 s, doubled)"
    # The message was held back for the delay, not re-received at once.
    assert receives[1][0] - retries[0][0] >= first - 0.25

    assert runner.value("faceblur_retries_total", reason="s3_error") == 2
    assert runner.value("faceblur_messages_total", outcome="retried") == 2
    assert runner.value("faceblur_photos_total", outcome="failed") == 2
    assert runner.value("faceblur_photos_total", outcome="stored") == 0
    assert runner.value("faceblur_messages_total", outcome="done") == 0
    assert runner.alive()


def test_first_retry_is_delayed_with_a_one_second_base(make_stack, s3, sqs, make_settings, run_service):
    stack = _failing_output_stack(make_stack, s3, sqs, max_receive_count=3)
    spies: dict[str, RecordingQueue] = {}
    settings = make_settings(stack, retry_base_seconds=1, retry_max_seconds=60, heartbeat_seconds=50)
    run_service(settings, prepare=_record_queue(spies))
    recorder = spies["queue"]
    wait_for(lambda: recorder.visibility, timeout=30, what="the first retry")
    (_, _, seconds) = recorder.visibility[0]
    assert seconds >= 1, f"the first retry was made visible again after {seconds} s"
