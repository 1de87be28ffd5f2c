"""Process-wide set-up that must come before numpy's BLAS, ImageMagick and ONNX Runtime are loaded: called first
by the entry points (`cli.main`, `python -m worker.detect.model`), never at import time. Idempotent."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import warnings
from pathlib import Path

POLICY_DIR = Path(__file__).parent / "imaging" / "policy"
_done = False


def prepare() -> None:
    global _done
    if _done:
        return
    _done = True
    # One BLAS thread: the redaction makes small matrix products per face, and OpenBLAS's thread hand-off made it
    # 2-5x slower. The worker pool is the parallelism.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # ONNX Runtime (1.32 on Linux) otherwise starts its telemetry when loaded: a device id written under $HOME,
    # a session file in the temp directory, events it may upload. Nothing about this service's photos or hosts
    # leaves it that way: always off, whatever the environment says.
    os.environ["ORT_DISABLE_TELEMETRY"] = "1"
    # ImageMagick reads these once, when Wand loads it: our restrictive policy, and a private temp directory
    # (removed at exit) under MAGICK_TEMPORARY_PATH or the system's.
    os.environ.setdefault("MAGICK_CONFIGURE_PATH", str(POLICY_DIR))
    private = tempfile.mkdtemp(prefix="faceblur-magick-", dir=os.environ.get("MAGICK_TEMPORARY_PATH") or None)
    os.environ["MAGICK_TEMPORARY_PATH"] = private
    atexit.register(shutil.rmtree, private, True)
    # Coder warnings (libpng's "known incorrect sRGB profile") are noise; truncation is read from the image itself
    # (imaging/magick.py: decode_warning).
    warnings.filterwarnings("ignore", module="wand")
    warnings.filterwarnings("ignore", message=".*", category=UserWarning, module="wand")
