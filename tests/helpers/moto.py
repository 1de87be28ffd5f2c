"""A moto server on 127.0.0.1 with this process's boto3 pointed at it, and the environment restored afterwards;
or one in its own process, for workloads where its CPU must not share this process's GIL (soak, load bench)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from worker.dev.stack import LOCAL_CREDENTIALS, start_moto

from .net import free_port, wait_until_answers

# Variables that would send boto3 elsewhere than the local server; saved and restored around it.
ISOLATED_ENV = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_SQS",
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    *LOCAL_CREDENTIALS,
)


@contextmanager
def local_moto() -> Iterator[str]:
    """Yields the endpoint URL of a fresh moto server; throw-away credentials whatever the environment had."""
    saved = {k: os.environ.get(k) for k in ISOLATED_ENV}
    for k in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SQS", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(k, None)
    server, endpoint = start_moto()
    try:
        assert endpoint.startswith("http://127.0.0.1:")
        use_endpoint(endpoint)
        os.environ.update(LOCAL_CREDENTIALS)
        yield endpoint
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextmanager
def moto_server_process() -> Iterator[str]:
    """Yields the endpoint URL of a `moto_server` process (this Python's own) on a free loopback port."""
    port = free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **LOCAL_CREDENTIALS},
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_until_answers(endpoint + "/moto-api/")
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(30)


def use_endpoint(endpoint: str) -> None:
    """Point boto3 at a local endpoint through the environment, with throw-away credentials: what the tests' and
    benchmarks' worker processes read (the service itself takes endpoints as values: worker.dev.stack.local_aws)."""
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    for k, v in LOCAL_CREDENTIALS.items():
        os.environ.setdefault(k, v)
