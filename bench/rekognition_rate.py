"""How fast does the worker call DetectFaces? REKOGNITION_TPS=5 (default), 4 threads calling the Rekognition detector
as fast as they can against the fake endpoint for 60 s; the fake counts the calls it sees.

    .venv/bin/python bench/rekognition_rate.py [--seconds 60] [--threads 4] [--tps 5]

Expected: calls/s seen by the fake <= TPS + burst/seconds (5 + 5/60 = 5.08 for the defaults), never above 5.5.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from worker import process

process.prepare()  # before anything loads ImageMagick
from worker.config import RekognitionSettings, Settings  # noqa: E402
from worker.detect.rekognition import RekognitionDetector  # noqa: E402
from worker.dev.fake_rekognition import start_fake_rekognition  # noqa: E402
from worker.imaging import codec  # noqa: E402
from worker.runtime import prepare_imaging  # noqa: E402
from worker.telemetry.metrics import Metrics  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--tps", type=float, default=5.0)
    args = p.parse_args()

    import skimage.data

    os.environ.update(AWS_ACCESS_KEY_ID="local", AWS_SECRET_ACCESS_KEY="local", AWS_DEFAULT_REGION="us-east-1")
    settings = replace(Settings(), rekognition=RekognitionSettings(tps=args.tps))
    prepare_imaging(settings.image)
    fake = start_fake_rekognition()
    os.environ.update(fake.env())
    metrics = Metrics()
    detector = RekognitionDetector(settings, metrics=metrics)
    data = (Path(skimage.data.__file__).parent / "astronaut.png").read_bytes()
    header = codec.read_header(data, settings.image)
    with codec.decode(data, header) as photo:
        fake.reset_counts()
        stop = time.monotonic() + args.seconds
        done = [0] * args.threads

        def run(i: int) -> None:
            while time.monotonic() < stop:
                detector.detect(photo)
                done[i] += 1

        start = time.monotonic()
        threads = [threading.Thread(target=run, args=(i,)) for i in range(args.threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - start
    seen = fake.snapshot()
    fake.stop()
    rate = seen["calls"] / elapsed
    print(
        f"REKOGNITION_TPS={args.tps:g} threads={args.threads} seconds={elapsed:.1f} "
        f"calls seen by the fake={seen['calls']} -> {rate:.2f} calls/s (limit {args.tps * 1.1:.2f})"
    )
    return 0 if rate <= args.tps * 1.1 else 1


if __name__ == "__main__":
    raise SystemExit(main())
