"""Pure box geometry: non-maximum suppression, union of detections, padding and clamping, EXIF orientation mapping."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from worker.detect import Face


def nms(boxes: np.ndarray, iou: float) -> np.ndarray:
    """Keep the best-scoring box of each group overlapping by more than `iou` (intersection over union).

    `boxes` is Nx5 [x0, y0, x1, y1, score]. Union, not the smaller box: in a crowd, neighbouring faces
    overlap a lot relative to the smaller one and must all survive.
    """
    if len(boxes) == 0:
        return boxes.reshape(0, 5)
    boxes = boxes[np.argsort(-boxes[:, 4], kind="stable")]
    x0, y0, x1, y1 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = np.maximum(x1 - x0, 0) * np.maximum(y1 - y0, 0)
    keep = np.ones(len(boxes), bool)
    for i in range(len(boxes)):
        if not keep[i]:
            continue
        rest = np.nonzero(keep[i + 1 :])[0] + i + 1
        if rest.size == 0:
            break
        iw = np.clip(np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]), 0, None)
        ih = np.clip(np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]), 0, None)
        inter = iw * ih
        overlap = inter / np.maximum(area[i] + area[rest] - inter, 1e-9)
        keep[rest[overlap > iou]] = False
    return boxes[keep]


def pad_and_clamp(
    x: float, y: float, w: float, h: float, padding: float, width: int, height: int
) -> tuple[int, int, int, int] | None:
    """Grow a box by `padding` x its size on every side, round outwards, clamp to the image.

    Returns (x0, y0, x1, y1) integer pixel bounds, or None when nothing of the box is inside the image.
    """
    px, py = w * padding, h * padding
    x0 = max(0, int(np.floor(x - px)))
    y0 = max(0, int(np.floor(y - py)))
    x1 = min(width, int(np.ceil(x + w + px)))
    y1 = min(height, int(np.ceil(y + h + py)))
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


# EXIF Orientation -> how a stored-frame point (x, y) lands in the upright frame, for a stored image of
# size (W, H). Values follow the TIFF/EXIF spec: 1 = top-left ... 8 = left-bottom.
def orient_point(x: float, y: float, orientation: int, width: int, height: int) -> tuple[float, float]:
    """Map a point of the stored frame (W x H) into the upright (displayed) frame."""
    w, h = width, height
    match orientation:
        case 2:
            return w - x, y
        case 3:
            return w - x, h - y
        case 4:
            return x, h - y
        case 5:
            return y, x
        case 6:
            return h - y, x
        case 7:
            return h - y, w - x
        case 8:
            return y, w - x
        case _:
            return x, y


def upright_size(width: int, height: int, orientation: int) -> tuple[int, int]:
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def orient_box(
    x: float, y: float, w: float, h: float, orientation: int, width: int, height: int
) -> tuple[float, float, float, float]:
    """Map a stored-frame box (x, y, w, h) into the upright frame; the result is again (x, y, w, h)."""
    ax, ay = orient_point(x, y, orientation, width, height)
    bx, by = orient_point(x + w, y + h, orientation, width, height)
    return min(ax, bx), min(ay, by), abs(bx - ax), abs(by - ay)


def face_padding(size: float, small: float, large: float, lo: float = 64.0, hi: float = 200.0) -> float:
    """Padding for a face whose longer side is `size` px: `small` up to `lo` px, `large` from `hi` px,
    log-interpolated between. Small boxes are imprecise and need a wide margin; large ones are precise,
    and a wide margin on them blurs a lot of background."""
    if large < 0 or size <= lo:
        return small
    if size >= hi:
        return large
    t = (np.log(size) - np.log(lo)) / (np.log(hi) - np.log(lo))
    return float(small + (large - small) * t)


def union(a: Sequence[Face], b: Sequence[Face], iou: float) -> list[Face]:
    """Both lists' faces, overlapping pairs (IoU > iou) merged into the better-scoring one."""
    faces = [*a, *b]
    if not faces:
        return []
    rows = np.array([[f.x, f.y, f.x + f.w, f.y + f.h, f.score, i] for i, f in enumerate(faces)], dtype=np.float64)
    return [faces[int(r[5])] for r in nms(rows, iou)]


def overlaps(face: Face, others: Sequence[Face], iou: float) -> bool:
    for o in others:
        iw = min(face.x + face.w, o.x + o.w) - max(face.x, o.x)
        ih = min(face.y + face.h, o.y + o.h) - max(face.y, o.y)
        if iw <= 0 or ih <= 0:
            continue
        inter = iw * ih
        if inter / max(face.w * face.h + o.w * o.h - inter, 1e-9) > iou:
            return True
    return False
