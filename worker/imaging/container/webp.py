"""WebP: the chunks the decoder is handed (in a RIFF rebuilt around them), and the RIFF chunk walker egress reads
outputs with."""

from __future__ import annotations

import struct
from collections.abc import Iterator

from worker.errors import CorruptImage, UnsupportedImage
from worker.imaging import exif
from worker.imaging.container.budget import MetadataBudget
from worker.imaging.container.inspection import Chunk, Inspection, Limits

# The allow-list: the image bitstreams and their alpha, all the decoder is handed (with a VP8X header only where
# alpha needs one). VP8X is read for the canvas size and the animation flag; every other chunk is metadata: read
# where a viewer applies it (ICCP, EXIF orientation), counted against the budget, dropped.
KEEP = frozenset({b"VP8 ", b"VP8L", b"ALPH"})
ANIMATION = frozenset({b"ANIM", b"ANMF"})  # refused, as is a VP8X with its animation flag


def matches(data: bytes) -> bool:
    return data[:4] == b"RIFF" and data[8:12] == b"WEBP"


def chunks(data: bytes) -> Iterator[Chunk]:
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


def read(data: bytes, budget: MetadataBudget, limits: Limits) -> Inspection:
    kept: list[tuple[bytes, bytes]] = []
    width = height = 0
    icc: bytes | None = None
    orientation = 1
    for kind, body, _, _ in chunks(data):
        length = len(body)
        if kind in ANIMATION:
            raise UnsupportedImage("animated WebP is not supported: viewers would show frames never checked")
        if kind == b"VP8X":
            if length < 10:
                raise CorruptImage("WebP VP8X chunk is truncated")
            if body[0] & 0x02:
                raise UnsupportedImage("animated WebP is not supported: viewers would show frames never checked")
            width = 1 + int.from_bytes(body[4:7], "little")
            height = 1 + int.from_bytes(body[7:10], "little")
        elif kind in KEEP:
            kept.append((kind, body))
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
    if not any(k in (b"VP8 ", b"VP8L") for k, _ in kept):
        raise CorruptImage("WebP has no image data (VP8/VP8L chunk)")
    return Inspection("webp", width, height, _riff(kept, width, height), orientation, icc)


def _riff(kept: list[tuple[bytes, bytes]], width: int, height: int) -> bytes:
    """A WebP of just the image chunks; the extended header only where an alpha chunk needs it."""
    if any(k == b"ALPH" for k, _ in kept):
        vp8x = bytes([0x10, 0, 0, 0]) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
        kept = [(b"VP8X", vp8x), *kept]
    body = b"".join(k + struct.pack("<I", len(b)) + b + b"\0" * (len(b) & 1) for k, b in kept)
    return b"RIFF" + struct.pack("<I", len(body) + 4) + b"WEBP" + body
