"""`python -m worker blur INPUT... --out DIR`: blur local files. It must never lose an original: every output path
is planned and checked before any photo is read, and an --out that is, contains or is inside an input is refused.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from worker import __version__
from worker.imaging.container.formats import FORMATS, SUFFIXES

if TYPE_CHECKING:
    from worker.config import DetectSettings


class Refused(Exception):
    """A command line that could lose or overwrite data, or cannot work: one line, exit status 2."""


@dataclass(frozen=True, slots=True)
class Job:
    source: Path
    target: Path


@dataclass(slots=True)
class Row:
    input: str
    output: str | None = None
    faces: list[dict[str, Any]] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    reason: str | None = None


def collect(inputs: Sequence[str]) -> Iterator[tuple[Path, Path]]:
    """(file, path under --out): files as given (whatever their suffix: sniffing decides); folders: their image
    files, recursively, sub-paths kept."""
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and child.suffix.lower() in SUFFIXES:
                    yield child, child.relative_to(path)
        else:
            yield path, Path(path.name)


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def plan(inputs: Sequence[str], out: Path, report: Path | None, boxes: bool = False) -> list[Job]:
    """Every output path, checked before any work: refuses (Refused) whatever could overwrite an original or
    cannot be written. Symlinks are resolved: two names for one folder are one folder."""
    out_real = out.resolve()
    if out.exists() and not out.is_dir():
        raise Refused(f"--out {out} is a file, not a folder")
    sources = [Path(raw).resolve() for raw in inputs]
    for raw, real in zip(inputs, sources, strict=True):
        if real.is_dir() and _within(out_real, real):
            raise Refused(f"--out {out} is inside the input folder {raw}: outputs would mix with the originals")
        if _within(real, out_real):
            raise Refused(f"the input {raw} is inside --out {out}: its output could replace it")
    jobs = []
    for source, relative in collect(inputs):
        if boxes:  # a copy that shows the faces: never under the photo's own name
            relative = relative.with_name(f"{relative.stem}.boxes{relative.suffix}")
        jobs.append(Job(source, out / relative))
    if not jobs:
        raise Refused("no image files found in the inputs")
    targets = [j.target.resolve() for j in jobs]
    if len(set(targets)) != len(targets):
        raise Refused("two inputs would write the same output name; blur them into separate --out folders")
    originals = {j.source.resolve() for j in jobs}
    clash = next((t for t in targets if t in originals), None)
    if clash is not None:
        raise Refused(f"the output {clash} would replace an input")
    _check_writable_folder(out, "--out")
    if report is not None:
        if report.is_dir():
            raise Refused(f"--report {report} is a folder")
        if report.resolve() in originals:
            raise Refused(f"--report {report} is an input")
        if not report.resolve().parent.is_dir():
            raise Refused(f"--report's folder {report.parent} does not exist")
        _check_writable_folder(report.resolve().parent, f"--report's folder {report.parent}")
    return jobs


def _check_writable_folder(folder: Path, what: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".faceblur-check-"):
            pass
    except OSError as exc:
        raise Refused(f"{what} cannot be written: {exc.strerror or exc}") from None


def process(job: Job, run: Any) -> Row:
    """One file through `run(bytes) -> (bytes, faces, timings)`; written via a temporary name, then renamed."""
    from worker.errors import FaceblurError

    row = Row(input=str(job.source))
    start = time.perf_counter()
    try:
        data, faces, timings = run(job.source.read_bytes())
        job.target.parent.mkdir(parents=True, exist_ok=True)
        partial = job.target.with_name(f".{job.target.name}.partial")
        partial.write_bytes(data)
        partial.replace(job.target)  # never a half-written output under the real name
        row.output = str(job.target)
        row.faces = [f.as_dict() for f in faces]
        row.timings_ms = {k: round(v * 1000, 1) for k, v in timings.items()}
    except FaceblurError as exc:
        row.error, row.reason = str(exc), exc.reason
    except OSError as exc:
        row.error, row.reason = f"cannot read or write: {exc}", "io_error"
    row.timings_ms["total"] = round((time.perf_counter() - start) * 1000, 1)
    return row


def least_score(detect: DetectSettings, threshold: float) -> DetectSettings:
    """--threshold: the least score of every pass and level; those stricter already (coarse levels, the upside-down
    pass) stay as strict."""
    return replace(
        detect,
        threshold=threshold,
        coarse_threshold=max(detect.coarse_threshold, threshold),
        rotated_threshold=max(detect.rotated_threshold, threshold),
        rotated_coarse_threshold=max(detect.rotated_coarse_threshold, threshold),
    )


def cmd_blur(args: argparse.Namespace) -> int:
    jobs = plan(args.inputs, args.out, args.report, args.boxes)
    from tqdm import tqdm

    from worker.blur import blur_photo, outline_photo
    from worker.config import from_env
    from worker.imaging.egress import Output
    from worker.runtime import memory_budget, start

    settings = from_env()
    if args.threshold is not None:
        settings = replace(settings, detect=least_score(settings.detect, args.threshold))
    if args.mode is not None:
        settings = replace(settings, redact=replace(settings.redact, mode=args.mode))
    settings, detector = start(settings)
    budget = memory_budget(settings)
    if args.boxes:
        print("--boxes: the copies show the detected faces and are NOT anonymised", file=sys.stderr)

    def run(data: bytes) -> tuple[Output, list[Any], dict[str, float]]:
        if args.boxes:
            return outline_photo(data, detector, settings)
        result = blur_photo(data, detector, settings, budget)
        return result.data, result.faces, result.timings

    rows: list[Row] = []
    tty = sys.stderr.isatty()
    with (
        ThreadPoolExecutor(max_workers=args.jobs) as pool,
        tqdm(total=len(jobs), unit="photo", file=sys.stderr, disable=not tty, dynamic_ncols=True) as bar,
    ):
        for future in as_completed([pool.submit(process, job, run) for job in jobs]):  # a slow photo holds nothing
            row = future.result()
            rows.append(row)
            if row.error:
                tqdm.write(f"error: {row.input}: {row.error}", file=sys.stderr)
            bar.update()
    rows.sort(key=lambda r: r.input)
    failed = sum(1 for r in rows if r.error)
    faces = sum(len(r.faces) for r in rows)
    verb = "outlined" if args.boxes else "blurred"
    print(f"{len(rows) - failed} {verb}, {failed} failed, {faces} faces -> {args.out}")
    if args.report:
        report = {"version": __version__, "images": [asdict(r) for r in rows]}
        args.report.write_text(json.dumps(report, indent=1, ensure_ascii=False))
    return 1 if failed else 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def add_command(sub: Any) -> None:
    blur = sub.add_parser("blur", help="blur every face in local image files (never over an original)")
    folders = " ".join(s for f in FORMATS for s in f.suffixes)
    blur.add_argument("inputs", nargs="+", help=f"image files or folders (folders: {folders})")
    blur.add_argument("--out", type=Path, required=True, help="output folder (same file names); not an input's")
    blur.add_argument("--report", type=Path, help="write a JSON report: faces, stage timings, errors")
    blur.add_argument("--jobs", type=_positive, default=os.cpu_count() or 1, help="photos processed at once")
    blur.add_argument("--threshold", type=float, help="detection score threshold (DETECT_THRESHOLD, default 0.2)")
    blur.add_argument("--mode", choices=("blur", "pixelate", "solid"), help="how faces are hidden (BLUR_MODE)")
    blur.add_argument(
        "--boxes",
        action="store_true",
        help="dry run: write copies named NAME.boxes.EXT with the detected faces outlined (NOT anonymised)",
    )
    blur.set_defaults(func=cmd_blur)
