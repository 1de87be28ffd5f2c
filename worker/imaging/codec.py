"""Decode and encode photos: magic-byte sniffing, header guard, EXIF orientation, metadata removal.

The coder is always named explicitly from the sniffed magic bytes, so ImageMagick never guesses a format
from content (an SVG or MVG payload named .jpg is refused before the library sees it).
"""

from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass, field

import numpy as np
from wand.api import library

from worker.config import ImageSettings
from worker.errors import CorruptImage, ImageTooLarge, NotAnImage, UnsupportedImage
from worker.imaging import exif
from worker.imaging.magick import Image, decode_warning, magick_errors

# magic prefix -> ImageMagick coder
_MAGIC: list[tuple[bytes, str]] = [
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
]
_OTHER_IMAGES: list[tuple[bytes, str]] = [
    (b"GIF8", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"8BPS", "PSD"),
    (b"%PDF", "PDF"),
    (b"%!PS", "PostScript"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
]
CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}


def sniff(data: bytes) -> str:
    """The coder for `data` ('jpeg', 'png' or 'webp') or a clear error."""
    if not data:
        raise NotAnImage("empty file (0 bytes)")
    for magic, coder in _MAGIC:
        if data.startswith(magic):
            return coder
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypavif"):
        raise UnsupportedImage("HEIF/AVIF images are not supported (JPEG, PNG and WebP are)")
    for magic, name in _OTHER_IMAGES:
        if data.startswith(magic):
            raise UnsupportedImage(f"{name} images are not supported (JPEG, PNG and WebP are)")
    head = data[:256].lstrip().lower()
    if head.startswith((b"<?xml", b"<svg", b"<!doctype svg")) or b"<svg" in head:
        raise UnsupportedImage("SVG/XML content is not accepted")
    if head.startswith((b"push graphic-context", b"viewbox")):
        raise UnsupportedImage("MVG (ImageMagick vector) content is not accepted")
    raise NotAnImage("not an image: no JPEG, PNG or WebP signature")


@dataclass(frozen=True, slots=True)
class Header:
    coder: str
    width: int
    height: int


def read_header(data: bytes, settings: ImageSettings) -> Header:
    """Sniff, then read only the header (`ping`) and refuse oversize images before any pixel is decoded."""
    coder = sniff(data)
    with magick_errors(f"reading the {coder.upper()} header"), Image.ping(blob=data, format=coder) as img:
        width, height = img.size
    if width <= 0 or height <= 0:
        raise CorruptImage(f"{coder.upper()} header declares an empty image ({width}x{height})")
    if width > settings.max_side or height > settings.max_side or width * height > settings.max_pixels:
        raise ImageTooLarge(
            f"image is {width}x{height} ({width * height / 1e6:.1f} MP); the limit is "
            f"{settings.max_pixels / 1e6:.0f} MP and {settings.max_side} px a side (MAX_PIXELS, MAX_SIDE)"
        )
    return Header(coder, width, height)


@dataclass(slots=True)
class Photo:
    """A decoded, upright photo with private metadata removed. Owns its Wand image: use as a context."""

    image: Image
    coder: str
    source_quality: int
    sampling_factor: str | None
    has_alpha: bool
    _arrays: dict[tuple[int, float], tuple[np.ndarray, float]] = field(default_factory=dict)
    input_seconds: float = 0.0  # time spent making detector inputs, reported as its own stage
    _shrunk: Image | None = None  # the last detector copy, alpha already flattened
    # What a remote detector (Rekognition) needs to send the original file instead of a re-encoded copy: the
    # encoded bytes as received, the EXIF orientation they carry (1 = none) and their stored (pre-rotation) size.
    source: bytes = field(default=b"", repr=False)
    orientation: int = 1
    stored_size: tuple[int, int] = (0, 0)

    def __enter__(self) -> Photo:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._shrunk is not None:
            self._shrunk.close()
        self.image.close()

    @property
    def size(self) -> tuple[int, int]:
        w, h = self.image.size
        return int(w), int(h)

    def rgb(self, long_side: int, max_upscale: float) -> tuple[np.ndarray, float]:
        """Detector input: an RGB copy with the given long side (box-filtered when shrinking)."""
        key = (long_side, max_upscale)
        if key not in self._arrays:
            start = time.perf_counter()
            w, h = self.size
            scale = min(long_side / max(w, h), max_upscale)
            tw, th = max(1, round(w * scale)), max(1, round(h * scale))
            # Shrink from the smallest copy already made that is still at least as large: the fine pass's copy
            # serves the coarse and rotated passes at a fraction of the cost of shrinking the full image again.
            base = self._shrunk if self._shrunk is not None and self._shrunk.width >= tw else self.image
            small = base.clone()
            if base is self.image and self.has_alpha:
                # What is transparent shows as mid grey, as a viewer on a neutral background would see it.
                small.background_color = "gray50"
                small.alpha_channel = "remove"
            if small.size != (tw, th):
                if tw < small.width:
                    small.scale(tw, th)  # box filter: the cheapest antialiased shrink in ImageMagick
                else:
                    small.resize(tw, th, filter="triangle")
            self._arrays[key] = (export_rgb(small), w / tw)
            if self._shrunk is not None:
                self._shrunk.close()
            self._shrunk = small
            self.input_seconds += time.perf_counter() - start
        return self._arrays[key]

    def shrunk_copies(self) -> list[np.ndarray]:
        """The detector inputs made so far: uint8 RGB of the whole upright photo, box-shrunk (alpha flattened onto
        grey). Redaction takes large regions' cell means from them instead of reading the pixels back."""
        return [rgb for rgb, _ in self._arrays.values()]


def export_rgb(img: Image) -> np.ndarray:
    """HxWx3 uint8 RGB straight from the pixel cache (numpy.asarray(img) goes through a ctypes char array)."""
    w, h = img.size
    out = np.empty((h, w, 3), np.uint8)
    ok = library.MagickExportImagePixels(img.wand, 0, 0, w, h, b"RGB", 1, out.ctypes.data_as(ctypes.c_void_p))
    if not ok:
        img.raise_exception()
        raise CorruptImage("could not export pixels")
    return out


ORIENTATIONS = (
    "undefined",
    "top_left",
    "top_right",
    "bottom_right",
    "bottom_left",
    "left_top",
    "right_top",
    "right_bottom",
    "left_bottom",
)  # index = EXIF value
# Chunks the PNG encoder must not write: no timestamps, no colour-management leftovers from the input other than
# the ICC profile we put back. (strip() excludes iCCP too, which would drop the profile we keep.)
PNG_EXCLUDED_CHUNKS = "bKGD,caNv,cHRM,eXIf,gAMA,pHYs,date,time"


def _orient(img: Image, coder: str, data: bytes) -> int:
    """Make the pixels upright. ImageMagick 6 reads the Orientation tag of JPEGs only; for PNG (eXIf chunk) and
    WebP (EXIF chunk) it is read here, as viewers and browsers honour it there too. Returns the EXIF value applied
    (1 = none)."""
    if coder != "jpeg" and img.orientation in ("undefined", "top_left"):
        raw = img.profiles.get("exif") or (exif.png_exif(data) if coder == "png" else None)
        value = exif.orientation(bytes(raw)) if raw else None
        if value and value != 1:
            img.orientation = ORIENTATIONS[value]
    applied = ORIENTATIONS.index(img.orientation) if img.orientation in ORIENTATIONS else 1
    img.auto_orient()
    return applied or 1


def decode(data: bytes, header: Header) -> Photo:
    """Full decode, upright (all 8 EXIF orientations), sRGB, metadata stripped except the ICC profile."""
    what = f"decoding the {header.coder.upper()} image"
    img = Image()
    try:
        with magick_errors(what):
            img.read(blob=data, format=header.coder)
            if len(img.sequence) > 1:
                # Only the current frame would be blurred; refusing is safer than publishing the others.
                raise UnsupportedImage(f"{what}: animated images ({len(img.sequence)} frames) are not supported")
            if img.size != (header.width, header.height) or img.width * img.height == 0:
                raise CorruptImage(f"{what}: decoded size {img.size} differs from the header")
            problem = decode_warning(img)
            if problem:
                raise CorruptImage(f"{what}: truncated or corrupt ({problem})")
            quality = int(img.compression_quality or 0)
            sampling = img.metadata.get("jpeg:sampling-factor") if header.coder == "jpeg" else None
            orientation = _orient(img, header.coder, data)
            icc = img.profiles.get("icc")
            if img.colorspace == "cmyk":
                # CMYK JPEGs (print workflows) become sRGB: their CMYK ICC profile no longer applies.
                img.transform_colorspace("srgb")
                icc = None
            # Removes EXIF (GPS, thumbnail, camera serials), XMP (incl. face-region names), IPTC, comments.
            img.strip()
            # strip() leaves some text properties behind (PNG tEXt keys such as Author): drop them too.
            for key in [k for k in img.metadata if not k.startswith(("png:", "jpeg:"))]:
                del img.metadata[key]
            if icc:
                img.profiles["icc"] = icc
            has_alpha = bool(img.alpha_channel)
    except BaseException:
        img.close()
        raise
    return Photo(
        img,
        header.coder,
        quality,
        sampling,
        has_alpha,
        source=data,
        orientation=orientation,
        stored_size=(header.width, header.height),
    )


def encode(photo: Photo, settings: ImageSettings) -> bytes:
    """Write the input's format: JPEG at about the input's quality with its chroma subsampling; PNG stays PNG."""
    img = photo.image
    with magick_errors("encoding the output"):
        img.format = photo.coder
        if photo.coder == "jpeg":
            q = settings.jpeg_quality or min(95, max(60, photo.source_quality or 85))
            img.compression_quality = q
            if photo.sampling_factor:
                img.options["jpeg:sampling-factor"] = photo.sampling_factor
        elif photo.coder == "png":
            img.artifacts["png:exclude-chunk"] = PNG_EXCLUDED_CHUNKS
        elif photo.coder == "webp":
            img.compression_quality = settings.jpeg_quality or min(95, max(60, photo.source_quality or 85))
        blob = img.make_blob()
    if not blob:
        raise CorruptImage("encoding produced no bytes")
    return blob


def content_type(coder: str) -> str:
    return CONTENT_TYPES[coder]
