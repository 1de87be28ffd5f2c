"""HEIF (HEIC): the primary image checked where libheif will read it; the file is handed on as it came.

ImageMagick 6's `heic` coder hands the file to libheif, which decodes the primary item only (a single hvc1 image or
a grid of hvc1 tiles) and applies its irot/imir transforms itself: what is checked here is exactly what that
decoder will read. Other items (thumbnails, depth maps, a second image, burst frames) are never decoded, and
nothing but the decoded primary image is ever encoded. The decoder input is the file as it came, Exif/XMP items
and all: rebuilding ISO BMFF (item locations move) is not worth its risk when only pixels are exported from the
decoded image and egress allows nothing else out. What the decoder may load besides pixels (Exif/XMP items, the
meta box) is counted against MAX_METADATA_BYTES, and every item must lie within the file.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from worker.errors import CorruptImage, ImageTooComplex, ImageTooLarge, UnsupportedImage
from worker.imaging.container import hevc
from worker.imaging.container.budget import MetadataBudget
from worker.imaging.container.inspection import Inspection, Limits

# The allow-list: a primary image that is one HEVC image or a grid of HEVC tiles, its items stored in this file
# (iloc construction method 0) or in its idat (1). Top-level boxes other than these count as metadata.
PRIMARY_TYPES = frozenset({b"hvc1", b"grid"})
TILE_TYPE = b"hvc1"
CONSTRUCTION_METHODS = frozenset({0, 1})
TOP_LEVEL = frozenset({b"ftyp", b"meta", b"mdat"})
BRANDS = (b"heic", b"heix", b"heim", b"heis", b"mif1", b"mif2", b"msf1")
_AVIF_BRANDS = (b"avif", b"avis")
MAX_BOXES = 4096  # boxes read in one file (a real photo has a few dozen, plus two or so per grid tile)
MAX_ITEMS = 1024  # items, properties, references (a 48 MP grid has about 200 tiles)
_HEVC_MARGIN = 64  # an HEVC picture may exceed its ispe by the coding-block padding, never by more
_ALPHA = (b"urn:mpeg:hevc:2015:auxid:1\0", b"urn:mpeg:mpegB:cicp:systems:auxiliary:alpha\0")
# Items the reader decodes rather than loads: not counted as metadata.
_IMAGE_TYPES = frozenset({b"hvc1", b"grid", b"av01", b"iden", b"iovl", b"jpeg", b"unci", b"j2k1", b"vvc1", b"tmap"})


def brand(data: bytes) -> str | None:
    """'heif' or 'avif' when `data` starts with an ISO BMFF ftyp box naming such a brand."""
    if data[4:8] != b"ftyp" or len(data) < 16:
        return None
    (size,) = struct.unpack_from(">I", data)
    brands = [data[8:12]] + [data[i : i + 4] for i in range(16, min(size, len(data), 4096) - 3, 4)]
    if any(b in _AVIF_BRANDS for b in brands) and not any(b in (b"heic", b"heix") for b in brands):
        return "avif"
    if any(b in BRANDS for b in brands):
        return "heif"
    return None


def matches(data: bytes) -> bool:
    return brand(data) == "heif"


class _Boxes:
    """Walks ISO BMFF boxes, counting every one against MAX_BOXES."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.count = 0

    def read(self, start: int, end: int) -> list[tuple[bytes, int, int]]:
        """(type, body start, body end) of each box in data[start:end]."""
        out, pos, data = [], start, self.data
        while pos < end:
            self.count += 1
            if self.count > MAX_BOXES:
                raise ImageTooComplex(f"HEIF file has more than {MAX_BOXES} boxes")
            if pos + 8 > end:
                raise CorruptImage("HEIF box header runs past its container (truncated)")
            size, kind, head = struct.unpack_from(">I", data, pos)[0], data[pos + 4 : pos + 8], 8
            if size == 1:
                if pos + 16 > end:
                    raise CorruptImage("HEIF box header runs past its container (truncated)")
                size, head = struct.unpack_from(">Q", data, pos + 8)[0], 16
            elif size == 0:  # to the end of the enclosing container
                size = end - pos
            if size < head or pos + size > end:
                raise CorruptImage(f"HEIF box {kind!r} runs past the end of its container (truncated)")
            out.append((kind, pos + head, pos + size))
            pos += size
        return out


@dataclass(slots=True)
class _Item:
    kind: bytes = b""
    extents: list[tuple[int, int, int]] = field(default_factory=list)  # (construction method, offset, length)
    props: list[int] = field(default_factory=list)  # 1-based indexes into ipco


_ItemOf = Callable[[int], _Item]


class _Items:
    """The items of one file and their properties, as the meta box describes them."""

    def __init__(self, data: bytes, limits: Limits) -> None:
        self.data = data
        self.limits = limits
        self.items: dict[int, _Item] = {}
        self.props: dict[int, tuple[bytes, bytes]] = {}  # 1-based index -> (type, body)
        self.idat = (0, 0)  # where the idat box's body lies (construction method 1)

    def item(self, item_id: int) -> _Item:
        """The item with this id, described so far or new (at most MAX_ITEMS)."""
        if item_id not in self.items:
            if len(self.items) >= MAX_ITEMS:
                raise ImageTooComplex(f"HEIF file has more than {MAX_ITEMS} items")
            self.items[item_id] = _Item()
        return self.items[item_id]

    def bounds(self, method: int) -> tuple[int, int]:
        """Where an extent's offset counts from and where its data must end: the file, or its idat box."""
        return (0, len(self.data)) if method == 0 else self.idat

    def payload(self, it: _Item) -> bytes:
        parts = []
        for method, offset, length in it.extents:
            base, end = self.bounds(method)
            if method not in CONSTRUCTION_METHODS:
                raise UnsupportedImage("HEIF item built from another item (iloc construction method 2)")
            if base + offset + length > end:
                raise CorruptImage("HEIF item data runs past the end of the file (truncated)")
            parts.append(self.data[base + offset : base + offset + length])
        return b"".join(parts)

    def prop(self, it: _Item, kind: bytes) -> bytes | None:
        for i in it.props:
            if i not in self.props:
                raise CorruptImage(f"HEIF item refers to a missing property {i}")
            if self.props[i][0] == kind:
                return self.props[i][1]
        return None

    def ispe(self, it: _Item) -> tuple[int, int]:
        body = self.prop(it, b"ispe")
        if body is None or len(body) < 12:
            raise CorruptImage("HEIF image item has no size (ispe)")
        w, h = struct.unpack_from(">II", body, 4)
        return w, h

    def check_size(self, w: int, h: int, what: str) -> None:
        limits = self.limits
        if w > limits.max_side or h > limits.max_side or w * h > limits.max_pixels:
            raise ImageTooLarge(
                f"{what} is {w}x{h} ({w * h / 1e6:.1f} MP); the limit is {limits.max_pixels / 1e6:.0f} MP and "
                f"{limits.max_side} px a side (MAX_PIXELS, MAX_SIDE)"
            )

    def check_hevc(self, it: _Item) -> None:
        """An HEVC image within the limits, whose stream allocates no more than its ispe says."""
        w, h = self.ispe(it)
        self.check_size(w, h, "HEIF image")
        sps = hevc.sps_size(self.prop(it, b"hvcC"))
        if sps[0] > w + _HEVC_MARGIN or sps[1] > h + _HEVC_MARGIN:
            raise ImageTooLarge(f"HEIF image declares {w}x{h} but its HEVC stream is {sps[0]}x{sps[1]}")


def read(data: bytes, budget: MetadataBudget, limits: Limits) -> Inspection:
    boxes = _Boxes(data)
    top = boxes.read(0, len(data))
    metas = [b for b in top if b[0] == b"meta"]
    if any(k == b"moov" for k, _, _ in top):
        raise UnsupportedImage("HEIF image sequences (a moov track: bursts, animations) are not supported")
    if len(metas) != 1:
        raise CorruptImage("HEIF file needs exactly one top-level meta box")
    for kind, start, end in top:
        if kind not in TOP_LEVEL:
            budget.take(end - start + 8, f"HEIF {kind.decode('latin-1')} box")
    _, mstart, mend = metas[0]
    budget.take(mend - mstart, "HEIF meta box")  # item and property descriptions, the ICC profile, idat
    children = {k: (s, e) for k, s, e in boxes.read(mstart + 4, mend)}
    if b"hdlr" not in children or data[children[b"hdlr"][0] + 8 : children[b"hdlr"][0] + 12] != b"pict":
        raise CorruptImage("HEIF meta box is not a picture (hdlr 'pict')")
    for needed in (b"pitm", b"iinf", b"iloc", b"iprp"):
        if needed not in children:
            raise CorruptImage(f"HEIF meta box has no {needed.decode()} box")
    f = _Items(data, limits)
    start, _ = children[b"pitm"]
    primary = _uint(data, start + 4, 2 if data[start] == 0 else 4)
    _iinf(data, boxes, *children[b"iinf"], f.item)
    _iloc(data, *children[b"iloc"], f.item)
    f.props = _iprp(data, boxes, *children[b"iprp"], f.item)
    refs = _iref(data, *children[b"iref"], f.item) if b"iref" in children else {}
    f.idat = children.get(b"idat", (0, 0))
    items, props = f.items, f.props

    for item_id, it in items.items():
        for method, offset, length in it.extents:
            base, end = f.bounds(method)
            if base + offset + length > end:
                raise CorruptImage(f"HEIF item {item_id} data runs past the end of the file (truncated)")
        if it.kind not in _IMAGE_TYPES:  # Exif, XMP (mime), anything else: what the reader may load
            budget.take(sum(length for _, _, length in it.extents), f"HEIF {it.kind.decode('latin-1')} item")

    if primary not in items or not items[primary].kind:
        raise CorruptImage("HEIF primary item (pitm) is not described in iinf")
    main = items[primary]
    for (kind, source), targets in refs.items():  # an auxiliary image points at the image it belongs to
        if kind != b"auxl" or primary not in targets or source not in items:
            continue
        aux_types = [props[i][1][4:] for i in items[source].props if props.get(i, (b"", b""))[0] == b"auxC"]
        if any(t.startswith(_ALPHA) for t in aux_types):
            raise UnsupportedImage(
                "HEIF with transparency (an alpha plane) is not supported: ImageMagick 6 decodes HEIF without "
                "alpha, so pixels a viewer never shows would be published"
            )

    if main.kind not in PRIMARY_TYPES:
        raise UnsupportedImage(f"HEIF primary image of type {main.kind.decode('latin-1')!r} is not supported")
    if main.kind == b"grid":
        width, height = _grid(f, main, refs.get((b"dimg", primary), []))
    else:
        width, height = f.ispe(main)
        f.check_hevc(main)
    irot = f.prop(main, b"irot")
    if (irot[0] & 3 if irot else 0) in (1, 3):  # libheif rotates while decoding: the decoded image is turned
        width, height = height, width
    # imir (a mirror) keeps the size; clap (a clean-aperture crop, applied by libheif too) can only shrink it: the
    # size returned is the decoder's upper bound, and codec.decode accepts a decoded image no larger than it.
    icc = None
    colr = f.prop(main, b"colr")
    if colr is not None and colr[:4] in (b"prof", b"rICC"):
        icc = colr[4:]
    return Inspection("heic", width, height, data, 1, icc)


def _grid(f: _Items, main: _Item, tiles: list[int]) -> tuple[int, int]:
    """The output size of a grid of HEVC tiles, each checked, that cover it."""
    grid = f.payload(main)
    if len(grid) < 8:
        raise CorruptImage("HEIF grid description is truncated")
    rows, cols = grid[2] + 1, grid[3] + 1
    width, height = struct.unpack_from(">II" if grid[1] & 1 else ">HH", grid, 4)
    if len(tiles) != rows * cols:
        raise CorruptImage(f"HEIF grid of {rows}x{cols} has {len(tiles)} tiles")
    f.check_size(width, height, "HEIF image")
    for tile in tiles:
        if tile not in f.items or f.items[tile].kind != TILE_TYPE:
            raise UnsupportedImage("HEIF grid tiles that are not HEVC images are not supported")
        f.check_hevc(f.items[tile])
    tw, th = f.ispe(f.items[tiles[0]])
    if any(f.ispe(f.items[t]) != (tw, th) for t in tiles) or tw * cols < width or th * rows < height:
        raise CorruptImage("HEIF grid tiles do not cover the image")
    f.check_size(tw * cols, th * rows, "HEIF grid (tiles as decoded)")
    return width, height


def _uint(data: bytes, pos: int, size: int) -> int:
    if size == 0:
        return 0
    if pos + size > len(data):
        raise CorruptImage("HEIF box is truncated")
    return int.from_bytes(data[pos : pos + size], "big")


def _iinf(data: bytes, boxes: _Boxes, start: int, end: int, item: _ItemOf) -> None:
    head = start + (6 if data[start] == 0 else 8)
    for kind, s, _ in boxes.read(head, end):
        if kind != b"infe" or data[s] < 2:
            continue  # item info before version 2 names no item type: nothing a decoder uses
        wide = data[s] >= 3
        item_id = _uint(data, s + 4, 4 if wide else 2)
        pos = s + 4 + (4 if wide else 2) + 2
        item(item_id).kind = data[pos : pos + 4]


def _iloc(data: bytes, start: int, end: int, item: _ItemOf) -> None:
    version = data[start]
    sizes = data[start + 4], data[start + 5]
    offset_size, length_size = sizes[0] >> 4, sizes[0] & 15
    base_size, index_size = sizes[1] >> 4, (sizes[1] & 15) if version in (1, 2) else 0
    pos = start + 6
    count = _uint(data, pos, 4 if version == 2 else 2)
    pos += 4 if version == 2 else 2
    if count > MAX_ITEMS:
        raise ImageTooComplex(f"HEIF file has more than {MAX_ITEMS} items")
    for _ in range(count):
        item_id = _uint(data, pos, 4 if version == 2 else 2)
        pos += 4 if version == 2 else 2
        method = _uint(data, pos, 2) & 15 if version in (1, 2) else 0
        pos += 2 if version in (1, 2) else 0
        if _uint(data, pos, 2):
            raise UnsupportedImage("HEIF item stored in another file (data reference) is not supported")
        base = _uint(data, pos + 2, base_size)
        pos += 2 + base_size
        extents = _uint(data, pos, 2)
        pos += 2
        if extents > MAX_ITEMS:
            raise ImageTooComplex(f"HEIF item has more than {MAX_ITEMS} extents")
        it = item(item_id)
        for _ in range(extents):
            pos += index_size
            offset, length = _uint(data, pos, offset_size), _uint(data, pos + offset_size, length_size)
            pos += offset_size + length_size
            if length == 0:
                raise UnsupportedImage("HEIF item of unspecified length is not supported")
            it.extents.append((method, base + offset, length))
        if pos > end:
            raise CorruptImage("HEIF iloc box is truncated")


def _iprp(data: bytes, boxes: _Boxes, start: int, end: int, item: _ItemOf) -> dict[int, tuple[bytes, bytes]]:
    found = boxes.read(start, end)
    ipco = [b for b in found if b[0] == b"ipco"]
    if len(ipco) != 1:
        raise CorruptImage("HEIF iprp box needs exactly one ipco box")
    props = {i + 1: (k, data[s:e]) for i, (k, s, e) in enumerate(boxes.read(ipco[0][1], ipco[0][2]))}
    if len(props) > MAX_ITEMS:
        raise ImageTooComplex(f"HEIF file has more than {MAX_ITEMS} properties")
    for kind, s, e in found:
        if kind != b"ipma":
            continue
        version, wide_index = data[s], data[s + 3] & 1
        pos, (count,) = s + 8, struct.unpack_from(">I", data, s + 4)
        if count > MAX_ITEMS:
            raise ImageTooComplex(f"HEIF file has more than {MAX_ITEMS} items")
        for _ in range(count):
            item_id = _uint(data, pos, 4 if version >= 1 else 2)
            pos += 4 if version >= 1 else 2
            n = _uint(data, pos, 1)
            pos += 1
            for _ in range(n):
                value = _uint(data, pos, 2 if wide_index else 1)
                pos += 2 if wide_index else 1
                index = value & (0x7FFF if wide_index else 0x7F)
                if index:
                    item(item_id).props.append(index)
        if pos > e:
            raise CorruptImage("HEIF ipma box is truncated")
    return props


def _iref(data: bytes, start: int, end: int, item: _ItemOf) -> dict[tuple[bytes, int], list[int]]:
    wide = data[start] != 0
    size = 4 if wide else 2
    refs: dict[tuple[bytes, int], list[int]] = {}
    pos, total = start + 4, 0
    while pos + 8 <= end:
        (box_size,), kind = struct.unpack_from(">I", data, pos), data[pos + 4 : pos + 8]
        if box_size < 8 or pos + box_size > end:
            raise CorruptImage("HEIF iref box is truncated")
        p = pos + 8
        source, count = _uint(data, p, size), _uint(data, p + size, 2)
        total += count
        if total > MAX_ITEMS * 4:
            raise ImageTooComplex("HEIF file has too many item references")
        p += size + 2
        if p + count * size > pos + box_size:
            raise CorruptImage("HEIF iref box is truncated")
        refs.setdefault((kind, source), []).extend(_uint(data, p + i * size, size) for i in range(count))
        for target in refs[(kind, source)]:
            item(target)
        pos += box_size
    return refs
