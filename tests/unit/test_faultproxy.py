"""The soak test's fault-injecting proxy, between real boto3 clients and a real (in-process) moto server."""

from __future__ import annotations

import functools
import http.client
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

from tests.soak.faultproxy import BEFORE, Fault, FaultProxy, Faults
from worker.dev.stack import start_moto

ROOT = Path(__file__).resolve().parents[2]
NO_RETRIES = {"mode": "standard", "total_max_attempts": 1}
ODD_KEY = "photos/a b+c/ünïcode 東京 (1).jpg"


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    server, endpoint = start_moto()
    yield endpoint
    server.stop()


@functools.cache
def session() -> boto3.session.Session:
    # One session: it caches the service models, which makes each new client cheap.
    return boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")


def clients(endpoint: str, retries: dict[str, Any] | None = None) -> tuple[Any, Any]:
    config = Config(
        s3={"addressing_style": "path"},
        retries=retries or NO_RETRIES,
        connect_timeout=5,
        read_timeout=10,
        max_pool_connections=16,
    )
    return tuple(session().client(service, endpoint_url=endpoint, config=config) for service in ("s3", "sqs"))


@pytest.fixture
def direct(moto: str) -> tuple[Any, Any]:
    """(s3, sqs) talking to moto without the proxy: the upstream state as it really is."""
    return clients(moto)


@pytest.fixture
def names(direct: tuple[Any, Any]) -> tuple[str, str]:
    """A fresh bucket and queue (created directly), so tests do not share state in the one moto server."""
    s3, sqs = direct
    suffix = uuid.uuid4().hex[:12]
    s3.create_bucket(Bucket=f"fp-{suffix}")
    return f"fp-{suffix}", sqs.create_queue(QueueName=f"fp-{suffix}")["QueueUrl"]


@pytest.fixture
def proxy(moto: str) -> Iterator[Callable[[Faults], FaultProxy]]:
    started: list[FaultProxy] = []

    def make(faults: Faults) -> FaultProxy:
        started.append(FaultProxy(moto, faults).start())
        return started[-1]

    yield make
    for p in started:
        p.stop()


def object_exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as e:
        if e.response["ResponseMetadata"]["HTTPStatusCode"] == 404:
            return False
        raise
    return True


def queued(sqs: Any, queue_url: str) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def test_without_faults_everything_passes_through_on_kept_alive_connections(proxy, direct):
    p = proxy(Faults(rate=0.0))
    s3, sqs = clients(p.url)
    bucket = f"fp-{uuid.uuid4().hex[:12]}"
    body = os.urandom(1_000_000)

    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key=ODD_KEY, Body=body, Metadata={"origin": "faultproxy"})
    got = s3.get_object(Bucket=bucket, Key=ODD_KEY)
    assert got["Body"].read() == body
    assert got["Metadata"] == {"origin": "faultproxy"}
    assert s3.head_object(Bucket=bucket, Key=ODD_KEY)["ContentLength"] == len(body)  # HEAD keeps Content-Length
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == [ODD_KEY]
    assert direct[0].get_object(Bucket=bucket, Key=ODD_KEY)["Body"].read() == body

    queue_url = sqs.create_queue(QueueName=bucket)["QueueUrl"]
    assert queue_url.startswith(p.url)  # the client's Host goes upstream, so moto's URLs name the proxy
    sqs.send_message(QueueUrl=queue_url, MessageBody="héllo + wörld")
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)["Messages"]
    assert [m["Body"] for m in messages] == ["héllo + wörld"]
    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=messages[0]["ReceiptHandle"])
    assert queued(direct[1], queue_url) == 0

    counts = p.counts()
    assert counts["requests"] == counts["forwarded"] == 9
    assert all(counts[kind] == 0 for kind in Fault)
    assert counts["connections"] <= 2  # one pooled connection per client: keep-alive works


def test_chunked_request_bodies_are_dechunked(proxy, names, direct):
    p = proxy(Faults(rate=0.0))
    bucket, _ = names
    conn = http.client.HTTPConnection("127.0.0.1", int(p.url.rsplit(":", 1)[1]), timeout=5)
    conn.request("PUT", f"/{bucket}/chunked", body=iter([b"hello ", b"chunked ", b"world"]), encode_chunked=True)
    response = conn.getresponse()
    response.read()
    assert response.status == 200
    assert direct[0].get_object(Bucket=bucket, Key="chunked")["Body"].read() == b"hello chunked world"
    conn.close()


@pytest.mark.parametrize("status", [500, 503])
def test_error_before_fails_the_call_and_nothing_happens_upstream(proxy, names, direct, status):
    bucket, queue_url = names
    p = proxy(Faults.only(Fault.ERROR_BEFORE, error_statuses=(status,)))
    s3, sqs = clients(p.url)

    with pytest.raises(ClientError) as put:
        s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    assert put.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert put.value.response["Error"]["Code"] == ("SlowDown" if status == 503 else "InternalError")
    with pytest.raises(ClientError) as send:
        sqs.send_message(QueueUrl=queue_url, MessageBody="m")
    assert send.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert send.value.response["Error"]["Code"] == ("ServiceUnavailable" if status == 503 else "InternalError")

    assert not object_exists(direct[0], bucket, "k")
    assert queued(direct[1], queue_url) == 0
    counts = p.counts()
    assert counts["error_before"] == counts["requests"] == 2
    assert counts["forwarded"] == sum(counts[kind] for kind in Fault if kind is not Fault.ERROR_BEFORE) == 0


def test_error_after_applies_the_request_but_loses_the_answer(proxy, names, direct):
    bucket, queue_url = names
    p = proxy(Faults.only(Fault.ERROR_AFTER))
    s3, sqs = clients(p.url)

    with pytest.raises(ClientError) as put:
        s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    assert put.value.response["ResponseMetadata"]["HTTPStatusCode"] in (500, 503)
    with pytest.raises(ClientError):
        sqs.send_message(QueueUrl=queue_url, MessageBody="m")

    assert direct[0].get_object(Bucket=bucket, Key="k")["Body"].read() == b"data"
    assert queued(direct[1], queue_url) == 1
    counts = p.counts()
    assert counts["error_after"] == counts["forwarded"] == counts["requests"] == 2


@pytest.mark.parametrize(("fault", "applied"), [(Fault.RESET_BEFORE, False), (Fault.RESET_AFTER, True)])
def test_a_reset_is_a_connection_error_and_the_request_applied_only_after(proxy, names, direct, fault, applied):
    bucket, queue_url = names
    p = proxy(Faults.only(fault))
    s3, sqs = clients(p.url)

    with pytest.raises((ConnectionClosedError, EndpointConnectionError)):
        s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    with pytest.raises((ConnectionClosedError, EndpointConnectionError)):
        sqs.send_message(QueueUrl=queue_url, MessageBody="m")

    assert object_exists(direct[0], bucket, "k") == applied
    assert queued(direct[1], queue_url) == int(applied)
    counts = p.counts()
    assert counts[fault.value] == counts["requests"] == 2
    assert counts["forwarded"] == (2 if applied else 0)


def test_slow_delays_then_forwards(proxy, names, direct):
    bucket, _ = names
    p = proxy(Faults.only(Fault.SLOW, slow_seconds=(0.3, 0.4)))
    s3, _ = clients(p.url)
    started = time.monotonic()
    s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    assert time.monotonic() - started >= 0.3
    assert object_exists(direct[0], bucket, "k")
    assert p.counts()["slow"] == p.counts()["forwarded"] == 1


@pytest.mark.parametrize("kind", [Fault.ERROR_BEFORE, Fault.ERROR_AFTER, Fault.RESET_BEFORE, Fault.RESET_AFTER])
def test_botocore_retries_every_kind(proxy, names, kind):
    _, queue_url = names
    p = proxy(Faults.only(kind))
    _, sqs = clients(p.url, {"mode": "standard", "total_max_attempts": 2})
    with pytest.raises((ClientError, ConnectionClosedError)):
        sqs.send_message(QueueUrl=queue_url, MessageBody="m")
    assert p.counts()[kind] == p.counts()["requests"] == 2


def test_exclude_and_the_enabled_switch(proxy, names, direct):
    bucket, _ = names
    direct[0].put_object(Bucket=bucket, Key="k", Body=b"data")
    p = proxy(Faults.only(Fault.ERROR_BEFORE, exclude=lambda r: r.method == "GET" and r.path.startswith(f"/{bucket}/")))
    s3, _ = clients(p.url)

    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"data"  # exempt
    with pytest.raises(ClientError):
        s3.put_object(Bucket=bucket, Key="k2", Body=b"data")
    p.enabled = False
    s3.put_object(Bucket=bucket, Key="k2", Body=b"data")
    assert p.enabled is False
    p.enabled = True
    with pytest.raises(ClientError):
        s3.delete_object(Bucket=bucket, Key="k2")
    assert p.counts()["error_before"] == 2
    assert p.counts()["forwarded"] == 2


def test_request_operation_names_sqs_calls(proxy, names):
    _, queue_url = names
    seen: list[str | None] = []
    p = proxy(
        Faults.only(Fault.ERROR_BEFORE, exclude=lambda r: seen.append(r.operation) or r.operation != "SendMessage")
    )
    _, sqs = clients(p.url)
    sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])
    with pytest.raises(ClientError):
        sqs.send_message(QueueUrl=queue_url, MessageBody="m")
    assert seen == ["GetQueueAttributes", "SendMessage"]


def test_with_retries_a_faulty_run_succeeds_and_counts_add_up(proxy, names, direct):
    bucket, queue_url = names
    p = proxy(Faults(rate=0.3, slow_seconds=(0.01, 0.05), seed=7))
    s3, sqs = clients(p.url, {"mode": "standard", "max_attempts": 10})

    def put(i: int) -> None:
        s3.put_object(Bucket=bucket, Key=f"k/{i}", Body=f"object {i}".encode())

    def send(i: int) -> None:
        sqs.send_message(QueueUrl=queue_url, MessageBody=f"message {i}")

    with ThreadPoolExecutor(max_workers=12) as pool:
        for future in [pool.submit(put, i) for i in range(50)] + [pool.submit(send, i) for i in range(50)]:
            future.result()  # raises if botocore gave up

    keys = {o["Key"] for o in direct[0].list_objects_v2(Bucket=bucket, MaxKeys=1000)["Contents"]}
    assert keys == {f"k/{i}" for i in range(50)}
    bodies: set[str] = set()
    while batch := direct[1].receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages"):
        bodies.update(m["Body"] for m in batch)
    assert bodies == {f"message {i}" for i in range(50)}  # at least once: "after" faults may duplicate

    counts = p.counts()
    injected = sum(counts[kind] for kind in Fault)
    assert injected > 10
    assert counts["requests"] == counts["forwarded"] + sum(counts[kind] for kind in BEFORE)
    assert counts["requests"] >= 100 + sum(counts[kind] for kind in Fault if kind is not Fault.SLOW)
    assert counts["upstream_errors"] == 0


def test_faults_are_validated():
    with pytest.raises(ValueError, match="rate"):
        Faults(rate=1.5)
    with pytest.raises(ValueError, match="weights"):
        Faults(rate=0.1, weights={})
    with pytest.raises(ValueError, match="slow_seconds"):
        Faults(slow_seconds=(2.0, 1.0))
    with pytest.raises(ValueError, match="melt"):
        Faults(weights={"melt": 1.0})  # type: ignore[dict-item]
    assert Faults(weights={"slow": 2}).weights == {Fault.SLOW: 2.0}  # type: ignore[dict-item]


def test_runs_as_a_process_until_sigterm(moto, names, direct):
    bucket, _ = names
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.soak.faultproxy", "--upstream", moto, "--rate", "0", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        s3, _ = clients(url)
        s3.put_object(Bucket=bucket, Key="via-process", Body=b"data")
        assert object_exists(direct[0], bucket, "via-process")
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=10)
    finally:
        process.kill()
    assert process.returncode == 0
    assert '"forwarded": 1' in err
