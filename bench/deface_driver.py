"""Times deface 1.5.0 one photo at a time, warm. Runs inside deface's own venv (.cache/bench/deface-venv).

blur_core.py starts it once and sends one JSON line per photo on stdin:
    {"in": "a.jpg", "out": "b.jpg", "scale": null | "640x480"}
and reads one JSON line back: {"ms": wall, "cpu_ms": this process's CPU (all threads), "peak_rss_mb": ...}, the
peak RSS during that photo (reset before each).
Each photo goes through deface's own `image_detect` with the CLI's defaults (threshold 0.2, ellipse blur,
mask scale 1.3, no metadata kept), with one CenterFace per `--scale` built as the CLI builds it: what is
timed is exactly the CLI's per-photo work, without its start-up (imports, model load), which is measured
separately by running the CLI itself.
"""

from __future__ import annotations

import json
import sys
import time


def peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM). Not getrusage: its maxrss includes what the parent held before exec."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_rss() -> None:
    """VmHWM back to the current RSS (Linux: "5" to clear_refs), so each reply gives that photo's own peak."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def main() -> int:
    from deface.centerface import CenterFace
    from deface.deface import image_detect

    # Replies go to the real stdout; anything deface or its libraries print goes to stderr instead.
    replies, sys.stdout = sys.stdout, sys.stderr
    models: dict[str | None, CenterFace] = {}
    print(json.dumps({"ready": True}), file=replies, flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        scale = req.get("scale")
        if scale not in models:
            shape = tuple(int(v) for v in scale.split("x")) if scale else None
            models[scale] = CenterFace(in_shape=shape, backend="auto")
        reset_peak_rss()
        cpu, wall = time.process_time(), time.perf_counter()
        error = None
        try:
            image_detect(
                ipath=req["in"],
                opath=req["out"],
                centerface=models[scale],
                threshold=0.2,
                replacewith="blur",
                mask_scale=1.3,
                ellipse=True,
                draw_scores=False,
                enable_preview=False,
                keep_metadata=False,
            )
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        reply = {
            "ms": (time.perf_counter() - wall) * 1000,
            "cpu_ms": (time.process_time() - cpu) * 1000,
            "peak_rss_mb": peak_rss_mb(),
            "error": error,
        }
        print(json.dumps(reply), file=replies, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
