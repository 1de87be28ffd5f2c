"""The formats the worker takes, one row each: everything that must change together when a format is added.

Recognised by its magic bytes only (never by a name or a suffix), read by its container reader (no decoder
involved), decoded by the ImageMagick coder the row names, written back with its output coder: the same one, except
for a read-only format (decoded, never written: the policy refuses writing it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from worker.imaging.container import heif, jpeg, png, webp
from worker.imaging.container.budget import MetadataBudget
from worker.imaging.container.inspection import Inspection, Limits


@dataclass(frozen=True, slots=True)
class Format:
    name: str  # in messages
    coder: str  # the ImageMagick coder it is decoded with (Inspection.coder)
    magic: Callable[[bytes], bool]
    read: Callable[[bytes, MetadataBudget, Limits], Inspection]  # the container reader
    output: str  # the coder its blurred photo is written with (egress holds it to that format's allow-list)
    content_type: str  # of the output
    suffixes: tuple[str, ...]  # what the blur command picks up in folders
    policy_names: tuple[str, ...]  # ImageMagick's names for its coder, which the policy (policy.xml) must grant
    read_only: bool = False


FORMATS = (
    Format(
        name="JPEG",
        coder="jpeg",
        magic=jpeg.matches,
        read=jpeg.read,
        output="jpeg",
        content_type="image/jpeg",
        suffixes=(".jpg", ".jpeg"),
        policy_names=("JPEG", "JPG"),
    ),
    Format(
        name="PNG",
        coder="png",
        magic=png.matches,
        read=png.read,
        output="png",
        content_type="image/png",
        suffixes=(".png",),
        policy_names=("PNG", "PNG8", "PNG24", "PNG32", "PNG48", "PNG64", "PNG00"),
    ),
    Format(
        name="WebP",
        coder="webp",
        magic=webp.matches,
        read=webp.read,
        output="webp",
        content_type="image/webp",
        suffixes=(".webp",),
        policy_names=("WEBP",),
    ),
    # Read (libheif), never written: no HEVC encoder is allowed or safely available here, so its output is a JPEG.
    Format(
        name="HEIC",
        coder="heic",
        magic=heif.matches,
        read=heif.read,
        output="jpeg",
        content_type="image/jpeg",
        suffixes=(".heic", ".heif"),
        policy_names=("HEIC",),
        read_only=True,
    ),
)
BY_CODER = {f.coder: f for f in FORMATS}
SUFFIXES = frozenset(s for f in FORMATS for s in f.suffixes)


def names(last: str = "and") -> str:
    """'JPEG, PNG, WebP and HEIC', for messages."""
    return ", ".join(f.name for f in FORMATS[:-1]) + f" {last} {FORMATS[-1].name}"
