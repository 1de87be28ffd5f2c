"""What a container reader is given and returns: the limits it reads under, what it found, the parts it walks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


@dataclass(frozen=True, slots=True)
class Limits:
    max_pixels: int
    max_side: int
    max_metadata_bytes: int
    max_jpeg_scans: int


@dataclass(frozen=True, slots=True)
class Inspection:
    coder: str  # the format's ImageMagick coder: 'jpeg', 'png', 'webp' or 'heic' (formats.FORMATS)
    width: int  # as decoded, before the EXIF orientation is applied (HEIC: after irot, before a clap crop)
    height: int
    decoder_input: bytes  # what the decoder is handed: the rebuilt container (HEIC: the whole upload)
    orientation: int = 1  # EXIF Orientation, 1..8
    icc: bytes | None = None
    gamma: float | None = None  # PNG gAMA: the file gamma (0.45455 for sRGB-like data)
    chromaticities: tuple[float, ...] | None = None  # PNG cHRM: white x, y, red x, y, green x, y, blue x, y
    srgb: bool = False  # PNG sRGB chunk: the data is sRGB whatever gAMA/cHRM say


class Chunk(NamedTuple):
    """A PNG or RIFF chunk, or a JPEG segment: its type, its payload and where it lies in the file."""

    kind: bytes  # PNG/RIFF: the four-letter type; JPEG: the marker byte after 0xFF
    body: bytes  # the payload (JPEG SOS: the scan header; entropy-coded data runs on to `end`)
    start: int
    end: int  # the first byte after it (RIFF: after the pad byte; JPEG SOS: after the scan's data)
