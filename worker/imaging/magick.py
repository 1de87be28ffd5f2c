"""ImageMagick start-up: our restrictive policy, a private temp dir and explicit resource limits.

ImageMagick reads MAGICK_CONFIGURE_PATH and MAGICK_TEMPORARY_PATH once, when Wand first loads the library,
so this module sets them *before* importing wand; every other module imports wand through here.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from worker.config import ImageSettings

POLICY_DIR = Path(__file__).parent / "policy"

os.environ.setdefault("MAGICK_CONFIGURE_PATH", str(POLICY_DIR))
os.environ.setdefault("MAGICK_THREAD_LIMIT", "1")
_private_tmp = tempfile.mkdtemp(prefix="faceblur-magick-", dir=os.environ.get("MAGICK_TEMPORARY_PATH") or None)
os.environ["MAGICK_TEMPORARY_PATH"] = _private_tmp
atexit.register(shutil.rmtree, _private_tmp, True)

import wand.exceptions as wand_exc  # noqa: E402  (must follow the environment set-up above)
import wand.resource  # noqa: E402
from wand.image import Image  # noqa: E402

from worker.errors import CorruptImage, ImageTooLarge, PermanentError, UnsupportedImage  # noqa: E402

__all__ = ["Image", "configure", "magick_errors", "temp_dir"]

# A truncated JPEG decodes "successfully" with a grey bottom and only a warning; we refuse it instead.
warnings.filterwarnings("error", category=wand_exc.CorruptImageWarning)
# Other coder warnings (e.g. libpng's "known incorrect sRGB profile") are harmless noise.
warnings.filterwarnings("ignore", category=wand_exc.WandWarning)

_UNITS = {"": 1, "b": 1, "kib": 2**10, "mib": 2**20, "gib": 2**30, "kb": 10**3, "mb": 10**6, "gb": 10**9}


def parse_bytes(text: str) -> int:
    """'512MiB' -> 536870912. Plain numbers are bytes."""
    t = text.strip().lower()
    digits = t.rstrip("kmgib")
    unit = t[len(digits) :]
    if unit not in _UNITS or not digits:
        raise ValueError(f"not a size: {text!r} (use e.g. 512MiB, 2GiB)")
    return int(float(digits) * _UNITS[unit])


def temp_dir() -> str:
    return _private_tmp


def configure(settings: ImageSettings) -> None:
    """Explicit limits, whatever the system policy says: an image over them fails fast instead of
    exhausting the task's memory."""
    limits = wand.resource.limits
    limits["width"] = settings.max_side
    limits["height"] = settings.max_side
    # area: pixels held in the pixel cache at once (the full image plus working copies).
    limits["area"] = settings.max_pixels * 2
    limits["memory"] = parse_bytes(settings.memory_limit)
    limits["map"] = parse_bytes(settings.map_limit)
    limits["disk"] = parse_bytes(settings.disk_limit)
    limits["thread"] = settings.threads


def policy_active() -> bool:
    """True when our policy is in force: the MVG coder must be refused."""
    try:
        with Image(blob=b"viewbox 0 0 1 1\n", format="mvg"):
            return False
    except wand_exc.PolicyError:
        return True
    except wand_exc.WandException:
        return False


@contextmanager
def magick_errors(what: str) -> Iterator[None]:
    """Turn ImageMagick's exceptions (often a generic WandRuntimeError) into errors that say what was wrong."""
    try:
        yield
    except PermanentError:
        raise
    except wand_exc.ResourceLimitError as exc:
        raise ImageTooLarge(f"{what}: image exceeds a resource limit ({_short(exc)})") from exc
    except wand_exc.PolicyError as exc:
        raise UnsupportedImage(f"{what}: format refused by the security policy ({_short(exc)})") from exc
    except (wand_exc.MissingDelegateError, wand_exc.MissingDelegateWarning) as exc:
        raise UnsupportedImage(f"{what}: unsupported image format ({_short(exc)})") from exc
    except (wand_exc.CorruptImageError, wand_exc.CorruptImageWarning, wand_exc.CoderError) as exc:
        raise CorruptImage(f"{what}: corrupt or truncated image ({_short(exc)})") from exc
    except (wand_exc.BlobError, wand_exc.WandRuntimeError, wand_exc.ImageError) as exc:
        raise CorruptImage(f"{what}: could not be decoded ({_short(exc)})") from exc
    except wand_exc.WandException as exc:
        raise CorruptImage(f"{what}: ImageMagick failed ({_short(exc)})") from exc


def _short(exc: BaseException) -> str:
    # ImageMagick appends " @ error/file.c/Function/line"; users need the first part.
    text = str(exc).split(" @ ")[0].strip()
    return text[:200] or type(exc).__name__
