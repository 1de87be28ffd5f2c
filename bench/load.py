"""Load benchmark of the whole service: N uploads through a local S3 + SQS at several WORKER_CONCURRENCY values.

Processes, as in production: a moto server (`moto_server`), one worker (`python -m worker run`) pointed at it,
and this script as the uploader and observer. For each concurrency it:
- uploads N real photos (../shared/faces/dev, mixed sizes, cycled; read in place, never copied) before the worker
  starts, so the worker drains a backlog without the uploader taking CPU from it,
- times from the worker's /readyz to its `faceblur_photos_total{outcome="stored"}` reaching N (polled on /metrics);
  upload-to-output latency is each photo's eventTime-to-stored age from the worker's log (mostly queueing here),
- reads the worker's CPU time and peak RSS from /proc, and its counters from /metrics,
- checks: every upload has exactly one output (0 lost, 0 duplicate PUTs by the worker's own counter and by the
  output ETags), and every output is byte-identical to the CLI's output for the same photo, whose faces the
  referee measure (tests/quality/measure.py) confirms are protected (0 unblurred).

usage: .venv/bin/python bench/load.py [--uploads 500] [--concurrency 1 2 4] [--out docs-table.md]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT.parent / "shared" / "faces" / "dev"
sys.path.insert(0, str(ROOT))

from tests.helpers.moto import moto_server_process, use_endpoint  # noqa: E402
from tests.helpers.net import free_port, wait_until_answers  # noqa: E402
from tests.integration.integration_support import metric, metric_total, parse_metrics  # noqa: E402
from tests.quality.measure import Tally, displayed_grey  # noqa: E402
from worker.aws import client  # noqa: E402
from worker.dev.stack import Names, bootstrap  # noqa: E402


def proc_stats(pid: int) -> tuple[float, int]:
    """(user+system CPU seconds, peak RSS bytes) of a live process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    hwm = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmHWM"))
    return cpu, int(hwm.split()[1]) * 1024


def reference_outputs(photos: list[Path]) -> dict[str, bytes]:
    """The CLI's output for each photo, after checking with our referee measure that its faces are protected."""
    out = Path(tempfile.mkdtemp(prefix="faceblur-load-ref-"))
    subprocess.run(
        [sys.executable, "-m", "worker", "blur", *map(str, photos), "--out", str(out)],
        check=True,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    annotations = {a["file"]: a for a in json.loads((DEV / "annotations.json").read_text())}
    tally = Tally()
    for p in photos:
        a = annotations[p.name]
        frame = a.get("oriented") or a
        attrs = a.get("face_attrs") or [{}] * len(frame["faces"])
        counted = [
            b for b, at in zip(frame["faces"], attrs, strict=True) if not at.get("tiny") and not at.get("invalid")
        ]
        tally.add(
            displayed_grey(p.read_bytes()),
            displayed_grey((out / p.name).read_bytes()),
            counted,
            list(frame["faces"]) + list(frame.get("ignore", [])),
        )
    print(f"reference outputs: {tally.protected}/{tally.faces} faces protected by our measure")
    return {p.name: (out / p.name).read_bytes() for p in photos}


def run_once(endpoint: str, photos: list[Path], uploads: int, concurrency: int, refs: dict[str, bytes]) -> dict:
    tag = f"c{concurrency}-{int(time.time())}"
    names = Names(source_bucket=f"src-{tag}", output_bucket=f"out-{tag}", queue=f"q-{tag}", dlq=f"q-{tag}-dlq")
    stack = bootstrap(names)
    port = free_port()
    env = {
        **os.environ,
        **stack.env(),
        "WORKER_CONCURRENCY": str(concurrency),
        "METRICS_PORT": str(port),
        "METRICS_HOST": "127.0.0.1",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "info",
        "PYTHONUNBUFFERED": "1",
        "SQS_WAIT_SECONDS": "1",
        "MAGICK_THREAD_LIMIT": "1",
    }
    # Logs (one JSON line per photo, with its upload-to-output age) go to a file read at the end.
    log_path = Path(tempfile.mkdtemp(prefix="faceblur-load-")) / "worker.log"
    log_file = log_path.open("wb")
    s3 = client("s3", 16)
    data = {p.name: p.read_bytes() for p in photos}
    keys = [f"load/{i:04d} {photos[i % len(photos)].name}" for i in range(uploads)]
    seen: dict[str, float] = {}

    def put(key: str) -> None:
        s3.put_object(Bucket=stack.source_bucket, Key=key, Body=data[key.split(" ", 1)[1]])

    # The backlog is uploaded before the worker starts, so the uploader does not compete with it for the two
    # cores: what is timed is the worker draining the queue (the moto server still answers its calls).
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, keys))
    worker = subprocess.Popen(
        [sys.executable, "-m", "worker", "run"], cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT
    )
    try:
        wait_until_answers(f"http://127.0.0.1:{port}/readyz", interval=0.02)
        cpu0, _ = proc_stats(worker.pid)
        start = time.monotonic()
        # Progress from the worker's own /metrics (cheap), not by listing the bucket: a listing of hundreds of
        # keys every fraction of a second costs the shared moto server (and so the worker) real CPU.
        metrics_url = f"http://127.0.0.1:{port}/metrics"

        def scrape() -> dict:
            return parse_metrics(urllib.request.urlopen(metrics_url, timeout=5).read().decode())

        def stored() -> float:
            return metric(scrape(), "faceblur_photos_total", outcome="stored")

        deadline = time.monotonic() + 1800
        while stored() < uploads and time.monotonic() < deadline:
            time.sleep(0.25)
        elapsed = time.monotonic() - start
        cpu1, peak = proc_stats(worker.pid)
        samples = scrape()
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=stack.output_bucket, Prefix="load/"):
            for obj in page.get("Contents", []):
                seen[obj["Key"]] = 0.0
        lost = [k for k in keys if k not in seen]
        wrong = [
            k
            for k in keys
            if k in seen and s3.get_object(Bucket=stack.output_bucket, Key=k)["Body"].read() != refs[k.split(" ", 1)[1]]
        ]
        # Upload-to-output latency as the worker measured it: eventTime of the upload to the stored output.
        worker.terminate()
        worker.wait(timeout=150)
        log_file.close()
        latencies = sorted(
            json.loads(line)["age_s"]
            for line in log_path.read_text().splitlines()
            if line.startswith("{") and '"photo blurred"' in line
        )
        stored = metric(samples, "faceblur_photos_total", outcome="stored")
        return {
            "concurrency": concurrency,
            "uploads": uploads,
            "seconds": round(elapsed, 1),
            "images_per_s": round(len(seen) / elapsed, 2),
            "p50_s": round(statistics.median(latencies), 2),
            "p95_s": round(latencies[int(0.95 * (len(latencies) - 1))], 2),
            "cpu_ms_per_photo": round((cpu1 - cpu0) / max(len(seen), 1) * 1000),
            "peak_rss_mb": round(peak / 2**20),
            "lost": len(lost),
            "duplicate_puts": int(stored - len(seen)),
            "not_identical_to_verified_blur": len(wrong),
            "dlq": int(metric_total(samples, "faceblur_dlq_sends_total")),
        }
    finally:
        if worker.poll() is None:
            worker.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=500)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    photos = sorted(p for p in DEV.iterdir() if p.suffix in (".jpg", ".png"))
    refs = reference_outputs(photos)
    with moto_server_process() as endpoint:
        use_endpoint(endpoint)
        rows = [run_once(endpoint, photos, args.uploads, c, refs) for c in args.concurrency]
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    base = next((r for r in rows if r["concurrency"] == 1), None)
    for r in rows:
        if base and r is not base:
            print(f"concurrency {r['concurrency']} / 1 throughput: {r['images_per_s'] / base['images_per_s']:.2f}x")
    bad = sum(r["lost"] + r["duplicate_puts"] + r["not_identical_to_verified_blur"] for r in rows)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
