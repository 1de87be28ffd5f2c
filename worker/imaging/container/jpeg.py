"""JPEG: the segments the decoder is handed, and the segment walker egress reads outputs with."""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator

from worker.errors import CorruptImage, ImageTooComplex, UnsupportedImage
from worker.imaging import exif
from worker.imaging.container.budget import MetadataBudget
from worker.imaging.container.inspection import Chunk, Inspection, Limits

# The allow-list, what the decoder is handed: the frame, its scans, the coding tables (DHT, DAC, DQT, DRI), JFIF
# and Adobe (its transform flag decides how colours decode), EOI. APPn and COM segments are metadata: read where a
# viewer applies them (EXIF orientation, ICC profile), counted against the budget, dropped.
SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
TABLES = frozenset({0xC4, 0xCC, 0xDB, 0xDD})
SOS, EOI, APP0, ADOBE = 0xDA, 0xD9, 0xE0, 0xEE
ICC_TAG = b"ICC_PROFILE\0"  # an APP2 segment carrying (a piece of) the ICC profile
# The end of a scan's entropy-coded data: 0xFF followed by anything but a stuffed 0x00 or a restart marker.
_SCAN_END = re.compile(rb"\xff(?=[^\x00\xd0-\xd7\xff])")


def matches(data: bytes) -> bool:
    return data.startswith(b"\xff\xd8\xff")


def segments(data: bytes) -> Iterator[Chunk]:
    """Every marker after SOI up to EOI (included; a last lone 0xFF counts as EOI); what follows EOI is not read.
    Fill bytes are skipped (a segment's start then lies past the previous end); a scan runs to the end of its
    entropy-coded data; restart markers and TEM have no length. A file truncated inside a header just ends the
    walk (the decoder reports it); a segment truncated inside its body ends past len(data)."""
    pos = 2
    while pos < len(data):
        if data[pos] != 0xFF:
            raise CorruptImage(f"JPEG marker expected at byte {pos}")
        marker = data[pos + 1] if pos + 1 < len(data) else EOI
        if marker == 0xFF:  # fill bytes before a marker
            pos += 1
            continue
        if marker == EOI:  # whatever follows (MPF images, trailers) is not part of this image
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
        if marker == SOS:
            match = _SCAN_END.search(data, end)
            end = match.start() if match else len(data)
        yield Chunk(bytes([marker]), body, pos, end)
        pos = end


def read(data: bytes, budget: MetadataBudget, limits: Limits) -> Inspection:
    kept = [b"\xff\xd8"]
    width = height = scans = 0
    orientation = 1
    icc_parts: dict[int, bytes] = {}
    for kind, body, pos, end in segments(data):
        marker, length = kind[0], end - pos - 2
        if marker == EOI:
            kept.append(b"\xff\xd9")
        elif marker in SOF:
            if width or height:
                raise CorruptImage("JPEG declares more than one frame")
            if len(body) < 5:
                raise CorruptImage("JPEG frame header is truncated")
            height, width = struct.unpack_from(">HH", body, 1)
            if height == 0:
                raise UnsupportedImage("JPEG whose height is defined after the first scan (DNL) is not supported")
            kept.append(data[pos:end])
        elif marker in TABLES or (marker == APP0 and body.startswith(b"JFIF\0")) or marker == ADOBE:
            kept.append(data[pos:end])
        elif marker == SOS:
            scans += 1
            if scans > limits.max_jpeg_scans:
                raise ImageTooComplex(f"JPEG has more than {limits.max_jpeg_scans} scans (MAX_JPEG_SCANS)")
            kept.append(data[pos:end])
        elif 0xE0 <= marker <= 0xEF or marker == 0xFE:
            budget.take(length + 2, f"JPEG APP{marker - 0xE0} segment" if marker != 0xFE else "JPEG comment")
            if marker == 0xE1 and body.startswith(b"Exif\0\0") and orientation == 1:
                orientation = exif.orientation(body) or 1
            elif marker == 0xE2 and body.startswith(ICC_TAG) and len(body) > 14:
                icc_parts.setdefault(body[12], body[14:])
        elif not (0xD0 <= marker <= 0xD7 or marker == 0x01):  # stray restart markers and TEM are dropped
            raise CorruptImage(f"JPEG has an unexpected marker 0x{marker:02X}")
    if not width:
        raise CorruptImage("JPEG has no frame header (SOF)")
    icc = b"".join(icc_parts[i] for i in sorted(icc_parts)) or None
    return Inspection("jpeg", width, height, b"".join(kept), orientation, icc)
