"""The alert rules and the Grafana dashboard, checked by Prometheus's own tools and against a real Prometheus
scraping a real worker: promtool checks and unit-tests every rule; then Debian's Prometheus scrapes a worker on a
moto server (photos blurred, one refused), evaluates every rule without error and answers every dashboard query
with data. Prometheus and promtool come from Debian (scripts/install-infra-tools.sh); missing, they fail the test
under CI and skip it elsewhere."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.moto import moto_server_process
from tests.helpers.net import free_port, http_get, wait_until_answers
from tests.integration.integration_support import png_bytes, skimage_photo, synthetic_rgb

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "faceblur.json"


def tool(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{name} is missing: make infra-tools installs Debian's prometheus package")
    pytest.skip(f"{name} is not installed (Debian package prometheus; make infra-tools installs it)")


def test_alert_rules_and_config_are_valid():
    promtool = tool("promtool")
    for args in (["check", "rules", str(PROM / "alerts.yml")], ["check", "config", str(PROM / "prometheus.yml")]):
        done = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_unit_test_that_fires_and_one_that_does_not():
    promtool = tool("promtool")
    done = subprocess.run(
        [promtool, "test", "rules", "alerts.test.yml"], cwd=PROM, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    import yaml

    alerts = {r["alert"] for g in yaml.safe_load((PROM / "alerts.yml").read_text())["groups"] for r in g["rules"]}
    tests = yaml.safe_load((PROM / "alerts.test.yml").read_text())["tests"]
    checks = [c for t in tests for c in t["alert_rule_test"]]
    for alert in alerts:
        assert any(c["alertname"] == alert and c["exp_alerts"] for c in checks), f"{alert} never fires in a test"
        assert any(c["alertname"] == alert and not c["exp_alerts"] for c in checks), f"{alert} never stays quiet"


def test_the_rule_tests_can_fail(tmp_path):
    """A rule tested against the wrong threshold must fail: the tests above are not vacuous."""
    promtool = tool("promtool")
    shutil.copy(PROM / "alerts.test.yml", tmp_path)
    (tmp_path / "alerts.yml").write_text((PROM / "alerts.yml").read_text().replace("> 0.9", "> 0.99"))
    done = subprocess.run([promtool, "test", "rules", "alerts.test.yml"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode != 0
    assert "FaceblurMemoryNearLimit" in done.stdout + done.stderr


# -- a real Prometheus against a real worker ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def worker_metrics() -> Iterator[str]:
    """host:port of a worker's /metrics that blurred two photos and refused one, on a moto server."""
    import boto3

    from worker.bootstrap import LOCAL_CREDENTIALS, Names, bootstrap

    with moto_server_process() as endpoint:
        os.environ.update({"AWS_ENDPOINT_URL": endpoint, **LOCAL_CREDENTIALS})
        try:
            stack = bootstrap(Names())
            s3 = boto3.session.Session().client("s3", endpoint_url=endpoint)
            s3.put_object(Bucket=stack.source_bucket, Key="a.png", Body=skimage_photo("astronaut.png"))
            s3.put_object(Bucket=stack.source_bucket, Key="b.png", Body=png_bytes(synthetic_rgb(96, 64, seed=3)))
            s3.put_object(Bucket=stack.source_bucket, Key="bad.jpg", Body=b"not a photo")
        finally:
            for k in ("AWS_ENDPOINT_URL", *LOCAL_CREDENTIALS):
                os.environ.pop(k, None)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MAGICK_TEMPORARY_PATH"))}
        env.update(stack.env())
        env.update({"METRICS_PORT": str(port), "METRICS_HOST": "127.0.0.1", "SQS_WAIT_SECONDS": "1"})
        env.update({"QUEUE_DEPTH_SECONDS": "1", "LOG_FORMAT": "json", "WORKER_CONCURRENCY": "2"})
        with tempfile.TemporaryFile() as log:
            proc = subprocess.Popen([sys.executable, "-m", "worker", "run"], cwd=ROOT, env=env, stdout=log, stderr=log)
            try:
                wait_until_answers(f"http://127.0.0.1:{port}/readyz", timeout=90)
                yield f"127.0.0.1:{port}"
            finally:
                proc.terminate()
                proc.wait(60)


@pytest.fixture(scope="module")
def prometheus(worker_metrics: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = tool("prometheus")
    folder = tmp_path_factory.mktemp("prometheus")
    shutil.copy(PROM / "alerts.yml", folder)
    (folder / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "rule_files: [alerts.yml]\n"
        "scrape_configs:\n"
        "  - job_name: faceblur-worker\n"
        f"    static_configs: [{{targets: ['{worker_metrics}']}}]\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        [binary, f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={folder / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until_answers(f"http://127.0.0.1:{port}/-/ready", timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(30)


def query(prometheus: str, expr: str) -> list:
    status, body = http_get(f"{prometheus}/api/v1/query?query={urllib.parse.quote(expr)}")
    assert status == 200, body
    return json.loads(body)["data"]["result"]


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p["targets"]]


def test_every_dashboard_query_and_rule_works_against_the_live_worker(prometheus):
    deadline = time.monotonic() + 120
    while not query(prometheus, 'faceblur_photos_total{outcome="stored"} >= 2'):
        assert time.monotonic() < deadline, "the worker did not blur both photos"
        time.sleep(1)
    time.sleep(3)  # a few more scrapes: rate() needs two samples after the change
    empty = [expr for expr in dashboard_exprs() if not query(prometheus, expr)]
    assert not empty, f"dashboard queries without data: {empty}"
    assert query(prometheus, 'faceblur_dlq_sends_total{reason="not_an_image"} == 1')
    status, body = http_get(f"{prometheus}/api/v1/rules")
    assert status == 200
    rules = [r for g in json.loads(body)["data"]["groups"] for r in g["rules"]]
    assert len(rules) == 8
    bad = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert not bad, bad
