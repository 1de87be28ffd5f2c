"""Faults between the worker and S3/SQS (a real fault-injecting proxy in front of the moto server), one at a time,
and the conditional writes that keep a retried or concurrent PUT from writing a photo's output twice.

Regression tests for what the chaos soak (tests/soak) found: a PUT whose answer was lost was retried by botocore
and wrote a second version of the output.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from integration_support import ROOT, drain_queue, queue_empty, synthetic_png, wait_for

from tests.soak.faultproxy import Fault, FaultProxy, Faults, Request
from worker.aws import client
from worker.errors import TransientError
from worker.events import ObjectRef
from worker.storage import OutputTarget, Storage


@contextmanager
def through(url: str) -> Iterator[None]:
    """Clients built inside talk to S3 and SQS through `url`."""
    saved = os.environ["AWS_ENDPOINT_URL"]
    os.environ["AWS_ENDPOINT_URL"] = url
    try:
        yield
    finally:
        os.environ["AWS_ENDPOINT_URL"] = saved


def first_put_only(bucket: str):
    """An `exclude` predicate: every request is exempt except the first PutObject into `bucket`."""
    seen = []

    def exclude(r: Request) -> bool:
        is_put = r.method == "PUT" and r.path.startswith(f"/{bucket}/") and "x-amz-copy-source" not in r.headers
        if is_put and not seen:
            seen.append(r.path)
            return False
        return True

    return exclude


def versions(s3, bucket: str, key: str) -> list[dict]:
    return s3.list_object_versions(Bucket=bucket, Prefix=key).get("Versions", [])


@pytest.mark.parametrize("fault", [Fault.ERROR_AFTER, Fault.RESET_AFTER])
def test_a_put_whose_answer_is_lost_writes_the_output_once(
    fault, stack, s3, sqs, make_settings, run_service, moto_endpoint
):
    s3.put_bucket_versioning(Bucket=stack.output_bucket, VersioningConfiguration={"Status": "Enabled"})
    drain_queue(sqs, stack.queue_url)
    key = "faults/answer lost+1.png"
    s3.put_object(Bucket=stack.source_bucket, Key=key, Body=synthetic_png(seed=11))
    faults = Faults.only(fault, rate=1.0, exclude=first_put_only(stack.output_bucket), seed=1)
    with FaultProxy(upstream=moto_endpoint, faults=faults) as proxy:
        with through(proxy.url):
            runner = run_service(make_settings(stack))
        wait_for(lambda: runner.value("faceblur_messages_total", outcome="done") == 1, timeout=60, what="done")
        wait_for(lambda: queue_empty(sqs, stack.queue_url), timeout=15, what="an empty queue")
        assert proxy.counts()[fault.value] == 1, "the fault was not injected: the test proves nothing"
    assert len(versions(s3, stack.output_bucket, key)) == 1, "the retried PUT wrote a second version"
    # It was this worker's own write that landed: counted as stored, not as someone else's duplicate.
    assert runner.value("faceblur_photos_total", outcome="stored") == 1
    assert runner.value("faceblur_photos_total", outcome="skipped_duplicate") == 0


def test_a_second_writer_of_the_same_source_is_refused_and_told_so(stack, s3):
    s3.put_bucket_versioning(Bucket=stack.output_bucket, VersioningConfiguration={"Status": "Enabled"})
    storage = Storage(client("s3"), OutputTarget(stack.output_bucket), 10 * 2**20)
    ref = ObjectRef(stack.source_bucket, "two/writers.png", etag="e1", size=10)
    first, second = storage.output_state(ref), storage.output_state(ref)  # both looked before either wrote
    assert first.etag is None
    assert not first.same_source
    common = {"etag": "e1", "faces": 0, "detector": "local"}
    assert storage.store(ref, b"one", "image/png", replacing=first.etag, **common) == "two/writers.png"
    assert storage.store(ref, b"two", "image/png", replacing=second.etag, **common) is None
    assert len(versions(s3, stack.output_bucket, ref.key)) == 1
    assert storage.output_state(ref).same_source  # a redelivery now skips without downloading


def test_a_new_source_version_replaces_the_output_unless_it_changed_meanwhile(stack, s3):
    s3.put_bucket_versioning(Bucket=stack.output_bucket, VersioningConfiguration={"Status": "Enabled"})
    storage = Storage(client("s3"), OutputTarget(stack.output_bucket), 10 * 2**20)
    common = {"faces": 0, "detector": "local"}
    old, new = ObjectRef(stack.source_bucket, "k.png", etag="old"), ObjectRef(stack.source_bucket, "k.png", etag="new")
    assert storage.store(old, b"from old", "image/png", etag="old", replacing=None, **common)
    seen = storage.output_state(new)
    assert seen.etag
    assert not seen.same_source
    assert storage.store(new, b"from new", "image/png", etag="new", replacing=seen.etag, **common)
    assert s3.get_object(Bucket=stack.output_bucket, Key="k.png")["Body"].read() == b"from new"
    # Someone replaced it after we looked, from yet another source: not overwritten blindly, retried later.
    stale = storage.output_state(old)
    s3.put_object(Bucket=stack.output_bucket, Key="k.png", Body=b"third", Metadata={"source-etag": "third"})
    with pytest.raises(TransientError) as err:
        storage.store(old, b"from old again", "image/png", etag="old", replacing=stale.etag, **common)
    assert err.value.reason == "output_changed"
    assert s3.get_object(Bucket=stack.output_bucket, Key="k.png")["Body"].read() == b"third"


def test_sigterm_during_start_up_exits_0_without_taking_work(stack, s3, sqs, moto_endpoint, tmp_path):
    """ECS may stop a task while it is still starting. Found by the soak: such a worker died of the signal (-15)."""
    drain_queue(sqs, stack.queue_url)
    s3.put_object(Bucket=stack.source_bucket, Key="waiting.png", Body=synthetic_png(seed=12))
    first = []

    def all_but_the_first(r: Request) -> bool:
        first.append(r.path)
        return len(first) > 1

    faults = Faults.only(Fault.SLOW, rate=1.0, slow_seconds=(3.0, 3.0), exclude=all_but_the_first)
    with FaultProxy(upstream=moto_endpoint, faults=faults) as proxy:
        env = {**os.environ, **stack.env(), "AWS_ENDPOINT_URL": proxy.url, "METRICS_PORT": "0", "LOG_FORMAT": "json"}
        log = tmp_path / "worker.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "worker", "run"], cwd=ROOT, env=env, stdout=out, stderr=out)
        try:
            # Its first AWS call (a start-up check) is held for 3 s: the worker is mid-start when the signal comes.
            wait_for(lambda: first, timeout=60, what="the worker's first start-up call")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
    assert "consumer started" not in log.read_text()
    assert "stop signal during start-up" in log.read_text()
    attrs = sqs.get_queue_attributes(QueueUrl=stack.queue_url, AttributeNames=["ApproximateNumberOfMessages"])
    assert attrs["Attributes"]["ApproximateNumberOfMessages"] == "1"  # untouched, for the next worker
