"""Memory admission under the load that broke it: WORKER_CONCURRENCY=4 on ~49 MP photos (greyscale JPEGs, as in the
outside review), with MEMORY_BUDGET set. Peak RSS of the whole worker process minus its baseline (the same
process on one tiny photo) must stay within the budget, and every photo must be blurred.

    .venv/bin/python bench/memory_admission.py [--photos 4] [--budget 1200MiB] [--jobs 4]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def photos(folder: Path, count: int, side: int) -> list[Path]:
    """Smooth greyscale photos of side x side (about 49 MP at 7000), each a little different."""
    out = []
    y, x = np.mgrid[0:side:8, 0:side:8].astype(np.float32)
    for i in range(count):
        small = (127 + 100 * np.sin(x / (300 + 40 * i)) * np.cos(y / (410 - 30 * i))).astype(np.uint8)
        path = folder / f"large-{i}.jpg"
        Image.fromarray(small).resize((side, side), Image.Resampling.BILINEAR).save(path, "JPEG", quality=85)
        out.append(path)
    return out


def run(inputs: list[Path], out: Path, jobs: int, budget: str) -> tuple[int, float, float, dict]:
    """(exit code, peak RSS MiB, seconds, report) of one `worker blur` process."""
    env = {**os.environ, "MEMORY_BUDGET": budget}
    report = out / "report.json"
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    # A fresh interpreter per run: ru_maxrss of children is the largest of them, so each run is its own child.
    code = subprocess.run(
        [sys.executable, "-m", "worker", "blur", *map(str, inputs), "--out", str(out), "--jobs", str(jobs),
         "--report", str(report)],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    ).returncode  # fmt: skip
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak <= before:
        raise SystemExit("run the baseline first: peak RSS of children only grows")
    return code, peak / 1024, seconds, json.loads(report.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=4)
    parser.add_argument("--side", type=int, default=7000)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--budget", default="1200MiB")
    args = parser.parse_args()
    from worker.config import parse_bytes

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tiny = folder / "tiny.jpg"
        Image.new("L", (64, 64), 128).save(tiny, "JPEG")
        large = photos(folder, args.photos, args.side)
        _, baseline, _, _ = run([tiny], folder / "out-tiny", 1, args.budget)
        code, peak, seconds, report = run(large, folder / "out-large", args.jobs, args.budget)
    blurred = sum(1 for row in report["images"] if row["output"])
    waited = [row["timings_ms"].get("admission", 0.0) for row in report["images"]]
    budget_mib = parse_bytes(args.budget) / 2**20
    result = {
        "photos": args.photos,
        "megapixels": round(args.side * args.side / 1e6, 1),
        "jobs": args.jobs,
        "budget_mib": round(budget_mib),
        "baseline_peak_mib": round(baseline),
        "peak_mib": round(peak),
        "peak_above_baseline_mib": round(peak - baseline),
        "within_budget": peak - baseline <= budget_mib,
        "blurred": blurred,
        "exit_code": code,
        "seconds": round(seconds, 1),
        "admission_wait_ms": [round(w) for w in waited],
    }
    print(json.dumps(result, indent=1))
    return 0 if result["within_budget"] and blurred == args.photos and code == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
