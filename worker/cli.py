"""Command line: `python -m worker blur INPUT... --out DIR [--report report.json]` (and, later, run/demo)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from worker import __version__
from worker.config import ConfigError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


@dataclass(slots=True)
class Job:
    source: Path
    relative: Path  # output path under --out


@dataclass(slots=True)
class Row:
    input: str
    output: str | None = None
    faces: list[dict[str, Any]] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    reason: str | None = None


def collect(inputs: Sequence[str]) -> Iterator[Job]:
    """Files as given (whatever their suffix: sniffing decides); folders: their image files, recursively."""
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and child.suffix.lower() in IMAGE_SUFFIXES:
                    yield Job(child, child.relative_to(path))
        else:
            yield Job(path, Path(path.name))


def blur_file(job: Job, out_dir: Path, detector: Any, settings: Any) -> Row:
    from worker.blur import blur_photo
    from worker.errors import FaceblurError

    row = Row(input=str(job.source))
    start = time.perf_counter()
    try:
        data = job.source.read_bytes()
        result = blur_photo(data, detector, settings)
        target = out_dir / job.relative
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        partial.write_bytes(result.data)
        partial.replace(target)  # never a half-written output under the real name
        row.output = str(target)
        row.faces = [f.as_dict() for f in result.faces]
        row.timings_ms = {k: round(v * 1000, 1) for k, v in result.timings.items()}
    except FaceblurError as exc:
        row.error, row.reason = str(exc), exc.reason
    except OSError as exc:
        row.error, row.reason = f"cannot read or write: {exc}", "io_error"
    row.timings_ms["total"] = round((time.perf_counter() - start) * 1000, 1)
    return row


def cmd_blur(args: argparse.Namespace) -> int:
    from worker.runtime import start

    settings, detector = start()
    jobs = list(collect(args.inputs))
    if not jobs:
        print("no image files found in the inputs", file=sys.stderr)
        return 2
    names = [j.relative for j in jobs]
    if len(set(names)) != len(names):
        print("two inputs would write the same output name; blur them into separate --out folders", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    tty = sys.stderr.isatty()
    rows: list[Row] = []
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for i, row in enumerate(pool.map(lambda j: blur_file(j, args.out, detector, settings), jobs), 1):
            rows.append(row)
            if tty:
                bar = "#" * (30 * i // len(jobs))
                print(f"\r[{bar:<30}] {i}/{len(jobs)} {Path(row.input).name[:40]:<40}", end="", file=sys.stderr)
            if row.error:
                lead = "\n" if tty else ""
                print(f"{lead}error: {row.input}: {row.error}", file=sys.stderr)
    if tty:
        print(file=sys.stderr)
    failed = sum(1 for r in rows if r.error)
    faces = sum(len(r.faces) for r in rows)
    print(f"{len(rows) - failed} blurred, {failed} failed, {faces} faces -> {args.out}")
    if args.report:
        report = {"version": __version__, "images": [asdict(r) for r in rows]}
        args.report.write_text(json.dumps(report, indent=1, ensure_ascii=False))
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m worker", description="faceblur worker")
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    blur = sub.add_parser("blur", help="blur every face in local image files")
    blur.add_argument("inputs", nargs="+", help="image files or folders (folders: .jpg .jpeg .png .webp files)")
    blur.add_argument("--out", type=Path, required=True, help="output folder (same file names)")
    blur.add_argument("--report", type=Path, help="write a JSON report: faces, stage timings, errors")
    blur.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="photos processed at once")
    blur.set_defaults(func=cmd_blur)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
