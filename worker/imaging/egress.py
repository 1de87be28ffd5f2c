"""Egress: the one place that decides what may leave the worker. Every output's bytes are read back with the
container readers and refused unless each part is on the output allow-list of its format:

- PNG: IHDR (the image's size, at most 8 bits a sample, not interlaced), PLTE, tRNS, IDAT, IEND, and an iCCP that
  inflates to exactly our own profile; nothing after IEND.
- JPEG: the coding segments (DQT, DHT, DRI, one 8-bit baseline/extended/progressive frame of the image's size, its
  scans with their restart markers), JFIF without a thumbnail, Adobe, APP2 ICC_PROFILE segments that reassemble to
  exactly our own profile; no fill bytes; nothing after EOI.
- WebP: a simple VP8/VP8L file, or VP8X (ICC and alpha flags only, the image's size), our own ICCP, ALPH, then one
  VP8/VP8L; the RIFF size is the file's size.

Pure functions: no ImageMagick. The encoder is not trusted to have left anything out: a part that is not listed
here (metadata, a second image, a text chunk, an uploaded profile, trailing bytes) is refused with its name, and
the photo is not written (`OutputRefused`, retried: a refusal is our bug, not the photo's).
"""

from __future__ import annotations

import struct
import zlib
from functools import cache
from typing import NewType

from worker.errors import CorruptImage, OutputRefused
from worker.imaging import icc
from worker.imaging.container import jpeg, png, webp

# Bytes that passed egress: what storage and the blur command accept, and nothing else produces one.
Output = NewType("Output", bytes)
_PROFILES = ("p3",)  # the profiles the worker writes itself (icc.canonical); sRGB outputs carry none


@cache
def _our_profiles() -> frozenset[bytes]:
    return frozenset(icc.canonical(name) for name in _PROFILES)


def release(data: bytes, fmt: str, size: tuple[int, int]) -> Output:
    """`data` as an Output when it is a `fmt` image of `size` (width, height) made only of allowed parts; else
    OutputRefused, saying which part."""
    problem = refusal(data, fmt, size)
    if problem:
        raise OutputRefused(f"output refused at egress ({fmt.upper()}): {problem}")
    return Output(data)


def refusal(data: bytes, fmt: str, size: tuple[int, int]) -> str | None:
    """Why `data` may not leave as a `fmt` image of `size`, or None when it may."""
    check = _CHECKS.get(fmt)
    if check is None:
        return f"{fmt!r} is not an output format"
    try:
        return check(data, size)
    except (CorruptImage, struct.error, IndexError, ValueError) as exc:  # unreadable is refused, never passed
        return f"unreadable container ({exc})"


def _png(data: bytes, size: tuple[int, int]) -> str | None:
    if not data.startswith(png.SIGNATURE):
        return "no PNG signature"
    seen: list[bytes] = []
    end = len(png.SIGNATURE)
    for chunk in png.chunks(data):
        kind, body, end = chunk.kind, chunk.body, chunk.end
        name = kind.decode("latin-1")
        if not seen:
            if kind != b"IHDR" or len(body) != 13:
                return "the first chunk is not a 13-byte IHDR"
            width, height, depth, _, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if (width, height) != size:
                return f"IHDR declares {width}x{height}, the image is {size[0]}x{size[1]}"
            if depth > 8 or interlace:
                return f"IHDR declares {depth} bits a sample{' interlaced' if interlace else ''}"
        elif kind in (b"IDAT", b"IEND"):
            pass
        elif kind in (b"PLTE", b"tRNS", b"iCCP"):
            if kind in seen or b"IDAT" in seen:
                return f"{name} chunk repeated or after the image data"
            if kind == b"iCCP" and not _our_iccp(body):
                return "iCCP chunk is not the worker's own profile"
        else:
            return f"{name!r} chunk is not allowed"
        seen.append(kind)
    if b"IDAT" not in seen:
        return "no image data (IDAT)"
    return _trailing(data, end)


def _our_iccp(body: bytes) -> bool:
    """An iCCP chunk (name, NUL, method 0, zlib stream) that inflates to exactly one of our profiles; the inflate
    stops one byte past the longest of them, so no stream can cost more."""
    name_end = body.find(b"\0")
    if not 0 < name_end <= 79 or body[name_end + 1 : name_end + 2] != b"\0":
        return False
    d = zlib.decompressobj()
    try:
        profile = d.decompress(body[name_end + 2 :], max(map(len, _our_profiles())) + 1)
    except zlib.error:
        return False
    return d.eof and not d.unused_data and profile in _our_profiles()


_JPEG_CODING = {0xC4, 0xDB, 0xDD}  # DHT, DQT, DRI
_JPEG_FRAMES = {0xC0, 0xC1, 0xC2}  # baseline, extended sequential, progressive (Huffman)
_RST = range(0xD0, 0xD8)


def _jpeg(data: bytes, size: tuple[int, int]) -> str | None:
    if not data.startswith(b"\xff\xd8"):
        return "no JPEG SOI"
    end, frame, scans = 2, False, 0
    icc_parts: dict[int, bytes] = {}
    eoi = False
    for kind, body, start, next_end in jpeg.segments(data):
        marker = kind[0]
        if start != end:
            return f"{start - end} bytes between segments (fill bytes or data) before marker 0x{marker:02X}"
        end = next_end
        if marker == 0xD9:
            eoi = True
        elif marker in _JPEG_FRAMES:
            if frame or len(body) < 6:
                return "a second or truncated frame header"
            precision, height, width = struct.unpack_from(">BHH", body)
            if (width, height) != size or precision != 8:
                return f"the frame is {width}x{height} at {precision} bits, the image {size[0]}x{size[1]} at 8"
            frame = True
        elif marker == 0xDA:
            if not frame:
                return "a scan before the frame header"
            scans += 1
        elif marker in _RST:
            if not scans:
                return "a restart marker outside a scan"
        elif marker in _JPEG_CODING:
            pass
        elif marker == 0xE0 and body.startswith(b"JFIF\0"):
            if len(body) != 14 or body[12:14] != b"\0\0":  # 14 bytes: no thumbnail
                return "JFIF segment carries a thumbnail or extra data"
        elif marker == 0xEE and body.startswith(b"Adobe") and len(body) == 12:
            pass
        elif marker == 0xE2 and body.startswith(jpeg.ICC_TAG) and len(body) > 14:
            if body[12] in icc_parts:
                return "ICC_PROFILE segment repeated"
            icc_parts[body[12]] = body[14:]
        else:
            return f"segment 0x{marker:02X} is not allowed"
    if not eoi:
        return "no EOI (truncated)"
    if not scans:
        return "no scan"
    if icc_parts:
        profile = b"".join(icc_parts[i] for i in sorted(icc_parts))
        if sorted(icc_parts) != list(range(1, len(icc_parts) + 1)) or profile not in _our_profiles():
            return "ICC_PROFILE segments are not the worker's own profile"
    return _trailing(data, end)


_VP8X_ICC, _VP8X_ALPHA = 0x20, 0x10


def _webp(data: bytes, size: tuple[int, int]) -> str | None:
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return "no RIFF WEBP header"
    (riff_size,) = struct.unpack_from("<I", data, 4)
    if riff_size + 8 != len(data):
        return f"RIFF declares {riff_size + 8} bytes, the file has {len(data)}"
    chunks = list(webp.chunks(data))
    kinds = [c.kind for c in chunks]
    end = chunks[-1].end if chunks else 12
    if not kinds or kinds[-1] not in (b"VP8 ", b"VP8L") or kinds.count(b"VP8 ") + kinds.count(b"VP8L") != 1:
        return f"chunks {_names(kinds)}: not one image bitstream (VP8/VP8L) at the end"
    image = chunks[-1]
    if _bitstream_size(image.kind, image.body) != size:
        return f"the {image.kind.decode().strip()} bitstream is not {size[0]}x{size[1]}"
    if len(chunks) == 1:
        return _trailing(data, end)
    if kinds[0] != b"VP8X" or len(chunks[0].body) != 10:
        return f"chunks {_names(kinds)}: an extended WebP must start with a 10-byte VP8X"
    flags, canvas = chunks[0].body[0], chunks[0].body[4:10]
    width, height = 1 + int.from_bytes(canvas[:3], "little"), 1 + int.from_bytes(canvas[3:], "little")
    if flags & ~(_VP8X_ICC | _VP8X_ALPHA) or chunks[0].body[1:4] != b"\0\0\0":
        return f"VP8X flags 0x{flags:02X} name more than a profile and alpha (EXIF, XMP, animation)"
    if (width, height) != size:
        return f"VP8X declares {width}x{height}, the image is {size[0]}x{size[1]}"
    middle = kinds[1:-1]
    expected = [b"ICCP"] * bool(flags & _VP8X_ICC) + [b"ALPH"] * (bool(flags & _VP8X_ALPHA) and kinds[-1] == b"VP8 ")
    if middle != expected:
        return f"chunks {_names(kinds)} do not match VP8X flags 0x{flags:02X} (allowed: VP8X, ICCP, ALPH, VP8/VP8L)"
    if b"ICCP" in middle and chunks[1].body not in _our_profiles():
        return "ICCP chunk is not the worker's own profile"
    return _trailing(data, end)


def _bitstream_size(kind: bytes, body: bytes) -> tuple[int, int] | None:
    """(width, height) from a VP8 key frame or a VP8L header."""
    if kind == b"VP8 " and len(body) >= 10 and body[3:6] == b"\x9d\x01\x2a":
        w, h = struct.unpack_from("<HH", body, 6)
        return w & 0x3FFF, h & 0x3FFF
    if kind == b"VP8L" and len(body) >= 5 and body[0] == 0x2F:
        bits = int.from_bytes(body[1:5], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


def _names(kinds: list[bytes]) -> str:
    return " ".join(k.decode("latin-1").strip() for k in kinds)


def _trailing(data: bytes, end: int) -> str | None:
    if end > len(data):
        return "the file ends inside its last part (truncated)"
    return f"{len(data) - end} bytes after the end of the image" if end < len(data) else None


_CHECKS = {"png": _png, "jpeg": _jpeg, "webp": _webp}
FORMATS = tuple(_CHECKS)  # what may leave at all: every output coder of the format table must be one of them
