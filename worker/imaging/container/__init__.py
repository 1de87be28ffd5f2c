"""Container readers, one module per format (png, jpeg, webp, heif), each opening with its allow-list; the format
table (formats.py); `inspect` (reader.py), what every upload goes through before any decoder sees it. Pure: no
ImageMagick. The chunk walkers (png.chunks, jpeg.segments, webp.chunks) are also what egress reads outputs with."""

from worker.imaging.container.inspection import Chunk, Inspection, Limits
from worker.imaging.container.reader import inspect, sniff

__all__ = ["Chunk", "Inspection", "Limits", "inspect", "sniff"]
