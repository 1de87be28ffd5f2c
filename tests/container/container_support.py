"""Helpers for tests/container: where scripts/container-tools.sh puts the tools, podman with its configuration,
subprocess and HTTP helpers."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.net import free_port as free_port  # shared with the soak and the benchmarks
from tests.helpers.net import http_get as http_get

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "container"
HADOLINT = CACHE / "bin" / "hadolint"
COMPOSE = CACHE / "bin" / "docker-compose"
CONTAINERS_CONF = CACHE / "containers.conf"
STORAGE_CONF = CACHE / "storage.conf"
BASE_IMAGE = "docker.io/library/debian:bookworm-slim"
IMAGE = "localhost/faceblur-worker:test"
BUILD_STAGE_IMAGE = "localhost/faceblur-worker:test-build-stage"
BUILD_LOG = CACHE / "build.log"
SETUP = "run `bash scripts/container-tools.sh` first (`make test` does)"


def require_tool(path: Path, what: str) -> Path:
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"{what} is missing at {path.relative_to(ROOT)}: {SETUP}", pytrace=False)
    return path


def run(cmd: list[str], *, timeout: float = 120, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing text output; a command that hangs fails the test instead of the session."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`{' '.join(cmd)}` did not finish within {timeout:.0f} s", pytrace=False)


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


class Podman:
    """podman with the configuration written by scripts/container-tools.sh (kept out of /etc)."""

    def __init__(self, exe: str) -> None:
        self.exe = exe
        self.env = {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF), "CONTAINERS_STORAGE_CONF": str(STORAGE_CONF)}

    def __call__(self, *args: str, timeout: float = 120, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return run([self.exe, *args], timeout=timeout, env=self.env, **kwargs)

    def ok(self, *args: str, timeout: float = 120) -> str:
        """stdout of a podman command that must succeed."""
        res = self(*args, timeout=timeout)
        assert res.returncode == 0, f"`podman {' '.join(args)}` exited {res.returncode}:\n{tail(res.stderr)}"
        return res.stdout

    def logs(self, container: str, lines: int = 40) -> str:
        res = self("logs", "--tail", str(lines), container, timeout=30)
        return tail(res.stdout + res.stderr, lines)


def wait_for(check: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.25) -> Any:
    """Poll check() until it returns something truthy; fail after timeout. check may raise while not ready."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:
            last = exc
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}" + (f" (last error: {last!r})" if last else ""))
