"""Read the Orientation tag from raw EXIF (TIFF) bytes. Pure; the container readers take the orientation from it
(JPEG APP1, PNG eXIf, WebP EXIF: ImageMagick 6 ignores the last two) and drop the rest."""

from __future__ import annotations

import struct

ORIENTATION_TAG = 0x0112


def orientation(exif: bytes) -> int | None:
    """EXIF Orientation (1..8) from a TIFF structure, optionally behind 'Exif\\0\\0'; None when absent/bad."""
    data = exif[6:] if exif.startswith(b"Exif\0\0") else exif
    if len(data) < 8 or data[:2] not in (b"II", b"MM"):
        return None
    order = "<" if data[:2] == b"II" else ">"
    try:
        (ifd,) = struct.unpack_from(order + "I", data, 4)
        (count,) = struct.unpack_from(order + "H", data, ifd)
        for i in range(min(count, 512)):
            tag, kind, n, _ = struct.unpack_from(order + "HHI4s", data, ifd + 2 + 12 * i)
            if tag == ORIENTATION_TAG and kind == 3 and n >= 1:  # SHORT, value stored inline
                (value,) = struct.unpack_from(order + "H", data, ifd + 2 + 12 * i + 8)
                return value if 1 <= value <= 8 else None
    except struct.error:
        return None
    return None
