"""Big photos with small faces: the evaluation set's WIDER photos tiled n x n at their own pixel size.

Every face keeps its native size (16-100 px) while the photo around it grows to 5, 14 or 26 MP, which is what a
phone photo of a crowd looks like to the detector. Annotations are shifted with their photo; ignore regions kept.
Cells are padded with flat grey (the referee counts no detail there). Built in memory or into a folder with an
annotations.json the referee reads; never copied into the project (internal evaluation material).
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

GREY = (128, 128, 128)


def wider_entries(annotations: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The WIDER photos (upright, JPEG, RGB), crowds first: they carry most of the small faces."""
    wider = [e for e in annotations if e["annotation_source"] == "wider_face_val_official" and "oriented" not in e]
    return sorted(wider, key=lambda e: -len(e["faces"]))


def build(dev: Path, entries: Sequence[dict[str, Any]], n: int, name: str) -> tuple[bytes, dict[str, Any]]:
    """One n x n mosaic of `entries` (cycled) as a JPEG at quality 95, and its annotation entry."""
    cells = [entries[i % len(entries)] for i in range(n * n)]
    col_w = [max(cells[r * n + c]["width"] for r in range(n)) for c in range(n)]
    row_h = [max(cells[r * n + c]["height"] for c in range(n)) for r in range(n)]
    canvas = Image.new("RGB", (sum(col_w), sum(row_h)), GREY)
    faces: list[list[int]] = []
    attrs: list[dict[str, Any]] = []
    ignore: list[list[int]] = []
    for i, entry in enumerate(cells):
        r, c = divmod(i, n)
        ox, oy = sum(col_w[:c]), sum(row_h[:r])
        with Image.open(dev / entry["file"]) as im:
            canvas.paste(im.convert("RGB"), (ox, oy))
        faces += [[x + ox, y + oy, w, h] for x, y, w, h in entry["faces"]]
        attrs += entry.get("face_attrs") or [{}] * len(entry["faces"])
        ignore += [[x + ox, y + oy, w, h] for x, y, w, h in entry.get("ignore", [])]
    out = io.BytesIO()
    canvas.save(out, "JPEG", quality=95)
    entry = {
        "file": name,
        "width": canvas.width,
        "height": canvas.height,
        "faces": faces,
        "face_attrs": attrs,
        "ignore": ignore,
        "annotation_source": "mosaic",
        "cells": [e["file"] for e in cells],
    }
    return out.getvalue(), entry


def crop(data: bytes, entry: dict[str, Any], size: tuple[int, int], name: str) -> tuple[bytes, dict[str, Any]]:
    """The top-left `size` of a mosaic (e.g. a 12 MP phone frame): faces wholly inside are kept, faces the crop
    cuts become ignore regions (part of a face is neither a hit nor a miss)."""
    w, h = size
    with Image.open(io.BytesIO(data)) as im:
        if im.width < w or im.height < h:
            raise ValueError(f"a {im.width}x{im.height} mosaic cannot give a {w}x{h} crop")
        out = io.BytesIO()
        im.crop((0, 0, w, h)).save(out, "JPEG", quality=95)
    faces, attrs = [], []
    ignore = [clipped for box in entry.get("ignore", []) if (clipped := _clip(box, w, h))]
    for box, attr in zip(entry["faces"], entry["face_attrs"], strict=True):
        x, y, bw, bh = box
        if x + bw <= w and y + bh <= h:
            faces.append(box)
            attrs.append(attr)
        elif clipped := _clip(box, w, h):
            ignore.append(clipped)
    return out.getvalue(), entry | {
        "file": name,
        "width": w,
        "height": h,
        "faces": faces,
        "face_attrs": attrs,
        "ignore": ignore,
    }


def _clip(box: Sequence[int], w: int, h: int) -> list[int] | None:
    x, y, bw, bh = box
    x1, y1 = min(x + bw, w), min(y + bh, h)
    return [x, y, x1 - x, y1 - y] if x1 > x and y1 > y else None


def mosaics(dev: Path, sizes: Sequence[int] = (2, 3, 4), per_size: int = 1) -> list[tuple[int, bytes, dict]]:
    """`per_size` mosaics of each size, each starting at another photo so they differ: (n, JPEG, annotation)."""
    entries = wider_entries(json.loads((dev / "annotations.json").read_text()))
    out = []
    for n in sizes:
        for k in range(per_size):
            start = (k * n * n) % len(entries)
            order = entries[start:] + entries[:start]
            data, entry = build(dev, order, n, f"mosaic_{n}x{n}_{k}.jpg")
            out.append((n, data, entry))
    return out


def write(dev: Path, folder: Path, sizes: Sequence[int] = (2, 3, 4), per_size: int = 1) -> Path:
    """The mosaics and their annotations.json in `folder` (the referee's ORIGINALS_DIR layout)."""
    folder.mkdir(parents=True, exist_ok=True)
    annotations = []
    for _n, data, entry in mosaics(dev, sizes, per_size):
        (folder / entry["file"]).write_bytes(data)
        annotations.append(entry)
    (folder / "annotations.json").write_text(json.dumps(annotations))
    return folder


def originals(dev: Path, folder: Path, sizes: Sequence[int] = (2, 3, 4), per_size: int = 1) -> Path:
    """The same photos the mosaics are made of, each once, as they are (for 'the same faces in their originals')."""
    folder.mkdir(parents=True, exist_ok=True)
    annotations = json.loads((dev / "annotations.json").read_text())
    used = {f for _n, _d, entry in mosaics(dev, sizes, per_size) for f in entry["cells"]}
    kept = [e for e in annotations if e["file"] in used]
    for e in kept:
        (folder / e["file"]).symlink_to((dev / e["file"]).resolve())
    (folder / "annotations.json").write_text(json.dumps(kept))
    return folder
