"""The metadata bytes one file may still carry (MAX_METADATA_BYTES), and an inflate that stops at that bound."""

from __future__ import annotations

import zlib

from worker.errors import CorruptImage, MetadataTooLarge


class MetadataBudget:
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
