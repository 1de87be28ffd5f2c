"""PNG: the chunks the decoder is handed, the chunk walker egress reads outputs with, our profile's iCCP chunk."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

from worker.errors import CorruptImage, UnsupportedImage
from worker.imaging import exif
from worker.imaging.container.budget import MetadataBudget
from worker.imaging.container.inspection import Chunk, Inspection, Limits

# The allow-list: the pixel-bearing chunks, all the decoder is handed. Every other chunk is metadata: read where a
# viewer applies it (iCCP, gAMA, cHRM, sRGB, eXIf), counted against the budget, dropped.
KEEP = frozenset({b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND"})
ANIMATION = frozenset({b"acTL", b"fcTL", b"fdAT"})  # APNG: refused
SIGNATURE = b"\x89PNG\r\n\x1a\n"


def matches(data: bytes) -> bool:
    return data.startswith(SIGNATURE)


def chunks(data: bytes) -> Iterator[Chunk]:
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


def read(data: bytes, budget: MetadataBudget, limits: Limits) -> Inspection:
    kept = [SIGNATURE]
    width = height = 0
    icc = gamma = chrm = None
    orientation, srgb = 1, False
    for kind, body, pos, end in chunks(data):
        length = len(body)
        if pos == 8 and kind != b"IHDR":
            raise CorruptImage("PNG does not start with IHDR")
        if kind == b"IHDR":
            if length != 13:
                raise CorruptImage("PNG IHDR has the wrong length")
            width, height = struct.unpack_from(">II", body)
        if kind in ANIMATION:
            raise UnsupportedImage("animated PNG (APNG) is not supported: viewers would show frames never checked")
        if kind in KEEP:
            kept.append(data[pos:end])
        elif kind[0] & 0x20 == 0:  # uppercase first letter: critical, the image cannot be decoded without it
            raise CorruptImage(f"PNG has an unknown critical chunk {kind!r}")
        else:
            what = f"PNG {kind.decode('latin-1')} chunk"
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


def _itxt(body: bytes, budget: MetadataBudget, what: str) -> None:
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


def with_profile(png: bytes, profile: bytes) -> bytes:
    """`png` with an iCCP chunk carrying `profile` right after IHDR (where the PNG spec wants it: before PLTE)."""
    body = b"ICC profile\0\0" + zlib.compress(profile, 9)
    chunk = struct.pack(">I", len(body)) + b"iCCP" + body + struct.pack(">I", zlib.crc32(b"iCCP" + body))
    at = 8 + 8 + 13 + 4  # the signature, then IHDR (ImageMagick writes it first, 13 bytes)
    return png[:at] + chunk + png[at:]
