"""Integration fixtures: one real moto server over HTTP on 127.0.0.1 for the session, a fresh stack per test
(moto is reset, then the worker's own bootstrap builds buckets, queue, DLQ, policy and notification), short
timings, and services running in background threads that are always stopped at teardown.
"""

from __future__ import annotations

import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent  # the project root, so `worker` imports however pytest was started
for _path in (str(ROOT), str(HERE)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from helpers.moto import local_moto  # noqa: E402
from integration_support import ServiceRunner  # noqa: E402

from worker.aws import client  # noqa: E402
from worker.config import Settings  # noqa: E402
from worker.dev.stack import Names, Stack, bootstrap  # noqa: E402
from worker.service import build, with_stack  # noqa: E402


# Package scope (tests/integration has an __init__.py for this): the server stops and the environment is restored
# when the last integration test is done, before any other test directory runs.
@pytest.fixture(scope="package")
def moto_endpoint() -> Iterator[str]:
    with local_moto() as endpoint:
        yield endpoint


@pytest.fixture(scope="package")
def s3(moto_endpoint: str) -> Any:
    return client("s3")


@pytest.fixture(scope="package")
def sqs(moto_endpoint: str) -> Any:
    return client("sqs")


def reset_moto(endpoint: str) -> None:
    req = urllib.request.Request(f"{endpoint}/moto-api/reset", data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200


@pytest.fixture
def make_stack(moto_endpoint: str) -> Callable[..., Stack]:
    """Fresh stack: wipes moto, then bootstraps with Names(**overrides) (e.g. visibility_seconds, max_receive_count).
    The source queue then holds exactly one message: the s3:TestEvent moto sends when the notification is saved."""

    def make(**overrides: Any) -> Stack:
        reset_moto(moto_endpoint)
        return bootstrap(Names(**overrides))

    return make


@pytest.fixture
def stack(make_stack: Callable[..., Stack]) -> Stack:
    return make_stack()


def settings_for(stack: Stack, **service: Any) -> Settings:
    """Default settings pointed at `stack`, with timings short enough for tests; `service` overrides fields."""
    base = with_stack(Settings(), stack.queue_url, stack.output_bucket, stack.source_bucket)
    quick = {
        "wait_seconds": 1,
        "retry_base_seconds": 2,
        "retry_max_seconds": 60,
        "concurrency": 2,
        "shutdown_grace_seconds": 20,
        "metrics_port": 0,
        "metrics_host": "127.0.0.1",
        "stuck_seconds": 30,
    }
    return replace(base, service=replace(base.service, **{**quick, **service}))


@pytest.fixture
def make_settings() -> Callable[..., Settings]:
    return settings_for


@pytest.fixture
def run_service() -> Iterator[Callable[..., ServiceRunner]]:
    """run_service(settings, prepare=None, own_http=False) -> a started ServiceRunner (stopped at teardown).
    `prepare(service)` runs after build() and before the consumer starts (wrap the detector or the queue there)."""
    runners: list[ServiceRunner] = []

    def run(settings: Settings, prepare: Callable[[Any], None] | None = None, own_http: bool = False) -> ServiceRunner:
        service = build(settings)
        if prepare:
            prepare(service)
        runner = ServiceRunner(service, own_http=own_http)
        runners.append(runner)
        return runner.start()

    yield run
    errors = []
    for runner in runners:
        try:
            runner.stop()
        except AssertionError as exc:
            errors.append(exc)
    if errors:
        raise errors[0]
