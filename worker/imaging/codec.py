"""Decode and encode photos: the visible image in, and nothing but the visible image out.

The decoder is handed `Inspection.decoder_input` (the container rebuilt by `container.inspect`; HEIC: the upload),
with its coder named explicitly. `decode` then makes the visible image, what a viewer shows and what detection
looks at: upright (EXIF orientation), colour-managed (`icc`: converted to Display P3 unless the profile already
renders as sRGB or P3), 8 bits per channel, and with colour quantised to what alpha lets through
(`normalise_alpha`). `encode` exports those 8-bit pixels and encodes a fresh image built from them, with at most
our own P3 profile: nothing the decoder attached (properties, profiles, comments) can follow. What it wrote must
then pass `egress.release`, the one check of what may leave.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from worker.config import ImageSettings
from worker.errors import CorruptImage, UnsupportedImage
from worker.imaging import egress, icc, pixels
from worker.imaging.container import Inspection, Limits, inspect, png, sniff
from worker.imaging.container.formats import BY_CODER
from worker.imaging.egress import Output
from worker.imaging.magick import Image, apply_profile, decode_warning, magick_errors

MAX_JPEG_SCANS = 64  # progressive JPEGs have about 10; each scan is a full pass over the image
__all__ = ["Photo", "decode", "encode", "read_header", "sniff"]


def read_header(data: bytes, settings: ImageSettings) -> Inspection:
    """Sniff and read the container (no pixels decoded): refuses bombs of every kind before any decoder runs."""
    limits = Limits(settings.max_pixels, settings.max_side, settings.max_metadata_bytes, MAX_JPEG_SCANS)
    return inspect(data, limits)


@dataclass(slots=True)
class Photo:
    """A decoded, visible photo (see the module docstring). Owns its Wand image: use as a context."""

    image: Image
    coder: str
    source_quality: int
    sampling_factor: str | None
    has_alpha: bool
    profile: str | None = None  # 'p3' when the pixels are Display P3; None = sRGB
    _shrunk: dict[str, Image] = field(default_factory=dict)  # per background: the last detector copy
    input_seconds: float = 0.0  # time spent making detector inputs, reported as its own stage

    def __enter__(self) -> Photo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        """Free the decoded image and the detector copies (closing twice is harmless)."""
        for img in self._shrunk.values():
            img.close()
        self._shrunk.clear()
        self.image.close()

    @property
    def size(self) -> tuple[int, int]:
        w, h = self.image.size
        return int(w), int(h)

    def views(self) -> list[View]:
        """What detection looks at. A photo with transparency is seen as a viewer would show it on a white and on
        a black page: a face drawn with alpha alone is visible on at least one of them."""
        return [View(self, "white"), View(self, "black")] if self.has_alpha else [View(self, "")]

    def rgb(self, scale: float, background: str = "") -> tuple[np.ndarray, float]:
        """Detector input: an RGB copy `scale` times the photo's size (box-filtered when shrinking), transparency
        composited onto `background`, and the factor back to the photo's pixels. Not kept: a level's copy is
        freed when its detector is done with it (at full size it is 3 bytes a pixel of the photo)."""
        start = time.perf_counter()
        w, h = self.size
        tw, th = max(1, round(w * scale)), max(1, round(h * scale))
        if (tw, th) == (w, h) and not self.has_alpha:
            # Full size: read from the photo itself, without a second copy of its pixel cache.
            out = pixels.export_rgb(self.image)
        else:
            # Shrink from the smallest copy already made that is still at least as large: the fine level's copy
            # serves the coarse and rotated passes at a fraction of the cost of shrinking the full image again.
            last = self._shrunk.get(background)
            base = last if last is not None and last.width >= tw else self.image
            small = base.clone()
            if base is self.image and self.has_alpha:
                small.background_color = background or "gray50"
                small.alpha_channel = "remove"
            if small.size != (tw, th):
                if tw < small.width:
                    small.scale(tw, th)  # box filter: the cheapest antialiased shrink in ImageMagick
                else:
                    small.resize(tw, th, filter="triangle")
            out = pixels.export_rgb(small)
            if last is not None:
                last.close()
            self._shrunk[background] = small
        self.input_seconds += time.perf_counter() - start
        return out, w / tw

    def jpeg(self, scale: float, quality: int, background: str = "") -> Output:
        """rgb(scale, background) as a JPEG, through egress like every output (a remote detector's input)."""
        rgb, _ = self.rgb(scale, background)
        blob = _write(rgb, "RGB", "jpeg", quality, None, None)
        return egress.release(blob, "jpeg", (rgb.shape[1], rgb.shape[0]))


@dataclass(frozen=True, slots=True)
class View:
    """A Frame: the photo on one background (the detectors' input)."""

    photo: Photo
    background: str

    @property
    def size(self) -> tuple[int, int]:
        return self.photo.size

    def rgb(self, scale: float) -> tuple[np.ndarray, float]:
        return self.photo.rgb(scale, self.background)

    def jpeg(self, scale: float, quality: int) -> Output:
        return self.photo.jpeg(scale, quality, self.background)


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


def decode(data: bytes, header: Inspection) -> Photo:
    """The visible image of the container `header` describes (read from `header.decoder_input`; `data` is not used
    again). Upright, colour-managed, 8-bit, alpha-normalised. Whatever else the decoder attached stays on this
    image: `encode` never writes it."""
    what = f"decoding the {header.coder.upper()} image"
    img = Image()
    try:
        with magick_errors(what):
            img.read(blob=header.decoder_input, format=header.coder)
            if header.coder == "heic" and img.colorspace == "ycbcr":
                # ImageMagick 6's HEIC reader hands over libheif's Y'CbCr planes as they are; make them RGB.
                img.transform_colorspace("srgb")
            if len(img.sequence) > 1:
                # Only the current frame would be blurred; refusing is safer than publishing the others.
                raise UnsupportedImage(f"{what}: animated images ({len(img.sequence)} frames) are not supported")
            if header.coder == "heic":  # libheif crops to a clean aperture (clap): never larger than the header
                wrong_size = img.width > header.width or img.height > header.height
            else:
                wrong_size = img.size != (header.width, header.height)
            if wrong_size or img.width * img.height == 0:
                raise CorruptImage(f"{what}: decoded size {img.size} differs from the header")
            problem = decode_warning(img)
            if problem:
                raise CorruptImage(f"{what}: truncated or corrupt ({problem})")
            quality = int(img.compression_quality or 0)
            sampling = img.metadata.get("jpeg:sampling-factor") if header.coder == "jpeg" else None
            img.orientation = ORIENTATIONS[header.orientation]
            img.auto_orient()
            profile = _manage_colour(img, header)
            if img.depth > 8:  # displays show 8 bits: the bits below could carry a second picture
                _truncate_to_8_bits(img)
            has_alpha = bool(img.alpha_channel)
            if has_alpha:
                normalise_alpha(img)
    except BaseException:
        img.close()
        raise
    return Photo(img, header.coder, quality, sampling, has_alpha, profile)


def _manage_colour(img: Image, header: Inspection) -> str | None:
    """Make the pixels what a colour-managed viewer shows; returns the output profile ('p3' or None = sRGB)."""
    source = header.icc
    gamma = header.gamma if header.coder == "png" and not header.srgb else None
    if source is None and gamma and not icc.png_gamma_is_srgb(gamma, header.chromaticities):
        source = icc.gamma_profile(gamma, header.chromaticities)
    if source is None:
        if img.colorspace == "cmyk":  # print-workflow JPEG without a profile: the usual naive conversion
            img.transform_colorspace("srgb")
        return None
    known = icc.colour_space(source) if img.colorspace != "cmyk" else None
    if known is not None:
        return None if known == "srgb" else known
    # Unknown or suspicious: render through it, as a viewer would. Matrix/TRC profiles (nearly all of them) are
    # converted here; others by LittleCMS. A profile neither can use is what viewers ignore too: the pixels are
    # then taken as they are (and the profile is not written).
    shape = icc.matrix_trc(source) if img.colorspace not in ("cmyk", "gray") else None
    if shape is not None:
        _convert_rows(img, lambda rgb: icc.to_p3(rgb, shape))
        return "p3"
    if img.colorspace != "gray" and apply_profile(img, source, icc.canonical("p3")):
        return "p3"
    if img.colorspace == "cmyk":
        img.transform_colorspace("srgb")
    return None


def _truncate_to_8_bits(img: Image) -> None:
    """Keep only the high byte of a deeper image's samples (alpha included). Rounding to 8 bits would let the top
    bit of the low byte decide between two levels, and a picture can hide in that bit: truncation keeps none."""
    gray = img.colorspace == "gray" and not img.alpha_channel
    layouts = ("R", "I") if gray else None  # grey: read as red, written as I (red, green and blue alike)
    # Exactly an 8-bit level, which the 8-bit encoder keeps as it is.
    pixels.rewrite_rows(img, lambda px: (px >> 8) * np.uint16(257), np.uint16, layouts)


def _convert_rows(img: Image, convert: Callable[[np.ndarray], np.ndarray]) -> None:
    """Replace the colour of the 8-bit pixels (RGB, or RGBA with alpha: convert sees it, alpha is kept) by
    convert(pixels)."""

    def colour(px: np.ndarray) -> np.ndarray:
        px[:, :, :3] = convert(px)
        return px

    pixels.rewrite_rows(img, colour, np.uint8)


def shown_colour(samples: np.ndarray) -> np.ndarray:
    """Colour (every channel but the last, alpha) quantised to what alpha lets a viewer see: a pixel of alpha a
    keeps only round(c * a / 255) (premultiplied, 8-bit), stored back as the colour that renders to it.
    Transparent pixels become black, and at alpha a each channel takes at most a + 1 values: nothing hidden under
    transparency survives."""
    a = samples[..., -1:].astype(np.uint32)
    shown = (samples[..., :-1] * a + 127) // 255
    return np.where(a > 0, (shown * 255 + a // 2) // np.maximum(a, 1), 0)


def normalise_alpha(img: Image) -> None:
    _convert_rows(img, shown_colour)


def encode(photo: Photo, settings: ImageSettings) -> Output:
    """The visible pixels in the input's format (HEIC: JPEG): JPEG at about the input's quality with its chroma
    subsampling; PNG stays PNG; greyscale and alpha kept. Consumes the photo: its decoded image is freed once the
    pixels are exported, so the fresh image never doubles the photo's memory."""
    size = photo.size
    layout = ("I" if photo.image.colorspace == "gray" else "RGB") + ("A" if photo.has_alpha else "")
    samples = pixels.export(photo.image, layout)
    photo.release()
    if photo.has_alpha:  # redaction wrote new colours: quantise them like the rest
        samples[..., :-1] = shown_colour(samples)
    output = BY_CODER[photo.coder].output  # HEIC: JPEG
    quality = settings.jpeg_quality or min(95, max(60, photo.source_quality or 85))
    blob = _write(samples, layout, output, quality, photo.sampling_factor, photo.profile)
    return egress.release(blob, output, size)


def _write(
    samples: np.ndarray, layout: str, output: str, quality: int, sampling: str | None, profile: str | None
) -> bytes:
    """ImageMagick's encoding of a fresh image made of `samples` only (egress checks what it wrote)."""
    with magick_errors("encoding the output"), Image.from_array(samples, channel_map=layout) as img:
        img.format = output
        if profile and output != "png":
            img.profiles["icc"] = icc.canonical(profile)
        if output in ("jpeg", "webp"):
            img.compression_quality = quality
        if output == "jpeg" and sampling:
            img.options["jpeg:sampling-factor"] = sampling
        if output == "png":
            # Pixel chunks only (IM6's include-chunk cannot re-allow iCCP after "all"): our profile is added below.
            img.artifacts["png:exclude-chunk"] = "all"
        blob = bytes(img.make_blob(output))
    if not blob:
        raise CorruptImage("encoding produced no bytes")
    if output == "png" and profile:
        blob = png.with_profile(blob, icc.canonical(profile))
    return blob


def outline(photo: Photo, boxes: list[tuple[float, float, float, float]], width: int = 3) -> None:
    """Draw each (x, y, w, h) box's outline in red, `width` pixels thick, into the photo."""
    w, h = photo.size
    img = photo.image
    layout = "RGBA" if photo.has_alpha else "RGB"
    red = np.array([255, 0, 0, 255][: len(layout)], np.uint8)
    for x, y, bw, bh in boxes:
        x0, y0 = max(0, int(x)), max(0, int(y))
        x1, y1 = min(w, int(x + bw)), min(h, int(y + bh))
        if x1 - x0 < 1 or y1 - y0 < 1:
            continue
        t = min(width, x1 - x0, y1 - y0)
        for rx, ry, rw, rh in (
            (x0, y0, x1 - x0, t),
            (x0, y1 - t, x1 - x0, t),
            (x0, y0, t, y1 - y0),
            (x1 - t, y0, t, y1 - y0),
        ):
            pixels.write(img, rx, ry, np.broadcast_to(red, (rh, rw, len(layout))), layout)
