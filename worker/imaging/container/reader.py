"""Read an upload's container without decoding pixels: its format from its magic bytes, then that format's reader.

Pure functions, no ImageMagick. Before any decoder sees an upload, `inspect`:
- sniffs the format from its magic bytes (ImageMagick is then told the coder; it never guesses from content);
- reads the declared size and refuses images over MAX_PIXELS / MAX_SIDE;
- reads what a viewer would apply and we apply ourselves: the EXIF orientation, the ICC profile (PNG iCCP inflated
  with a bound), PNG gAMA / cHRM / sRGB;
- counts every byte of metadata (APPn and COM segments, ancillary chunks, compressed ones by their inflated size,
  stopping the inflate at the bound) and refuses a file over MAX_METADATA_BYTES: ancillary-data bombs end here;
- refuses animation (APNG, animated WebP: a viewer would show frames no detector saw) and JPEGs with more than
  MAX_JPEG_SCANS scans (each scan is another full pass over the image: a CPU bomb);
- returns `decoder_input`: what ImageMagick is handed. JPEG, PNG, WebP: the file rebuilt from the parts on the
  format's allow-list only (the opening of png.py, jpeg.py, webp.py), so the decoder never allocates for text,
  EXIF, XMP, profiles or trailing data. HEIC: the upload as it came (heif.py). Either way nothing of it reaches an
  output but the decoded pixels: outputs are encoded from a fresh image and must pass `egress.release`.
"""

from __future__ import annotations

import struct

from worker.errors import CorruptImage, ImageTooLarge, NotAnImage, UnsupportedImage
from worker.imaging.container import heif
from worker.imaging.container.budget import MetadataBudget
from worker.imaging.container.formats import BY_CODER, FORMATS, names
from worker.imaging.container.inspection import Inspection, Limits

# Formats refused by name: a clearer reason than "not an image".
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


def sniff(data: bytes) -> str:
    """The coder for `data` (a coder of formats.FORMATS) or a clear error."""
    if not data:
        raise NotAnImage("empty file (0 bytes)")
    for fmt in FORMATS:
        if fmt.magic(data):
            return fmt.coder
    if heif.brand(data) == "avif":
        raise UnsupportedImage(
            f"AVIF images are not supported ({names()} are): the worker's ImageMagick policy allows "
            "only the HEIC decoder it has tested, and AVIF goes through a different codec (AV1)"
        )
    for magic, name in _OTHER_IMAGES:
        if data.startswith(magic):
            raise UnsupportedImage(f"{name} images are not supported ({names()} are)")
    head = data[:256].lstrip().lower()
    if head.startswith((b"<?xml", b"<svg", b"<!doctype svg")) or b"<svg" in head:
        raise UnsupportedImage("SVG/XML content is not accepted")
    if head.startswith((b"push graphic-context", b"viewbox")):
        raise UnsupportedImage("MVG (ImageMagick vector) content is not accepted")
    raise NotAnImage(f"not an image: no {names('or')} signature")


def inspect(data: bytes, limits: Limits) -> Inspection:
    coder = sniff(data)
    try:
        found = BY_CODER[coder].read(data, MetadataBudget(limits.max_metadata_bytes), limits)
    except CorruptImage as exc:
        raise CorruptImage(f"corrupt {coder.upper()}: {exc}") from exc
    except (struct.error, IndexError, ValueError) as exc:  # a length or field pointing outside the file
        raise CorruptImage(f"corrupt {coder.upper()}: malformed container ({exc})") from exc
    if found.width <= 0 or found.height <= 0:
        raise CorruptImage(f"{coder.upper()} header declares an empty image ({found.width}x{found.height})")
    w, h = found.width, found.height
    if w > limits.max_side or h > limits.max_side or w * h > limits.max_pixels:
        raise ImageTooLarge(
            f"image is {w}x{h} ({w * h / 1e6:.1f} MP); the limit is {limits.max_pixels / 1e6:.0f} MP and "
            f"{limits.max_side} px a side (MAX_PIXELS, MAX_SIDE)"
        )
    return found
