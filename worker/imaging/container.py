"""Read a JPEG, PNG, WebP or HEIC container without decoding pixels, and rebuild it with only what the decoder needs
(HEIC: checked, not rebuilt; see `_heif`).

Pure functions, no ImageMagick. Before any decoder sees an upload, `inspect`:
- sniffs the format from its magic bytes (ImageMagick is then told the coder; it never guesses from content);
- reads the declared size and refuses images over MAX_PIXELS / MAX_SIDE;
- reads what a viewer would apply and we apply ourselves: the EXIF orientation, the ICC profile (PNG iCCP inflated
  with a bound), PNG gAMA / cHRM / sRGB;
- counts every byte of metadata (APPn and COM segments, ancillary chunks, compressed ones by their inflated size,
  stopping the inflate at the bound) and refuses a file over MAX_METADATA_BYTES: ancillary-data bombs end here;
- refuses animation (APNG, animated WebP: a viewer would show frames no detector saw) and JPEGs with more than
  MAX_JPEG_SCANS scans (each scan is another full pass over the image: a CPU bomb);
- returns `decoder_input`: what ImageMagick is handed. JPEG, PNG, WebP: the file rebuilt from the pixel-bearing
  parts only (PNG IHDR/PLTE/tRNS/IDAT/IEND; JPEG tables, frame, scans, JFIF and Adobe markers; WebP
  VP8/VP8L/ALPH), so the decoder never allocates for text, EXIF, XMP, profiles or trailing data. HEIC: the upload as
  it came (see `_heif`). Either way nothing of it reaches an output but the decoded pixels: outputs are encoded from
  a fresh image and must pass `egress.release`.

The chunk walkers (`png_chunks`, `jpeg_segments`, `riff_chunks`) are also what `egress` reads outputs with.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

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
    coder: str  # 'jpeg', 'png', 'webp' or 'heic'
    width: int  # as decoded, before the EXIF orientation is applied (HEIC: after irot, before a clap crop)
    height: int
    decoder_input: bytes  # what the decoder is handed: the rebuilt container (HEIC: the whole upload)
    orientation: int = 1  # EXIF Orientation, 1..8
    icc: bytes | None = None
    gamma: float | None = None  # PNG gAMA: the file gamma (0.45455 for sRGB-like data)
    chromaticities: tuple[float, ...] | None = None  # PNG cHRM: white x, y, red x, y, green x, y, blue x, y
    srgb: bool = False  # PNG sRGB chunk: the data is sRGB whatever gAMA/cHRM say


def sniff(data: bytes) -> str:
    """The coder for `data` ('jpeg', 'png', 'webp' or 'heic') or a clear error."""
    if not data:
        raise NotAnImage("empty file (0 bytes)")
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(PNG_SIGNATURE):
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    brand = _heif_brand(data)
    if brand == "heif":
        return "heic"
    if brand == "avif":
        raise UnsupportedImage(
            "AVIF images are not supported (JPEG, PNG, WebP and HEIC are): the worker's ImageMagick policy allows "
            "only the HEIC decoder it has tested, and AVIF goes through a different codec (AV1)"
        )
    for magic, name in _OTHER_IMAGES:
        if data.startswith(magic):
            raise UnsupportedImage(f"{name} images are not supported (JPEG, PNG and WebP are)")
    head = data[:256].lstrip().lower()
    if head.startswith((b"<?xml", b"<svg", b"<!doctype svg")) or b"<svg" in head:
        raise UnsupportedImage("SVG/XML content is not accepted")
    if head.startswith((b"push graphic-context", b"viewbox")):
        raise UnsupportedImage("MVG (ImageMagick vector) content is not accepted")
    raise NotAnImage("not an image: no JPEG, PNG, WebP or HEIC signature")


def inspect(data: bytes, limits: Limits) -> Inspection:
    coder = sniff(data)
    try:
        found = {"jpeg": _jpeg, "png": _png, "webp": _webp, "heic": _heif}[coder](
            data, _Budget(limits.max_metadata_bytes), limits
        )
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


class Chunk(NamedTuple):
    """A PNG or RIFF chunk, or a JPEG segment: its type, its payload and where it lies in the file."""

    kind: bytes  # PNG/RIFF: the four-letter type; JPEG: the marker byte after 0xFF
    body: bytes  # the payload (JPEG SOS: the scan header; entropy-coded data runs on to `end`)
    start: int
    end: int  # the first byte after it (RIFF: after the pad byte; JPEG SOS: after the scan's data)


def png_chunks(data: bytes) -> Iterator[Chunk]:
    """Every chunk after the signature up to IEND (included); what follows IEND is not read."""
    pos = 8
    while True:
        if pos + 8 > len(data):
            raise CorruptImage("PNG ends before its IEND chunk (truncated)")
        (length,) = struct.unpack_from(">I", data, pos)
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if length > 0x7FFFFFFF or end > len(data):
            raise CorruptImage(f"PNG chunk {kind!r} runs past the end of the file (truncated)")
        yield Chunk(kind, data[pos + 8 : pos + 8 + length], pos, end)
        if kind == b"IEND":
            return
        pos = end


def _png(data: bytes, budget: _Budget, limits: Limits) -> Inspection:
    kept, found = [PNG_SIGNATURE], {}
    width = height = 0
    icc = gamma = chrm = None
    orientation, srgb = 1, False
    for kind, body, pos, end in png_chunks(data):
        length = len(body)
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


def jpeg_segments(data: bytes) -> Iterator[Chunk]:
    """Every marker after SOI up to EOI (included; a last lone 0xFF counts as EOI); what follows EOI is not read.
    Fill bytes are skipped (a segment's start then lies past the previous end); a scan runs to the end of its
    entropy-coded data; restart markers and TEM have no length. A file truncated inside a header just ends the
    walk (the decoder reports it); a segment truncated inside its body ends past len(data)."""
    pos = 2
    while pos < len(data):
        if data[pos] != 0xFF:
            raise CorruptImage(f"JPEG marker expected at byte {pos}")
        marker = data[pos + 1] if pos + 1 < len(data) else 0xD9
        if marker == 0xFF:  # fill bytes before a marker
            pos += 1
            continue
        if marker == 0xD9:  # EOI: whatever follows (MPF images, trailers) is not part of this image
            yield Chunk(b"\xd9", b"", pos, pos + 2)
            return
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # stray restart marker / TEM: no length
            yield Chunk(bytes([marker]), b"", pos, pos + 2)
            pos += 2
            continue
        if pos + 4 > len(data):
            return  # truncated
        (length,) = struct.unpack_from(">H", data, pos + 2)
        end = pos + 2 + length
        if length < 2:
            raise CorruptImage(f"JPEG segment 0x{marker:02X} has an invalid length")
        body = data[pos + 4 : end]
        if marker == 0xDA:
            match = _SCAN_END.search(data, end)
            end = match.start() if match else len(data)
        yield Chunk(bytes([marker]), body, pos, end)
        pos = end


def _jpeg(data: bytes, budget: _Budget, limits: Limits) -> Inspection:
    kept = [b"\xff\xd8"]
    width = height = scans = 0
    orientation = 1
    icc_parts: dict[int, bytes] = {}
    for kind, body, pos, end in jpeg_segments(data):
        marker, length = kind[0], end - pos - 2
        if marker == 0xD9:
            kept.append(b"\xff\xd9")
        elif marker in _SOF:
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
            kept.append(data[pos:end])
        elif 0xE0 <= marker <= 0xEF or marker == 0xFE:
            budget.take(length + 2, f"JPEG APP{marker - 0xE0} segment" if marker != 0xFE else "JPEG comment")
            if marker == 0xE1 and body.startswith(b"Exif\0\0") and orientation == 1:
                orientation = exif.orientation(body) or 1
            elif marker == 0xE2 and body.startswith(_ICC_TAG) and len(body) > 14:
                icc_parts.setdefault(body[12], body[14:])
        elif not (0xD0 <= marker <= 0xD7 or marker == 0x01):  # stray restart markers and TEM are dropped
            raise CorruptImage(f"JPEG has an unexpected marker 0x{marker:02X}")
    if not width:
        raise CorruptImage("JPEG has no frame header (SOF)")
    icc = b"".join(icc_parts[i] for i in sorted(icc_parts)) or None
    return Inspection("jpeg", width, height, b"".join(kept), orientation, icc)


# -- WebP --------------------------------------------------------------------------------------------------------------
def riff_chunks(data: bytes) -> Iterator[Chunk]:
    """Every chunk of a RIFF file within its declared size (and the file); what follows is not read."""
    (riff_size,) = struct.unpack_from("<I", data, 4)
    size = min(len(data), riff_size + 8)
    pos = 12
    while pos + 8 <= size:
        kind = data[pos : pos + 4]
        (length,) = struct.unpack_from("<I", data, pos + 4)
        body = data[pos + 8 : pos + 8 + length]
        if len(body) < length:
            raise CorruptImage(f"WebP chunk {kind!r} runs past the end of the file (truncated)")
        end = pos + 8 + length + (length & 1)
        yield Chunk(kind, body, pos, end)
        pos = end


def _webp(data: bytes, budget: _Budget, limits: Limits) -> Inspection:
    chunks: list[tuple[bytes, bytes]] = []
    width = height = 0
    icc: bytes | None = None
    orientation = 1
    for kind, body, _, _ in riff_chunks(data):
        length = len(body)
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


# -- HEIF (HEIC) -------------------------------------------------------------------------------------------------------
# ISO BMFF boxes. ImageMagick 6's `heic` coder hands the file to libheif, which decodes the primary item only (a
# single hvc1 image or a grid of hvc1 tiles) and applies its irot/imir transforms itself: what is checked here is
# exactly what that decoder will read. Other items (thumbnails, depth maps, a second image, burst frames) are never
# decoded, and nothing but the decoded primary image is ever encoded.
HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"mif1", b"mif2", b"msf1")
_AVIF_BRANDS = (b"avif", b"avis")
_HEIF_MAX_BOXES = 4096  # boxes read in one file (a real photo has a few dozen, plus two or so per grid tile)
_HEIF_MAX_ITEMS = 1024  # items, properties, references (a 48 MP grid has about 200 tiles)
_HEIF_HEVC_MARGIN = 64  # an HEVC picture may exceed its ispe by the coding-block padding, never by more
_HEIF_ALPHA = (b"urn:mpeg:hevc:2015:auxid:1\0", b"urn:mpeg:mpegB:cicp:systems:auxiliary:alpha\0")
_HEIF_IMAGE_TYPES = {b"hvc1", b"grid", b"av01", b"iden", b"iovl", b"jpeg", b"unci", b"j2k1", b"vvc1", b"tmap"}


def _heif_brand(data: bytes) -> str | None:
    """'heif' or 'avif' when `data` starts with an ISO BMFF ftyp box naming such a brand."""
    if data[4:8] != b"ftyp" or len(data) < 16:
        return None
    (size,) = struct.unpack_from(">I", data)
    brands = [data[8:12]] + [data[i : i + 4] for i in range(16, min(size, len(data), 4096) - 3, 4)]
    if any(b in _AVIF_BRANDS for b in brands) and not any(b in (b"heic", b"heix") for b in brands):
        return "avif"
    if any(b in HEIF_BRANDS for b in brands):
        return "heif"
    return None


class _Boxes:
    """Walks ISO BMFF boxes, counting every one against _HEIF_MAX_BOXES."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.count = 0

    def read(self, start: int, end: int) -> list[tuple[bytes, int, int]]:
        """(type, body start, body end) of each box in data[start:end]."""
        out, pos, data = [], start, self.data
        while pos < end:
            self.count += 1
            if self.count > _HEIF_MAX_BOXES:
                raise ImageTooComplex(f"HEIF file has more than {_HEIF_MAX_BOXES} boxes")
            if pos + 8 > end:
                raise CorruptImage("HEIF box header runs past its container (truncated)")
            size, kind, head = struct.unpack_from(">I", data, pos)[0], data[pos + 4 : pos + 8], 8
            if size == 1:
                if pos + 16 > end:
                    raise CorruptImage("HEIF box header runs past its container (truncated)")
                size, head = struct.unpack_from(">Q", data, pos + 8)[0], 16
            elif size == 0:  # to the end of the enclosing container
                size = end - pos
            if size < head or pos + size > end:
                raise CorruptImage(f"HEIF box {kind!r} runs past the end of its container (truncated)")
            out.append((kind, pos + head, pos + size))
            pos += size
        return out


@dataclass(slots=True)
class _Item:
    kind: bytes = b""
    extents: list[tuple[int, int, int]] = field(default_factory=list)  # (construction method, offset, length)
    props: list[int] = field(default_factory=list)  # 1-based indexes into ipco


_ItemOf = Callable[[int], _Item]


def _uint(data: bytes, pos: int, size: int) -> int:
    if size == 0:
        return 0
    if pos + size > len(data):
        raise CorruptImage("HEIF box is truncated")
    return int.from_bytes(data[pos : pos + size], "big")


def _heif(data: bytes, budget: _Budget, limits: Limits) -> Inspection:
    boxes = _Boxes(data)
    top = boxes.read(0, len(data))
    metas = [b for b in top if b[0] == b"meta"]
    if any(k == b"moov" for k, _, _ in top):
        raise UnsupportedImage("HEIF image sequences (a moov track: bursts, animations) are not supported")
    if len(metas) != 1:
        raise CorruptImage("HEIF file needs exactly one top-level meta box")
    for kind, start, end in top:
        if kind not in (b"ftyp", b"meta", b"mdat"):
            budget.take(end - start + 8, f"HEIF {kind.decode('latin-1')} box")
    _, mstart, mend = metas[0]
    budget.take(mend - mstart, "HEIF meta box")  # item and property descriptions, the ICC profile, idat
    children = {k: (s, e) for k, s, e in boxes.read(mstart + 4, mend)}
    if b"hdlr" not in children or data[children[b"hdlr"][0] + 8 : children[b"hdlr"][0] + 12] != b"pict":
        raise CorruptImage("HEIF meta box is not a picture (hdlr 'pict')")
    for needed in (b"pitm", b"iinf", b"iloc", b"iprp"):
        if needed not in children:
            raise CorruptImage(f"HEIF meta box has no {needed.decode()} box")
    items: dict[int, _Item] = {}

    def item(item_id: int) -> _Item:
        if item_id not in items:
            if len(items) >= _HEIF_MAX_ITEMS:
                raise ImageTooComplex(f"HEIF file has more than {_HEIF_MAX_ITEMS} items")
            items[item_id] = _Item()
        return items[item_id]

    start, _ = children[b"pitm"]
    primary = _uint(data, start + 4, 2 if data[start] == 0 else 4)
    _heif_iinf(data, boxes, *children[b"iinf"], item)
    _heif_iloc(data, *children[b"iloc"], item)
    props = _heif_iprp(data, boxes, *children[b"iprp"], item)
    refs = _heif_iref(data, *children[b"iref"], item) if b"iref" in children else {}
    idat = children.get(b"idat", (0, 0))

    def payload(it: _Item) -> bytes:
        parts = []
        for method, offset, length in it.extents:
            base, end = (0, len(data)) if method == 0 else idat
            if method not in (0, 1):
                raise UnsupportedImage("HEIF item built from another item (iloc construction method 2)")
            if base + offset + length > end:
                raise CorruptImage("HEIF item data runs past the end of the file (truncated)")
            parts.append(data[base + offset : base + offset + length])
        return b"".join(parts)

    for item_id, it in items.items():
        for method, offset, length in it.extents:
            base, end = (0, len(data)) if method == 0 else idat
            if base + offset + length > end:
                raise CorruptImage(f"HEIF item {item_id} data runs past the end of the file (truncated)")
        if it.kind not in _HEIF_IMAGE_TYPES:  # Exif, XMP (mime), anything else: what the reader may load
            budget.take(sum(length for _, _, length in it.extents), f"HEIF {it.kind.decode('latin-1')} item")

    if primary not in items or not items[primary].kind:
        raise CorruptImage("HEIF primary item (pitm) is not described in iinf")
    main = items[primary]
    for (kind, source), targets in refs.items():  # an auxiliary image points at the image it belongs to
        if kind != b"auxl" or primary not in targets or source not in items:
            continue
        aux_types = [props[i][1][4:] for i in items[source].props if props.get(i, (b"", b""))[0] == b"auxC"]
        if any(t.startswith(_HEIF_ALPHA) for t in aux_types):
            raise UnsupportedImage(
                "HEIF with transparency (an alpha plane) is not supported: ImageMagick 6 decodes HEIF without "
                "alpha, so pixels a viewer never shows would be published"
            )

    def prop(it: _Item, kind: bytes) -> bytes | None:
        for i in it.props:
            if i not in props:
                raise CorruptImage(f"HEIF item refers to a missing property {i}")
            if props[i][0] == kind:
                return props[i][1]
        return None

    def ispe(it: _Item) -> tuple[int, int]:
        body = prop(it, b"ispe")
        if body is None or len(body) < 12:
            raise CorruptImage("HEIF image item has no size (ispe)")
        w, h = struct.unpack_from(">II", body, 4)
        return w, h

    def check_size(w: int, h: int, what: str) -> None:
        if w > limits.max_side or h > limits.max_side or w * h > limits.max_pixels:
            raise ImageTooLarge(
                f"{what} is {w}x{h} ({w * h / 1e6:.1f} MP); the limit is {limits.max_pixels / 1e6:.0f} MP and "
                f"{limits.max_side} px a side (MAX_PIXELS, MAX_SIDE)"
            )

    def check_hevc(it: _Item) -> None:
        w, h = ispe(it)
        check_size(w, h, "HEIF image")
        sps = _hevc_sps_size(prop(it, b"hvcC"))
        if sps[0] > w + _HEIF_HEVC_MARGIN or sps[1] > h + _HEIF_HEVC_MARGIN:
            raise ImageTooLarge(f"HEIF image declares {w}x{h} but its HEVC stream is {sps[0]}x{sps[1]}")

    if main.kind == b"hvc1":
        width, height = ispe(main)
        check_hevc(main)
    elif main.kind == b"grid":
        grid = payload(main)
        if len(grid) < 8:
            raise CorruptImage("HEIF grid description is truncated")
        rows, cols = grid[2] + 1, grid[3] + 1
        width, height = struct.unpack_from(">II" if grid[1] & 1 else ">HH", grid, 4)
        tiles = refs.get((b"dimg", primary), [])
        if len(tiles) != rows * cols:
            raise CorruptImage(f"HEIF grid of {rows}x{cols} has {len(tiles)} tiles")
        check_size(width, height, "HEIF image")
        for tile in tiles:
            if tile not in items or items[tile].kind != b"hvc1":
                raise UnsupportedImage("HEIF grid tiles that are not HEVC images are not supported")
            check_hevc(items[tile])
        tw, th = ispe(items[tiles[0]])
        if any(ispe(items[t]) != (tw, th) for t in tiles) or tw * cols < width or th * rows < height:
            raise CorruptImage("HEIF grid tiles do not cover the image")
        check_size(tw * cols, th * rows, "HEIF grid (tiles as decoded)")
    else:
        raise UnsupportedImage(f"HEIF primary image of type {main.kind.decode('latin-1')!r} is not supported")
    irot = prop(main, b"irot")
    if (irot[0] & 3 if irot else 0) in (1, 3):  # libheif rotates while decoding: the decoded image is turned
        width, height = height, width
    # imir (a mirror) keeps the size; clap (a clean-aperture crop, applied by libheif too) can only shrink it: the
    # size returned is the decoder's upper bound, and codec.decode accepts a decoded image no larger than it.
    icc = None
    colr = prop(main, b"colr")
    if colr is not None and colr[:4] in (b"prof", b"rICC"):
        icc = colr[4:]
    # The decoder input is the file as it came, Exif/XMP items and all: rebuilding ISO BMFF (item locations move) is
    # not worth its risk when only pixels are exported from the decoded image and egress allows nothing else out.
    # What the decoder may load besides pixels (Exif/XMP items, the meta box) was counted above against
    # MAX_METADATA_BYTES, and every item lies within the file.
    return Inspection("heic", width, height, data, 1, icc)


def _heif_iinf(data: bytes, boxes: _Boxes, start: int, end: int, item: _ItemOf) -> None:
    head = start + (6 if data[start] == 0 else 8)
    for kind, s, _ in boxes.read(head, end):
        if kind != b"infe" or data[s] < 2:
            continue  # item info before version 2 names no item type: nothing a decoder uses
        wide = data[s] >= 3
        item_id = _uint(data, s + 4, 4 if wide else 2)
        pos = s + 4 + (4 if wide else 2) + 2
        item(item_id).kind = data[pos : pos + 4]


def _heif_iloc(data: bytes, start: int, end: int, item: _ItemOf) -> None:
    version = data[start]
    sizes = data[start + 4], data[start + 5]
    offset_size, length_size = sizes[0] >> 4, sizes[0] & 15
    base_size, index_size = sizes[1] >> 4, (sizes[1] & 15) if version in (1, 2) else 0
    pos = start + 6
    count = _uint(data, pos, 4 if version == 2 else 2)
    pos += 4 if version == 2 else 2
    if count > _HEIF_MAX_ITEMS:
        raise ImageTooComplex(f"HEIF file has more than {_HEIF_MAX_ITEMS} items")
    for _ in range(count):
        item_id = _uint(data, pos, 4 if version == 2 else 2)
        pos += 4 if version == 2 else 2
        method = _uint(data, pos, 2) & 15 if version in (1, 2) else 0
        pos += 2 if version in (1, 2) else 0
        if _uint(data, pos, 2):
            raise UnsupportedImage("HEIF item stored in another file (data reference) is not supported")
        base = _uint(data, pos + 2, base_size)
        pos += 2 + base_size
        extents = _uint(data, pos, 2)
        pos += 2
        if extents > _HEIF_MAX_ITEMS:
            raise ImageTooComplex(f"HEIF item has more than {_HEIF_MAX_ITEMS} extents")
        it = item(item_id)
        for _ in range(extents):
            pos += index_size
            offset, length = _uint(data, pos, offset_size), _uint(data, pos + offset_size, length_size)
            pos += offset_size + length_size
            if length == 0:
                raise UnsupportedImage("HEIF item of unspecified length is not supported")
            it.extents.append((method, base + offset, length))
        if pos > end:
            raise CorruptImage("HEIF iloc box is truncated")


def _heif_iprp(data: bytes, boxes: _Boxes, start: int, end: int, item: _ItemOf) -> dict[int, tuple[bytes, bytes]]:
    found = boxes.read(start, end)
    ipco = [b for b in found if b[0] == b"ipco"]
    if len(ipco) != 1:
        raise CorruptImage("HEIF iprp box needs exactly one ipco box")
    props = {i + 1: (k, data[s:e]) for i, (k, s, e) in enumerate(boxes.read(ipco[0][1], ipco[0][2]))}
    if len(props) > _HEIF_MAX_ITEMS:
        raise ImageTooComplex(f"HEIF file has more than {_HEIF_MAX_ITEMS} properties")
    for kind, s, e in found:
        if kind != b"ipma":
            continue
        version, wide_index = data[s], data[s + 3] & 1
        pos, (count,) = s + 8, struct.unpack_from(">I", data, s + 4)
        if count > _HEIF_MAX_ITEMS:
            raise ImageTooComplex(f"HEIF file has more than {_HEIF_MAX_ITEMS} items")
        for _ in range(count):
            item_id = _uint(data, pos, 4 if version >= 1 else 2)
            pos += 4 if version >= 1 else 2
            n = _uint(data, pos, 1)
            pos += 1
            for _ in range(n):
                value = _uint(data, pos, 2 if wide_index else 1)
                pos += 2 if wide_index else 1
                index = value & (0x7FFF if wide_index else 0x7F)
                if index:
                    item(item_id).props.append(index)
        if pos > e:
            raise CorruptImage("HEIF ipma box is truncated")
    return props


def _heif_iref(data: bytes, start: int, end: int, item: _ItemOf) -> dict[tuple[bytes, int], list[int]]:
    wide = data[start] != 0
    size = 4 if wide else 2
    refs: dict[tuple[bytes, int], list[int]] = {}
    pos, total = start + 4, 0
    while pos + 8 <= end:
        (box_size,), kind = struct.unpack_from(">I", data, pos), data[pos + 4 : pos + 8]
        if box_size < 8 or pos + box_size > end:
            raise CorruptImage("HEIF iref box is truncated")
        p = pos + 8
        source, count = _uint(data, p, size), _uint(data, p + size, 2)
        total += count
        if total > _HEIF_MAX_ITEMS * 4:
            raise ImageTooComplex("HEIF file has too many item references")
        p += size + 2
        if p + count * size > pos + box_size:
            raise CorruptImage("HEIF iref box is truncated")
        refs.setdefault((kind, source), []).extend(_uint(data, p + i * size, size) for i in range(count))
        for target in refs[(kind, source)]:
            item(target)
        pos += box_size
    return refs


def _hevc_sps_size(hvcc: bytes | None) -> tuple[int, int]:
    """The picture size in the HEVC sequence parameter set of an hvcC box: what libde265 allocates for."""
    if hvcc is None or len(hvcc) < 23:
        raise CorruptImage("HEIF HEVC image has no decoder configuration (hvcC)")
    pos, arrays = 23, hvcc[22]
    for _ in range(arrays):
        nal_type = hvcc[pos] & 0x3F
        (count,) = struct.unpack_from(">H", hvcc, pos + 1)
        pos += 3
        for _ in range(count):
            (length,) = struct.unpack_from(">H", hvcc, pos)
            nal = hvcc[pos + 2 : pos + 2 + length]
            pos += 2 + length
            if nal_type == 33:
                return _sps_size(nal)
    raise CorruptImage("HEIF HEVC configuration has no sequence parameter set")


def _sps_size(nal: bytes) -> tuple[int, int]:
    rbsp = re.sub(b"\x00\x00\x03", b"\x00\x00", nal[2:])  # emulation prevention bytes
    bits = "".join(f"{b:08b}" for b in rbsp[:64])
    pos = 0

    def u(n: int) -> int:
        nonlocal pos
        if pos + n > len(bits):
            raise CorruptImage("HEVC sequence parameter set is truncated")
        value = int(bits[pos : pos + n], 2) if n else 0
        pos += n
        return value

    def ue() -> int:
        zeros = 0
        while u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise CorruptImage("HEVC sequence parameter set is malformed")
        return (1 << zeros) - 1 + u(zeros)

    u(4)  # sps_video_parameter_set_id
    sub_layers = u(3)
    u(1)
    u(96)  # general profile, tier and level
    present = [(u(1), u(1)) for _ in range(sub_layers)]
    if sub_layers:
        u(2 * (8 - sub_layers))
    for profile, level in present:
        u(88 * profile + 8 * level)
    ue()  # sps_seq_parameter_set_id
    if ue() == 3:  # chroma_format_idc 4:4:4: separate_colour_plane_flag
        u(1)
    return ue(), ue()
