"""ImageMagick: explicit resource limits, the check that our whole policy is in force, errors mapped to reasons.

ImageMagick reads MAGICK_CONFIGURE_PATH and MAGICK_TEMPORARY_PATH once, when Wand first loads the library: the
process entry point sets them first (worker/process.py); if it did not, `policy_problems` refuses to start.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import wand.exceptions as wand_exc
import wand.resource
import wand.version
from wand.api import libmagick, library
from wand.image import Image

from worker.config import ImageSettings, parse_bytes
from worker.errors import CorruptImage, PermanentError, ResourcesExhausted, UnsupportedImage
from worker.imaging.container.formats import FORMATS

__all__ = ["Image", "configure", "magick_errors"]


@cache
def _c() -> Any:
    """The calls Wand does not wrap, typed once on first use: a decoder's warnings kept on the image (ImageMagick
    6), policy rights, profile transforms."""
    library.GetImageFromMagickWand.restype = ctypes.c_void_p
    library.GetImageFromMagickWand.argtypes = [ctypes.c_void_p]
    libmagick.AcquireExceptionInfo.restype = ctypes.c_void_p
    libmagick.GetImageException.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    libmagick.DestroyExceptionInfo.argtypes = [ctypes.c_void_p]
    libmagick.DestroyExceptionInfo.restype = ctypes.c_void_p
    libmagick.IsRightsAuthorized.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p]
    libmagick.IsRightsAuthorized.restype = ctypes.c_int
    library.MagickProfileImage.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]
    library.MagickProfileImage.restype = ctypes.c_int
    return libmagick, library


class _ExceptionInfo(ctypes.Structure):  # the leading fields of MagickCore's ExceptionInfo
    _fields_ = (
        ("severity", ctypes.c_int),
        ("error_number", ctypes.c_int),
        ("reason", ctypes.c_char_p),
        ("description", ctypes.c_char_p),
    )


def configure(settings: ImageSettings) -> None:
    """Explicit limits, whatever the system policy says: an image over them fails fast instead of
    exhausting the task's memory."""
    limits = wand.resource.limits
    # Never below our own: container.inspect refuses larger images with a clear message before decoding (a
    # policy can only lower these; policy_problems() then refuses to start).
    limits["width"] = max(limits["width"], settings.max_side)
    limits["height"] = max(limits["height"], settings.max_side)
    # area: pixels held in the pixel cache at once (the full image plus working copies).
    limits["area"] = max(limits["area"], settings.max_pixels * 2)
    limits["memory"] = parse_bytes(settings.memory_limit)
    limits["map"] = parse_bytes(settings.map_limit)
    limits["disk"] = parse_bytes(settings.disk_limit)
    limits["thread"] = settings.threads


CORRUPT_IMAGE_WARNING = 325  # MagickCore ExceptionType


def decode_warning(img: Image) -> str | None:
    """The decoder's warning that the data ended early ("Premature end of JPEG file"), if any.

    Only truncation is refused: libjpeg also warns about e.g. extraneous bytes before a marker in photos
    that decode perfectly, and those must not be lost to the DLQ.
    """
    _c()
    info = libmagick.AcquireExceptionInfo()
    try:
        libmagick.GetImageException(library.GetImageFromMagickWand(img.wand), info)
        exc = _ExceptionInfo.from_address(info)
        if exc.severity < CORRUPT_IMAGE_WARNING:
            return None
        text = " ".join(p.decode(errors="replace") for p in (exc.reason, exc.description) if p)
        if exc.severity >= 400 or "premature end" in text.lower() or "truncat" in text.lower():
            return text or "decoder reported a corrupt image"
        return None
    finally:
        libmagick.DestroyExceptionInfo(info)


# MagickCore's PolicyDomain and PolicyRights values.
_CODER, _DELEGATE, _PATH = 1, 2, 4
_READ, _WRITE, _EXECUTE = 1, 2, 4
# The coders of the format table (container/formats.py), under every name ImageMagick gives them, and the raw formats
# used for pixel transfer; every other coder must be refused by the policy in force.
_PIXEL_TRANSFER = frozenset({"RGB", "RGBA", "GRAY"})
ALLOWED_CODERS = frozenset(name for f in FORMATS if not f.read_only for name in f.policy_names) | _PIXEL_TRANSFER
READ_ONLY_CODERS = frozenset(name for f in FORMATS if f.read_only for name in f.policy_names)  # HEIC: out as JPEG
NEEDED_CODERS = frozenset(f.coder.upper() for f in FORMATS if not f.read_only)  # read and written: JPEG, PNG, WEBP


def policy_problems(settings: ImageSettings) -> list[str]:
    """Why the policy and limits in force are not ours (empty when they are): every coder but ours refused, no
    delegates, no @file paths, an MVG payload refused for real, and resource limits that let every image under
    MAX_SIDE / MAX_PIXELS through (a stricter policy elsewhere would cap them and refuse valid photos)."""
    problems = []
    allowed = _c()[0].IsRightsAuthorized
    for fmt in wand.version.formats("*"):
        name = fmt.upper().encode()
        ours = fmt.upper() in ALLOWED_CODERS
        if fmt.upper() in READ_ONLY_CODERS:
            if allowed(_CODER, _WRITE, name):
                problems.append(f"coder {fmt} may write (the worker only reads it)")
            if not allowed(_CODER, _READ, name):
                problems.append(f"coder {fmt} is refused (the worker reads it)")
        elif not ours and (allowed(_CODER, _READ, name) or allowed(_CODER, _WRITE, name)):
            problems.append(f"coder {fmt} is not refused")
        if fmt.upper() in NEEDED_CODERS and not allowed(_CODER, _READ | _WRITE, name):
            problems.append(f"coder {fmt} is refused (the worker needs it)")
    if any(allowed(_DELEGATE, rights, b"*") for rights in (_READ, _WRITE, _EXECUTE)):
        problems.append("delegates (external programs) are not refused")
    if allowed(_PATH, _READ, b"@*"):
        problems.append("@file paths are not refused")
    try:
        with Image(blob=b"viewbox 0 0 1 1\n", format="mvg"):
            problems.append("an MVG payload was decoded")
    except wand_exc.PolicyError:
        pass
    except wand_exc.WandException as exc:
        problems.append(f"an MVG payload failed other than by policy ({_short(exc)})")
    limits = wand.resource.limits
    for name, needed in (("width", settings.max_side), ("height", settings.max_side), ("area", settings.max_pixels)):
        if limits[name] < needed:
            problems.append(f"the {name} limit in force ({limits[name]}) is below what MAX_SIDE/MAX_PIXELS allow")
    return problems


def apply_profile(img: Image, source: bytes, target: bytes) -> bool:
    """Convert the pixels from the colour profile `source` to `target` (LittleCMS), leaving `target` attached.
    False, with the image untouched and no profile attached, when the library cannot use `source`."""
    try:
        img.profiles["icc"] = source
        if _c()[1].MagickProfileImage(img.wand, b"icc", target, len(target)):
            return True
    except wand_exc.WandException:
        pass
    library.MagickClearException(img.wand)
    if "icc" in img.profiles:
        del img.profiles["icc"]
    return False


@contextmanager
def magick_errors(what: str) -> Iterator[None]:
    """Turn ImageMagick's exceptions (often a generic WandRuntimeError) into errors that say what was wrong."""
    try:
        yield
    except PermanentError:
        raise
    except (wand_exc.ResourceLimitError, wand_exc.CacheError) as exc:
        # Admission keeps photos within the memory budget, and sizes were checked against the limits before
        # decoding: running out now is the process's state, not the photo's fault. Retried, never dead-lettered.
        raise ResourcesExhausted(f"{what}: ImageMagick ran out of resources ({_short(exc)})") from exc
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
