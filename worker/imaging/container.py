"""Read a JPEG, PNG or WebP container without decoding pixels, and rebuild it with only what the decoder needs.

Pure functions, no ImageMagick. Before any decoder sees an upload, `inspect`:
- sniffs the format from its magic bytes (ImageMagick is then told the coder; it never guesses from content);
- reads the declared size and refuses images over MAX_PIXELS / MAX_SIDE;
- reads what a viewer would apply and we apply ourselves: the EXIF orientation, the ICC profile (PNG iCCP inflated
  with a bound), PNG gAMA / cHRM / sRGB;
- counts every byte of metadata (APPn and COM segments, ancillary chunks, compressed ones by their inflated size,
  stopping the inflate at the bound) and refuses a file over MAX_METADATA_BYTES: ancillary-data bombs end here;
- refuses animation (APNG, animated WebP: a viewer would show frames no detector saw) and JPEGs with more than
  MAX_JPEG_SCANS scans (each scan is another full pass over the image: a CPU bomb);
- returns `clean`: the file rebuilt from the pixel-bearing parts only (PNG IHDR/PLTE/tRNS/IDAT/IEND; JPEG tables,
  frame, scans, JFIF and Adobe markers; WebP VP8/VP8L/ALPH). The decoder never allocates for text, EXIF, XMP,
  profiles or trailing data, and none of it can reach an output.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass

from worker.errors import CorruptImage, ImageTooComplex, ImageTooLarge, MetadataTooLarge, NotAnImage, UnsupportedImage
from worker.imaging import exif

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
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


@dataclass(frozen=True, slots=True)
class Limits:
    max_pixels: int
    max_side: int
    max_metadata_bytes: int
    max_jpeg_scans: int


@dataclass(frozen=True, slots=True)
class Inspection:
    coder: str  # 'jpeg', 'png' or 'webp'
    width: int  # as stored, before the orientation is applied
    height: int
    clean: bytes  # the container with only what the decoder needs
    orientation: int = 1  # EXIF Orientation, 1..8
    icc: bytes | None = None
    gamma: float | None = None  # PNG gAMA: the file gamma (0.45455 for sRGB-like data)
    chromaticities: tuple[float, ...] | None = None  # PNG cHRM: white x, y, red x, y, green x, y, blue x, y
    srgb: bool = False  # PNG sRGB chunk: the data is sRGB whatever gAMA/cHRM say


def sniff(data: bytes) -> str:
    """The coder for `data` ('jpeg', 'png' or 'webp') or a clear error."""
    if not data:
        raise NotAnImage("empty file (0 bytes)")
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(PNG_SIGNATURE):
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypavif"):
        raise UnsupportedImage(
            "HEIF/HEIC/AVIF images are not supported yet (JPEG, PNG and WebP are): the worker only decodes files "
            "whose container it has read and bounded first, and it does not read HEIF containers yet"
        )
    for magic, name in _OTHER_IMAGES:
        if data.startswith(magic):
            raise UnsupportedImage(f"{name} images are not supported (JPEG, PNG and WebP are)")
    head = data[:256].lstrip().lower()
    if head.startswith((b"<?xml", b"<svg", b"<!doctype svg")) or b"<svg" in head:
        raise UnsupportedImage("SVG/XML content is not accepted")
    if head.startswith((b"push graphic-context", b"viewbox")):
        raise UnsupportedImage("MVG (ImageMagick vector) content is not accepted")
    raise NotAnImage("not an image: no JPEG, PNG or WebP signature")


def inspect(data: bytes, limits: Limits) -> Inspection:
    coder = sniff(data)
    try:
        found = {"jpeg": _jpeg, "png": _png, "webp": _webp}[coder](data, _Budget(limits.max_metadata_bytes), limits)
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


class _Budget:
    """Metadata bytes still allowed in this file."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.left = limit

    def take(self, n: int, what: str) -> None:
        self.left -= n
        if self.left < 0:
            raise MetadataTooLarge(
                f"{what}: the file carries more than {self.limit} bytes of metadata (MAX_METADATA_BYTES)"
            )

    def inflate(self, data: bytes, what: str) -> bytes:
        """zlib-inflate `data`, never producing more than the bytes left: a bomb stops at the bound."""
        d = zlib.decompressobj()
        try:
            out = d.decompress(data, max(self.left, 0) + 1)
        except zlib.error as exc:
            raise CorruptImage(f"{what}: corrupt compressed data ({exc})") from exc
        self.take(len(out), what)
        if d.unconsumed_tail:  # stopped at the bound with input left: more than allowed
            self.take(1, what)
        return out


# -- PNG ---------------------------------------------------------------------------------------------------------------
_PNG_KEEP = {b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND"}
_PNG_ANIMATION = {b"acTL", b"fcTL", b"fdAT"}


def _png(data: bytes, budget: _Budget, limits: Limits) -> Inspection:
    pos, kept, found = 8, [PNG_SIGNATURE], {}
    width = height = 0
    icc = gamma = chrm = None
    orientation, srgb = 1, False
    while True:
        if pos + 8 > len(data):
            raise CorruptImage("PNG ends before its IEND chunk (truncated)")
        (length,) = struct.unpack_from(">I", data, pos)
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if length > 0x7FFFFFFF or end > len(data):
            raise CorruptImage(f"PNG chunk {kind!r} runs past the end of the file (truncated)")
        body = data[pos + 8 : pos + 8 + length]
        if pos == 8 and kind != b"IHDR":
            raise CorruptImage("PNG does not start with IHDR")
        if kind == b"IHDR":
            if length != 13:
                raise CorruptImage("PNG IHDR has the wrong length")
            width, height = struct.unpack_from(">II", body)
        if kind in _PNG_ANIMATION:
            raise UnsupportedImage("animated PNG (APNG) is not supported: viewers would show frames never checked")
        if kind in _PNG_KEEP:
            kept.append(data[pos:end])
        elif kind[0] & 0x20 == 0:  # uppercase first letter: critical, the image cannot be decoded without it
            raise CorruptImage(f"PNG has an unknown critical chunk {kind!r}")
        else:
            what = f"PNG {kind.decode('latin-1')} chunk"
            found[kind] = True
            if kind == b"iCCP":
                name_end = body.find(b"\0")
                if name_end < 0 or name_end + 2 > len(body):
                    raise CorruptImage("PNG iCCP chunk is malformed")
                budget.take(name_end + 2, what)
                icc = budget.inflate(body[name_end + 2 :], what)
            elif kind == b"zTXt":
                name_end = body.find(b"\0")
                budget.take(max(name_end, 0) + 2, what)
                budget.inflate(body[name_end + 2 :] if name_end >= 0 else b"", what)
            elif kind == b"iTXt":
                _itxt(body, budget, what)
            else:
                budget.take(length, what)
                if kind == b"gAMA" and length == 4:
                    gamma = struct.unpack(">I", body)[0] / 100000 or None
                elif kind == b"cHRM" and length == 32:
                    chrm = tuple(v / 100000 for v in struct.unpack(">8I", body))
                elif kind == b"sRGB":
                    srgb = True
                elif kind == b"eXIf":
                    orientation = exif.orientation(body) or 1
        pos = end
        if kind == b"IEND":
            break
    if len(kept) < 4 or not any(c[4:8] == b"IDAT" for c in kept):
        raise CorruptImage("PNG has no image data (IDAT)")
    return Inspection("png", width, height, b"".join(kept), orientation, icc, gamma, chrm, srgb)


def _itxt(body: bytes, budget: _Budget, what: str) -> None:
    """iTXt: keyword\\0, compression flag, method, language\\0, translated keyword\\0, text (maybe zlib)."""
    name_end = body.find(b"\0")
    if name_end < 0 or name_end + 3 > len(body):
        budget.take(len(body), what)
        return
    compressed = body[name_end + 1] == 1
    rest = name_end + 3
    lang_end = body.find(b"\0", rest)
    key_end = body.find(b"\0", lang_end + 1) if lang_end >= 0 else -1
    if key_end < 0:
        budget.take(len(body), what)
        return
    budget.take(key_end + 1, what)
    text = body[key_end + 1 :]
    if compressed:
        budget.inflate(text, what)
    else:
        budget.take(len(text), what)


# -- JPEG --------------------------------------------------------------------------------------------------------------
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_TABLES = {0xC4, 0xCC, 0xDB, 0xDD}  # DHT, DAC, DQT, DRI
# The end of a scan's entropy-coded data: 0xFF followed by anything but a stuffed 0x00 or a restart marker.
_SCAN_END = re.compile(rb"\xff(?=[^\x00\xd0-\xd7\xff])")
_ICC_TAG = b"ICC_PROFILE\0"


def _jpeg(data: bytes, budget: _Budget, limits: Limits) -> Inspection:
    pos, kept = 2, [b"\xff\xd8"]
    width = height = scans = 0
    orientation = 1
    icc_parts: dict[int, bytes] = {}
    while pos < len(data):
        if data[pos] != 0xFF:
            raise CorruptImage(f"JPEG marker expected at byte {pos}")
        marker = data[pos + 1] if pos + 1 < len(data) else 0xD9
        if marker == 0xFF:  # fill bytes before a marker
            pos += 1
            continue
        if marker == 0xD9:  # EOI: whatever follows (MPF images, trailers) is not part of this image
            kept.append(b"\xff\xd9")
            break
        if pos + 4 > len(data):
            break  # truncated: the decoder reports it
        (length,) = struct.unpack_from(">H", data, pos + 2)
        end = pos + 2 + length
        if length < 2:
            raise CorruptImage(f"JPEG segment 0x{marker:02X} has an invalid length")
        body = data[pos + 4 : end]
        if marker in _SOF:
            if width or height:
                raise CorruptImage("JPEG declares more than one frame")
            if len(body) < 5:
                raise CorruptImage("JPEG frame header is truncated")
            height, width = struct.unpack_from(">HH", body, 1)
            if height == 0:
                raise UnsupportedImage("JPEG whose height is defined after the first scan (DNL) is not supported")
            kept.append(data[pos:end])
        elif marker in _TABLES or (marker == 0xE0 and body.startswith(b"JFIF\0")) or marker == 0xEE:
            # Tables, restart interval, JFIF and Adobe (its transform flag decides how colours decode).
            kept.append(data[pos:end])
        elif marker == 0xDA:
            scans += 1
            if scans > limits.max_jpeg_scans:
                raise ImageTooComplex(f"JPEG has more than {limits.max_jpeg_scans} scans (MAX_JPEG_SCANS)")
            match = _SCAN_END.search(data, end)
            scan_end = match.start() if match else len(data)
            kept.append(data[pos:scan_end])
            pos = scan_end
            continue
        elif 0xE0 <= marker <= 0xEF or marker == 0xFE:
            budget.take(length + 2, f"JPEG APP{marker - 0xE0} segment" if marker != 0xFE else "JPEG comment")
            if marker == 0xE1 and body.startswith(b"Exif\0\0") and orientation == 1:
                orientation = exif.orientation(body) or 1
            elif marker == 0xE2 and body.startswith(_ICC_TAG) and len(body) > 14:
                icc_parts.setdefault(body[12], body[14:])
        elif 0xD0 <= marker <= 0xD7 or marker == 0x01:  # stray restart marker / TEM: no length
            pos += 2
            continue
        else:
            raise CorruptImage(f"JPEG has an unexpected marker 0x{marker:02X}")
        pos = end
    if not width:
        raise CorruptImage("JPEG has no frame header (SOF)")
    icc = b"".join(icc_parts[i] for i in sorted(icc_parts)) or None
    return Inspection("jpeg", width, height, b"".join(kept), orientation, icc)


# -- WebP --------------------------------------------------------------------------------------------------------------
def _webp(data: bytes, budget: _Budget, limits: Limits) -> Inspection:
    (riff_size,) = struct.unpack_from("<I", data, 4)
    size = min(len(data), riff_size + 8)
    pos = 12
    chunks: list[tuple[bytes, bytes]] = []
    width = height = 0
    icc: bytes | None = None
    orientation = 1
    while pos + 8 <= size:
        kind = data[pos : pos + 4]
        (length,) = struct.unpack_from("<I", data, pos + 4)
        body = data[pos + 8 : pos + 8 + length]
        if len(body) < length:
            raise CorruptImage(f"WebP chunk {kind!r} runs past the end of the file (truncated)")
        if kind in (b"ANIM", b"ANMF"):
            raise UnsupportedImage("animated WebP is not supported: viewers would show frames never checked")
        if kind == b"VP8X":
            if length < 10:
                raise CorruptImage("WebP VP8X chunk is truncated")
            if body[0] & 0x02:
                raise UnsupportedImage("animated WebP is not supported: viewers would show frames never checked")
            width = 1 + int.from_bytes(body[4:7], "little")
            height = 1 + int.from_bytes(body[7:10], "little")
        elif kind in (b"VP8 ", b"VP8L", b"ALPH"):
            chunks.append((kind, body))
            if kind == b"VP8 " and not width and len(body) >= 10:
                width, height = (v & 0x3FFF for v in struct.unpack_from("<HH", body, 6))
            elif kind == b"VP8L" and not width and len(body) >= 5:
                bits = int.from_bytes(body[1:5], "little")
                width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        else:
            budget.take(length + 8, f"WebP {kind.decode('latin-1')} chunk")
            if kind == b"ICCP":
                icc = body
            elif kind == b"EXIF":
                orientation = exif.orientation(body) or 1
        pos += 8 + length + (length & 1)
    if not any(k in (b"VP8 ", b"VP8L") for k, _ in chunks):
        raise CorruptImage("WebP has no image data (VP8/VP8L chunk)")
    return Inspection("webp", width, height, _riff(chunks, width, height), orientation, icc)


def _riff(chunks: list[tuple[bytes, bytes]], width: int, height: int) -> bytes:
    """A WebP of just the image chunks; the extended header only where an alpha chunk needs it."""
    if any(k == b"ALPH" for k, _ in chunks):
        vp8x = bytes([0x10, 0, 0, 0]) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
        chunks = [(b"VP8X", vp8x), *chunks]
    body = b"".join(k + struct.pack("<I", len(b)) + b + b"\0" * (len(b) & 1) for k, b in chunks)
    return b"RIFF" + struct.pack("<I", len(body) + 4) + b"WEBP" + body
