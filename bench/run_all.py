"""`make bench`: installs the comparison tools (bench/setup.sh, idempotent), then runs every benchmark and prints
its tables (also written to bench/results/, which git ignores). Method, machine and results: docs/benchmarks.md.

usage: .venv/bin/python bench/run_all.py [blur_core options: --reps N, --quick, --only SECTIONS, --keep, ...]
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "-h" not in args and "--help" not in args:
        setup = subprocess.run(["bash", str(HERE / "setup.sh")], check=False)
        if setup.returncode:
            print("bench/setup.sh failed: running without what it could not install", file=sys.stderr)
    sys.path.insert(0, str(HERE))
    import blur_core

    return blur_core.main(args)


if __name__ == "__main__":
    raise SystemExit(main())
