"""Hand-built EXIF (TIFF) blocks, including what Pillow cannot write: a GPS IFD *and* an IFD1 thumbnail.

Layout (little endian): header, IFD0 -> (Exif IFD, GPS IFD), IFD0.next -> IFD1 (JPEG thumbnail), thumbnail bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

BYTE, ASCII, SHORT, LONG, RATIONAL, UNDEFINED = 1, 2, 3, 4, 5, 7

TAG_MAKE = 0x010F
TAG_MODEL = 0x0110
TAG_ORIENTATION = 0x0112
TAG_EXIF_IFD = 0x8769
TAG_GPS_IFD = 0x8825
TAG_DATETIME_ORIGINAL = 0x9003
TAG_BODY_SERIAL = 0xA431
TAG_COMPRESSION = 0x0103
TAG_THUMB_OFFSET = 0x0201
TAG_THUMB_LENGTH = 0x0202
GPS_VERSION, GPS_LAT_REF, GPS_LAT, GPS_LON_REF, GPS_LON, GPS_MAP_DATUM = 0x0000, 0x0001, 0x0002, 0x0003, 0x0004, 0x0012

Entry = tuple[int, int, Any]  # (tag, type, value)


def _raw(typ: int, value: Any) -> tuple[bytes, int]:
    """The value's bytes and its EXIF count."""
    if typ == ASCII:
        data = value.encode("ascii") + b"\0"
        return data, len(data)
    if typ in (BYTE, UNDEFINED):
        data = bytes(value)
        return data, len(data)
    values = [value] if isinstance(value, int) else list(value)
    if typ == SHORT:
        return struct.pack(f"<{len(values)}H", *values), len(values)
    if typ == LONG:
        return struct.pack(f"<{len(values)}I", *values), len(values)
    if typ == RATIONAL:
        flat = [n for pair in values for n in pair]
        return struct.pack(f"<{len(flat)}I", *flat), len(values)
    raise ValueError(f"unsupported EXIF type {typ}")


def ifd(entries: Sequence[Entry], offset: int, next_ifd: int = 0) -> bytes:
    """One IFD placed at `offset` (from the TIFF header), followed by its out-of-line values."""
    entries = sorted(entries, key=lambda e: e[0])
    data_start = offset + 2 + 12 * len(entries) + 4
    head, data = struct.pack("<H", len(entries)), b""
    for tag, typ, value in entries:
        raw, count = _raw(typ, value)
        if len(raw) <= 4:
            field = raw.ljust(4, b"\0")
        else:
            field = struct.pack("<I", data_start + len(data))
            data += raw + b"\0" * (len(raw) % 2)
        head += struct.pack("<HHI", tag, typ, count) + field
    return head + struct.pack("<I", next_ifd) + data


def tiff(
    ifd0: Sequence[Entry],
    exif_ifd: Sequence[Entry] = (),
    gps_ifd: Sequence[Entry] = (),
    thumbnail: bytes | None = None,
) -> bytes:
    """A complete little-endian TIFF/EXIF block; the pointers between IFDs are filled in here."""
    ifd0 = list(ifd0)
    pointers: list[Entry] = []
    if exif_ifd:
        pointers.append((TAG_EXIF_IFD, LONG, 0))
    if gps_ifd:
        pointers.append((TAG_GPS_IFD, LONG, 0))
    thumb_entries: list[Entry] = []
    if thumbnail is not None:
        thumb_entries = [
            (TAG_COMPRESSION, SHORT, 6),
            (TAG_THUMB_OFFSET, LONG, 0),
            (TAG_THUMB_LENGTH, LONG, len(thumbnail)),
        ]
    # Sizes do not depend on the offsets, so lay out once with zeros, then for real.
    at_ifd0 = 8
    at_exif = at_ifd0 + len(ifd(ifd0 + pointers, 0))
    at_gps = at_exif + (len(ifd(exif_ifd, 0)) if exif_ifd else 0)
    at_ifd1 = at_gps + (len(ifd(gps_ifd, 0)) if gps_ifd else 0)
    at_thumb = at_ifd1 + (len(ifd(thumb_entries, 0)) if thumbnail is not None else 0)
    real_pointers = [(t, LONG, at_exif if t == TAG_EXIF_IFD else at_gps) for t, _, _ in pointers]
    out = b"II*\0" + struct.pack("<I", at_ifd0)
    out += ifd(ifd0 + real_pointers, at_ifd0, at_ifd1 if thumbnail is not None else 0)
    if exif_ifd:
        out += ifd(exif_ifd, at_exif)
    if gps_ifd:
        out += ifd(gps_ifd, at_gps)
    if thumbnail is not None:
        thumb_entries[1] = (TAG_THUMB_OFFSET, LONG, at_thumb)
        out += ifd(thumb_entries, at_ifd1)
        out += thumbnail
    assert len(out) == at_thumb + (len(thumbnail) if thumbnail is not None else 0)
    return out


def orientation_only(orientation: int) -> bytes:
    return tiff([(TAG_ORIENTATION, SHORT, orientation)])
