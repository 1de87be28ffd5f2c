"""Measure CenterFace's activation ranges for int8 quantization and write worker/detect/centerface-int8-calibration.json.

Run once by a maintainer when the model or ONNX Runtime changes (`.venv/bin/python scripts/calibrate_centerface.py`),
then re-pin INT8_SHA256 in worker/detect/model.py with the digest it prints, after the quality tests pass.
The photos are the ones that ship inside scikit-image (the demo extra), never the internal evaluation set: natural
photos, a portrait, and grids of LFW faces at 20 and 40 px so the face channels see faces.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import skimage.data
from onnxruntime.quantization import CalibrationDataReader
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worker.detect.model import CALIBRATION, DEFAULT_MODEL_PATH, INPUT, load_model_bytes, quantize, sha256_of

PHOTOS = ("astronaut", "coffee", "chelsea", "camera", "rocket", "retina", "hubble_deep_field")
FACE_GRIDS = ((20, 0), (40, 37))  # (face size in px, first face)
LONG_SIDE = 640


def _rgb(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    return np.ascontiguousarray(a[..., :3].astype(np.uint8))


def photos() -> Iterator[np.ndarray]:
    for name in PHOTOS:
        im = Image.fromarray(_rgb(getattr(skimage.data, name)()))
        im.thumbnail((LONG_SIDE, LONG_SIDE))
        yield np.asarray(im)
    faces = skimage.data.lfw_subset()  # 200 greyscale 25x25 faces in [0, 1]
    for size, first in FACE_GRIDS:
        n = LONG_SIDE // size
        grid = np.full((n * size, n * size), 128, np.uint8)
        for i in range(n * n):
            face = Image.fromarray((faces[(first + i) % len(faces)] * 255).astype(np.uint8)).resize((size, size))
            row, col = divmod(i, n)
            grid[row * size : (row + 1) * size, col * size : (col + 1) * size] = np.asarray(face)
        yield _rgb(grid)


class Photos(CalibrationDataReader):
    def __init__(self) -> None:
        self._blobs = iter(list(photos()))

    def get_next(self) -> dict[str, np.ndarray] | None:
        rgb = next(self._blobs, None)
        if rgb is None:
            return None
        h, w = rgb.shape[:2]
        blob = np.zeros((1, 3, -(-h // 32) * 32, -(-w // 32) * 32), np.float32)  # as CenterFace.run pads
        blob[0, :, :h, :w] = rgb.transpose(2, 0, 1)
        return {INPUT: blob}


def main() -> int:
    CALIBRATION.unlink(missing_ok=True)
    data = quantize(load_model_bytes(DEFAULT_MODEL_PATH), CALIBRATION, Photos())
    print(f"wrote {CALIBRATION}; the int8 model's sha256: {sha256_of(data)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
