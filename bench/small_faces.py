"""Small faces in big photos: ours against deface 1.5.0 at full resolution, side by side in one run.

The dev set's WIDER crowd photos tiled 2x2, 3x3 and 4x4 at their own pixel size (every face keeps its native
16-100 px; tests/helpers/mosaic.py), two mosaics of each size, and 4032x3024 phone frames (12.2 MP) cut from the
4x4 ones. Each photo goes through our pipeline in this process (one thread, as one worker slot runs it) and
through deface's own `image_detect` with its defaults (CenterFace at full resolution; bench/deface_driver.py),
interleaved photo by photo with the order swapped every other photo and every repetition. Per photo: wall and
CPU seconds, and the process's peak RSS during that photo. Ratios are taken within each repetition on set
totals; the median (and range) over repetitions is given. The first repetition's outputs are judged by the
referee (../shared/tools/score_blur.py), and ours also on the same faces in their own photos.

Then, with --baseline DIR (a checkout of another commit, with its model files): the whole CLI
`python -m worker blur DIR --jobs 2` on 2 MP photos, that checkout against this one, in turn, `--cli-reps` times.

usage: .venv/bin/python bench/small_faces.py [--reps 3] [--baseline /path/to/old-checkout] [--cli-reps 5]
(bench/setup.sh installs deface first). Outputs go to bench/results/small_faces.md and .json (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from blur_core import (  # noqa: E402
    DEV,
    RESULTS,
    ROOT,
    VPY,
    DefaceDriver,
    Ours,
    build_sets,
    machine,
    md_table,
    referee,
    run_timed,
)
from deface_driver import peak_rss_mb, reset_peak_rss  # noqa: E402

from tests.helpers import mosaic  # noqa: E402

PHONE = (4032, 3024)  # a 12 MP phone photo's frame
PER_SIZE = 2


def build(work: Path) -> dict[str, Path]:
    """Each set in its own folder with the referee's annotations.json: 'alone' holds the cells' own photos."""
    sets: dict[str, Path] = {}
    built = mosaic.mosaics(DEV, (2, 3, 4), PER_SIZE)
    for n in (2, 3, 4):
        sets[f"{n}x{n}"] = _write(work / f"{n}x{n}", [(d, e) for k, d, e in built if k == n])
    frames = [mosaic.crop(d, e, PHONE, f"phone_{i}.jpg") for i, (_k, d, e) in enumerate(x for x in built if x[0] == 4)]
    sets["12 MP"] = _write(work / "12mp", frames)
    sets["alone"] = mosaic.originals(DEV, work / "alone", (2, 3, 4), PER_SIZE)
    return sets


def _write(folder: Path, photos: Sequence[tuple[bytes, dict[str, Any]]]) -> Path:
    folder.mkdir(parents=True)
    for data, entry in photos:
        (folder / entry["file"]).write_bytes(data)
    (folder / "annotations.json").write_text(json.dumps([e for _d, e in photos]))
    return folder


def photos(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in (".jpg", ".png"))


def time_ours(ours: Ours, src: Path, dst: Path | None) -> dict[str, float]:
    data = src.read_bytes()
    reset_peak_rss()
    cpu, wall = time.process_time(), time.perf_counter()
    result = ours.blur(data)
    sample = {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu, "rss": peak_rss_mb()}
    if dst:
        dst.write_bytes(bytes(result.data))
    return sample


def time_deface(deface: DefaceDriver, src: Path, dst: Path) -> dict[str, float]:
    reply = deface.run(src, dst, None)
    return {"wall": reply["ms"] / 1000, "cpu": reply["cpu_ms"] / 1000, "rss": reply["peak_rss_mb"]}


def side_by_side(sets: dict[str, Path], out: Path, reps: int) -> list[dict[str, Any]]:
    out.mkdir(parents=True, exist_ok=True)
    ours, deface = Ours(), DefaceDriver(out / "deface.log")
    samples: list[dict[str, Any]] = []
    try:
        for name in photos(sets["alone"]):  # ours only: the reference the mosaics are compared with
            (out / "ours" / "alone").mkdir(parents=True, exist_ok=True)
            time_ours(ours, name, out / "ours" / "alone" / name.name)
        turn = 0
        for rep in range(reps):
            for set_name, folder in sets.items():
                if set_name == "alone":
                    continue
                for src in photos(folder):
                    keep = rep == 0
                    for method in ("ours", "deface") if turn % 2 == 0 else ("deface", "ours"):
                        dst = out / method / set_name / src.name if keep else out / "scratch" / f"{method}.jpg"
                        dst.parent.mkdir(parents=True, exist_ok=True)
                        sample = time_ours(ours, src, dst) if method == "ours" else time_deface(deface, src, dst)
                        samples.append({"rep": rep, "set": set_name, "photo": src.name, "method": method} | sample)
                    turn += 1
                print(f"rep {rep + 1}/{reps}: {set_name} done", file=sys.stderr, flush=True)
    finally:
        deface.close()
    return samples


def ratio(samples: list[dict[str, Any]], set_name: str, key: str) -> tuple[float, float, float]:
    """ours / deface on the set's total, per repetition: (median, min, max)."""
    per_rep = []
    for rep in sorted({s["rep"] for s in samples}):
        total = {
            m: sum(s[key] for s in samples if s["rep"] == rep and s["set"] == set_name and s["method"] == m)
            for m in ("ours", "deface")
        }
        per_rep.append(total["ours"] / total["deface"])
    return statistics.median(per_rep), min(per_rep), max(per_rep)


def median_per_photo(samples: list[dict[str, Any]], set_name: str, method: str, key: str) -> float:
    """The set's mean per photo, median over repetitions."""
    reps = sorted({s["rep"] for s in samples})
    return statistics.median(
        statistics.mean(s[key] for s in samples if s["rep"] == r and s["set"] == set_name and s["method"] == method)
        for r in reps
    )


def cli_throughput(baseline: Path, work: Path, reps: int) -> dict[str, Any]:
    """`python -m worker blur --jobs 2` on 24 files of 2 MP (blur_core's 2 MP set, each photo 4 times), the
    baseline checkout and this one in turn; whole processes, start-up included."""
    two_mp = build_sets(work / "sized", DEV)["2MP"]
    folder = work / "cli-in"
    folder.mkdir()
    for i in range(4):
        for p in two_mp:
            shutil.copy(p.path, folder / f"{i}_{p.path.name}")
    files = len(list(folder.iterdir()))
    runs: dict[str, list[tuple[float, float]]] = {"this": [], "baseline": []}
    for rep in range(reps + 1):  # the first pair warms the page cache and is not counted
        for label, cwd in (
            (("this", ROOT), ("baseline", baseline)) if rep % 2 else (("baseline", baseline), ("this", ROOT))
        ):
            out = work / f"cli-out-{label}"
            shutil.rmtree(out, ignore_errors=True)
            run = run_timed([VPY, "-m", "worker", "blur", str(folder), "--out", str(out), "--jobs", "2"], cwd=cwd)
            if run.code:
                raise RuntimeError(f"the {label} CLI failed: {run.err[-800:]}")
            if rep:
                runs[label].append((run.wall, run.cpu))
    wall = {k: statistics.median(w for w, _c in v) for k, v in runs.items()}
    cpu = {k: statistics.median(c for _w, c in v) for k, v in runs.items()}
    pairs = [t[0] / b[0] for t, b in zip(runs["this"], runs["baseline"], strict=True)]
    return {
        "files": files,
        "images_per_s": {k: files / v for k, v in wall.items()},
        "cpu_s": cpu,
        "wall_ratio_this_over_baseline": (statistics.median(pairs), min(pairs), max(pairs)),
        "baseline": str(baseline),
    }


def report(samples: list[dict[str, Any]], scores: dict[str, dict[str, Any]], sets: dict[str, Path]) -> str:
    rows = []
    for set_name, folder in sets.items():
        if set_name == "alone":
            continue
        mp = [round(w * h / 1e6, 1) for w, h in _sizes(folder)]
        ours, deface = scores[f"ours {set_name}"], scores[f"deface {set_name}"]
        cpu, wall = ratio(samples, set_name, "cpu"), ratio(samples, set_name, "wall")
        rss = {
            m: max(s["rss"] for s in samples if s["set"] == set_name and s["method"] == m) for m in ("ours", "deface")
        }
        rows.append(
            [
                set_name,
                " / ".join(map(str, mp)),
                protected(ours),
                protected(deface),
                f"{ours['collateral_ratio']:.4f} / {deface['collateral_ratio']:.4f}",
                f"{median_per_photo(samples, set_name, 'ours', 'cpu'):.2f} / "
                f"{median_per_photo(samples, set_name, 'deface', 'cpu'):.2f}",
                f"**{cpu[0]:.2f}x** ({cpu[1]:.2f}-{cpu[2]:.2f})",
                f"{wall[0]:.2f}x ({wall[1]:.2f}-{wall[2]:.2f})",
                f"{rss['ours']:.0f} / {rss['deface']:.0f}",
            ]
        )
    alone = scores["ours alone"]
    return (
        md_table(
            [
                "photos",
                "MP",
                "ours protected",
                "deface protected",
                "collateral ours / deface",
                "CPU s a photo ours / deface",
                "CPU ours / deface",
                "wall ours / deface",
                "peak RSS MB ours / deface",
            ],
            rows,
        )
        + f"\n\nThe same faces in their own photos (ours): {protected(alone)}, "
        f"collateral {alone['collateral_ratio']:.4f}.\n"
    )


def protected(score: dict[str, Any]) -> str:
    return f"{score['faces_protected']}/{score['faces_counted']} = {score['protected_ratio']:.3f}"


def _sizes(folder: Path) -> list[tuple[int, int]]:
    return [(e["width"], e["height"]) for e in json.loads((folder / "annotations.json").read_text())]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--baseline", type=Path, help="a checkout of another commit, for the 2 MP CLI throughput")
    ap.add_argument("--cli-reps", type=int, default=5)
    args = ap.parse_args(argv)
    if not DEV.is_dir():
        print(f"the evaluation set is not at {DEV}", file=sys.stderr)
        return 2
    data: dict[str, Any] = {"machine": machine()}
    with tempfile.TemporaryDirectory(prefix="small-faces-") as tmp:
        work = Path(tmp)
        sets = build(work / "in")
        samples = side_by_side(sets, work / "out", args.reps)
        scores = {
            f"{method} {name}": referee(folder, work / "out" / method / name)
            for name, folder in sets.items()
            for method in ("ours", "deface")
            if method == "ours" or name != "alone"
        }
        text = "## Small faces in big photos, side by side with deface 1.5.0 at full resolution\n\n"
        text += report(samples, scores, sets)
        data |= {"samples": samples, "scores": scores}
        if args.baseline:
            cli = cli_throughput(args.baseline.resolve(), work, args.cli_reps)
            data["cli_2mp"] = cli
            r = cli["wall_ratio_this_over_baseline"]
            text += (
                f"\n2 MP, `python -m worker blur --jobs 2` on {cli['files']} files (start-up included): this checkout "
                f"{cli['images_per_s']['this']:.2f} images/s, {cli['baseline']} {cli['images_per_s']['baseline']:.2f}; "
                f"wall this / baseline **{r[0]:.2f}x** ({r[1]:.2f}-{r[2]:.2f}); CPU s {cli['cpu_s']['this']:.1f} / "
                f"{cli['cpu_s']['baseline']:.1f}.\n"
            )
    text += "\n" + md_table(["", ""], [[k, str(v)] for k, v in data["machine"].items()]) + "\n"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "small_faces.md").write_text(text)
    (RESULTS / "small_faces.json").write_text(json.dumps(data, indent=1, default=str))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
