"""The real Dockerfile and docker-compose.yml: linted, validated with the Compose spec loader, built with podman and
run as on Fargate (read-only root, /tmp on tmpfs) against a moto server on the host's loopback.

Tools come from scripts/container-tools.sh; see tests/container/conftest.py.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from container_support import (  # tests/container/container_support.py (conftest puts it on sys.path)
    ROOT,
    Podman,
    free_port,
    http_get,
    run,
    tail,
    wait_for,
)
from PIL import Image, ImageFilter

DOCKERFILE = ROOT / "Dockerfile"
COMPOSE_FILE = ROOT / "docker-compose.yml"

# The astronaut's face in scikit-image's astronaut.png (512x512) as (x0, y0, x1, y1), determined by eye, independently
# of the worker's detector; and a region without a face (suit and mission patch) whose detail must survive.
ASTRONAUT_FACE = (185, 70, 265, 175)
ASTRONAUT_SUIT = (120, 330, 230, 440)


# -- Dockerfile lint ---------------------------------------------------------------------------------------------------
def test_hadolint_passes_on_the_dockerfile(hadolint: Path) -> None:
    res = run([str(hadolint), "--no-color", str(DOCKERFILE)], timeout=60)
    assert res.returncode == 0, f"hadolint found problems in the Dockerfile:\n{res.stdout}{res.stderr}"


def test_every_hadolint_ignore_is_justified_by_a_comment_above_it() -> None:
    lines = DOCKERFILE.read_text().splitlines()
    ignores = [i for i, line in enumerate(lines) if re.match(r"\s*#\s*hadolint\s+(global\s+)?ignore=", line)]
    for i in ignores:
        above = lines[i - 1].strip() if i else ""
        justified = above.startswith("#") and "hadolint" not in above and len(above) > 10
        assert justified, (
            f"Dockerfile line {i + 1} ({lines[i].strip()}) needs a comment above it saying why the rule is ignored"
        )


def test_hadolint_can_fail(hadolint: Path) -> None:
    """Negative control: hadolint reports an unpinned tag and apt-get without --no-install-recommends."""
    bad = "FROM debian:latest\nRUN apt-get update && apt-get install -y curl\n"
    res = run([str(hadolint), "--no-color", "-"], input=bad, timeout=60)
    assert res.returncode != 0, "hadolint accepted a Dockerfile that breaks its rules: the lint test cannot fail"
    assert "DL3007" in res.stdout, res.stdout


# -- docker-compose.yml with the real compose-spec loader --------------------------------------------------------------
def compose_config(compose: Path, file: Path) -> Any:
    return run([str(compose), "-f", str(file), "config", "-q"], cwd=file.parent, timeout=60)


def test_compose_file_is_valid(compose: Path) -> None:
    res = compose_config(compose, COMPOSE_FILE)
    assert res.returncode == 0, f"docker compose config rejects docker-compose.yml:\n{res.stdout}{res.stderr}"


@pytest.mark.parametrize(
    ("old", "new", "expect"),
    [
        pytest.param("    read_only: true\n", "    read_onyl: true\n", "read_onyl", id="typo-in-a-service-key"),
        pytest.param("      - init\n", "      - inti\n", "inti", id="undefined-depends-on"),
    ],
)
def test_compose_validation_can_fail(compose: Path, tmp_path: Path, old: str, new: str, expect: str) -> None:
    """Negative controls: a copy of the compose file with one mistake must be rejected (the pristine copy passes)."""
    text = COMPOSE_FILE.read_text()
    assert text.count(old) == 1, f"docker-compose.yml changed: {old.strip()!r} is no longer there once; update the test"
    pristine = tmp_path / "pristine" / "docker-compose.yml"
    broken = tmp_path / "broken" / "docker-compose.yml"
    for path, content in ((pristine, text), (broken, text.replace(old, new))):
        path.parent.mkdir()
        path.write_text(content)
    res = compose_config(compose, pristine)
    assert res.returncode == 0, f"the unmodified copy fails:\n{res.stderr}"
    res = compose_config(compose, broken)
    assert res.returncode != 0, f"compose accepted a file with {new.strip()!r}: the validation cannot fail"
    assert expect in res.stderr, f"compose failed for another reason than {new.strip()!r}:\n{res.stderr}"


# -- the image (marked slow: built once per session, or reused from the cache) -----------------------------------------
@pytest.mark.slow
def test_final_image_has_no_compilers(podman: Podman, image: str) -> None:
    found = podman.ok(
        "run", "--rm", "--network", "none", "--entrypoint", "sh", image, "-c",
        "command -v gcc cc c++ g++ clang make ld as || true",
    )  # fmt: skip
    assert found.strip() == "", f"compilers or build tools in the final image:\n{found}"


def test_image_holds_no_development_code(podman: Podman, image: str) -> None:
    """Production only: no moto, no fake Rekognition, no demo, no worker.dev, no tests in site-packages."""
    listing = podman.ok(
        "run", "--rm", "--network", "none", "--entrypoint", "python", image, "-c",
        "import pathlib, site; root = pathlib.Path(site.getsitepackages()[0]); "
        "print('\\n'.join(str(p.relative_to(root)) for p in root.rglob('*')))",
    )  # fmt: skip
    paths = listing.split()
    assert any(p.startswith("worker/imaging/") for p in paths), "the listing did not see the worker package"
    assert [p for p in paths if p.startswith(("worker/dev", "worker/fakes", "moto", "tests"))] == []
    assert [p for p in paths if p.startswith("worker/") and ("demo" in p or "fake" in p)] == []


def test_run_without_a_queue_exits_with_the_configuration_error(podman: Podman, image: str) -> None:
    res = podman("run", "--rm", "--network", "none", image, "run", timeout=120)
    assert res.returncode == 2, (res.returncode, res.stderr)
    ours = [line for line in res.stderr.splitlines() if line and not line.startswith("time=")]  # podman's own
    assert len(ours) == 1, res.stderr
    assert "QUEUE_URL is not set" in ours[0]
    assert "Traceback" not in res.stderr
    res = podman("run", "--rm", "--network", "none", image, "local", timeout=120)
    assert res.returncode == 2
    assert "development commands are not part of this installation" in res.stderr


@pytest.mark.slow
def test_model_is_in_the_image_and_verified(podman: Podman, image: str) -> None:
    res = podman(
        "run", "--rm", "--network", "none", "--read-only", "--entrypoint", "python", image, "-c",
        "from pathlib import Path; from worker.config import from_env; from worker.detect.model import "
        "load_model_bytes; p = from_env().detect.model_path; load_model_bytes(Path(p)); print(p)",
    )  # fmt: skip
    assert res.returncode == 0, f"the model is missing or fails its sha256 check:\n{tail(res.stderr)}"
    assert res.stdout.strip() == "/opt/model/centerface.onnx"


@pytest.mark.slow
def test_image_config(podman: Podman, image: str) -> None:
    user = podman.ok("image", "inspect", "-f", "{{.Config.User}}", image).strip()
    assert user == "10001", f"the image runs as {user!r}, not uid 10001"
    health = podman.ok("image", "inspect", "-f", "{{json .Config.Healthcheck}}", image)
    assert "healthcheck" in health, f"the image has no HEALTHCHECK: {health}"


# -- the container, running as on Fargate ------------------------------------------------------------------------------
def luma(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("L")


def detail_correlation(before: Image.Image, after: Image.Image, box: tuple[int, int, int, int]) -> float:
    """Correlation of the two images' fine detail (image minus a Gaussian blur) inside box: ~1 kept, ~0 gone."""
    sigma = (box[2] - box[0]) / 16

    def high_pass(img: Image.Image) -> np.ndarray:
        img = img.crop(box)
        return np.asarray(img, np.float64) - np.asarray(img.filter(ImageFilter.GaussianBlur(sigma)), np.float64)

    a, b = high_pass(before).ravel(), high_pass(after).ravel()
    a, b = a - a.mean(), b - b.mean()
    denom = float(np.sqrt((a @ a) * (b @ b)))
    return float(a @ b) / denom if denom else 0.0


class Worker:
    def __init__(self, podman: Podman, name: str, metrics: str, stack: Any) -> None:
        self.podman, self.name, self.metrics, self.stack = podman, name, metrics, stack

    def state(self) -> str:
        return self.podman("inspect", "-f", "{{.State.Status}}", self.name, timeout=30).stdout.strip()

    def logs(self) -> str:
        return self.podman.logs(self.name)


@pytest.fixture(scope="module")
def worker(podman: Podman, image: str, moto_stack: Any) -> Iterator[Worker]:
    """The image's default command (`run`) against the moto server on the host's loopback, read-only like Fargate."""
    port = free_port()
    name = f"faceblur-test-{port}"
    env = {
        **moto_stack.env(),
        "AWS_ACCESS_KEY_ID": "container-test",
        "AWS_SECRET_ACCESS_KEY": "container-test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "METRICS_PORT": str(port),
        "METRICS_HOST": "127.0.0.1",
        "SQS_WAIT_SECONDS": "1",
    }
    args = ["run", "-d", "--name", name, "--network", "host", "--read-only", "--tmpfs", "/tmp"]
    for key, value in env.items():
        args += ["-e", f"{key}={value}"]
    podman("rm", "-f", name, timeout=60)
    podman.ok(*args, image)
    w = Worker(podman, name, f"http://127.0.0.1:{port}", moto_stack)
    try:

        def ready() -> bool:
            if w.state() not in ("running", "created"):
                pytest.fail(f"the container stopped ({w.state()}) before it was ready:\n{w.logs()}", pytrace=False)
            return http_get(f"{w.metrics}/readyz", timeout=2)[0] == 200

        wait_for(ready, timeout=90, what=f"the container's /readyz on port {port}", interval=0.5)
        yield w
    finally:
        podman("rm", "-f", "-t", "0", name, timeout=60)


@pytest.mark.slow
def test_uploaded_photo_is_blurred_by_the_container(worker: Worker, skimage_data: Path) -> None:
    from worker.aws import client

    s3 = client("s3")
    original = (skimage_data / "astronaut.png").read_bytes()
    key = "uploads/astronaut.png"
    s3.put_object(Bucket=worker.stack.source_bucket, Key=key, Body=original)

    def output() -> dict[str, Any] | None:
        if worker.state() != "running":
            pytest.fail(f"the container stopped:\n{worker.logs()}", pytrace=False)
        try:
            return s3.head_object(Bucket=worker.stack.output_bucket, Key=key)
        except s3.exceptions.ClientError:
            return None

    head = wait_for(output, timeout=90, what="the blurred photo in the output bucket", interval=0.5)
    faces = int(head["Metadata"].get("faces", "0"))
    assert faces >= 1, f"the worker found no face on the astronaut photo: {head['Metadata']}\n{worker.logs()}"
    blurred = s3.get_object(Bucket=worker.stack.output_bucket, Key=key)["Body"].read()
    before, after = luma(original), luma(blurred)
    assert after.size == before.size
    face = detail_correlation(before, after, ASTRONAUT_FACE)
    assert face <= 0.35, f"the face keeps too much detail (correlation {face:.2f}): not blurred"
    diff = np.abs(np.asarray(before.crop(ASTRONAUT_FACE), float) - np.asarray(after.crop(ASTRONAUT_FACE), float))
    assert diff.mean() >= 8, f"the face region barely changed (mean difference {diff.mean():.1f} grey levels)"
    suit = detail_correlation(before, after, ASTRONAUT_SUIT)
    assert suit >= 0.95, f"a region without a face lost detail (correlation {suit:.2f})"


@pytest.mark.slow
def test_metrics_answer_from_the_host(worker: Worker) -> None:
    line = 'faceblur_photos_total{outcome="stored"} 1.0'

    def stored() -> str | None:
        status, body = http_get(f"{worker.metrics}/metrics")
        return body if status == 200 and line in body.splitlines() else None

    wait_for(stored, timeout=30, what=f"`{line}` on {worker.metrics}/metrics")


@pytest.mark.slow
def test_runs_as_non_root(worker: Worker) -> None:
    uid = worker.podman.ok("exec", worker.name, "id", "-u").strip()
    assert uid == "10001", f"the worker runs as uid {uid}"
    users = worker.podman.ok("top", worker.name, "user", "args")
    assert "root" not in users, f"a process in the container runs as root:\n{users}"


@pytest.mark.slow
def test_healthcheck_passes(worker: Worker) -> None:
    res = worker.podman("healthcheck", "run", worker.name, timeout=60)
    assert res.returncode == 0, f"podman healthcheck run failed ({res.returncode}): {res.stdout}{res.stderr}"
    res = worker.podman("exec", worker.name, "python", "-m", "worker", "healthcheck", timeout=60)
    assert res.returncode == 0, f"`python -m worker healthcheck` failed: {res.stderr}"


@pytest.mark.slow
def test_sigterm_stops_the_worker_cleanly(worker: Worker) -> None:
    """Last in this file: `podman stop` sends the image's STOPSIGNAL (SIGTERM); the worker drains and exits 0."""
    start = time.monotonic()
    worker.podman.ok("stop", "-t", "30", worker.name, timeout=90)
    took = time.monotonic() - start
    code = worker.podman.ok("inspect", "-f", "{{.State.ExitCode}}", worker.name).strip()
    assert code == "0", f"exit code {code} after SIGTERM ({took:.1f} s):\n{worker.logs()}"
    assert took < 30, f"the worker needed {took:.1f} s to stop: it was killed, not drained"
