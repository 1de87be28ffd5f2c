"""CenterFace through ONNX Runtime: one small callable that loads the model once.

`CenterFace.run(rgb)` detects on one array at the array's own scale; the multi-scale plan that decides
which arrays to feed it lives in `local.py`.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import ClassVar

import numpy as np
import onnxruntime as ort

from worker.detect.model import INPUT, OUTPUTS, dynamic_model, load_model_bytes

_OUTPUTS = list(OUTPUTS)  # heatmap, log-scale, offset, landmarks
STRIDE = 4  # the heatmap is 1/4 of the input


class CenterFace:
    """Thread-safe: ONNX Runtime sessions may be run from several threads at once."""

    _lock = threading.Lock()
    _shared: ClassVar[dict[tuple[str, str, int], CenterFace]] = {}

    def __init__(self, path: str = "", precision: str = "int8", threads: int = 1) -> None:
        opts = ort.SessionOptions()
        # One intra-op thread per call: the worker pool is the parallelism, so calls don't fight for cores.
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        data = load_model_bytes(Path(path) if path else None, precision)
        if precision == "fp32":
            data = dynamic_model(data).SerializeToString()  # the int8 model was made from this graph
        self.session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])

    @classmethod
    def shared(cls, path: str = "", precision: str = "int8", threads: int = 1) -> CenterFace:
        """One session per model file and process (loading costs ~0.3 s and 20 MB)."""
        key = (path, precision, threads)
        with cls._lock:
            if key not in cls._shared:
                cls._shared[key] = cls(path, precision, threads)
            return cls._shared[key]

    def run(self, rgb: np.ndarray, threshold: float) -> np.ndarray:
        """Detect on `rgb` (HxWx3 uint8, any size). Returns Nx5 float32 [x0, y0, x1, y1, score] in its pixels."""
        h, w = rgb.shape[:2]
        # The network needs sides divisible by 32: pad (not stretch) so geometry stays exact.
        ph, pw = -(-h // 32) * 32, -(-w // 32) * 32
        blob = np.zeros((1, 3, ph, pw), np.float32)
        # RGB order: measured on the dev set, BGR loses ~15% recall.
        blob[0, :, :h, :w] = rgb.transpose(2, 0, 1)
        heat, scale, offset, _ = self.session.run(_OUTPUTS, {INPUT: blob})
        return decode(heat[0, 0], scale[0], offset[0], threshold, (w, h))


def decode(
    heat: np.ndarray, scale: np.ndarray, offset: np.ndarray, threshold: float, size: tuple[int, int]
) -> np.ndarray:
    """CenterFace heads -> boxes. Vectorised: a crowd yields thousands of candidate cells."""
    ys, xs = np.nonzero(heat > threshold)
    if ys.size == 0:
        return np.empty((0, 5), np.float32)
    bh = np.exp(scale[0, ys, xs]) * STRIDE
    bw = np.exp(scale[1, ys, xs]) * STRIDE
    cy = (ys + offset[0, ys, xs] + 0.5) * STRIDE
    cx = (xs + offset[1, ys, xs] + 0.5) * STRIDE
    w, h = size
    boxes = np.stack(
        [
            np.clip(cx - bw / 2, 0, w),
            np.clip(cy - bh / 2, 0, h),
            np.clip(cx + bw / 2, 0, w),
            np.clip(cy + bh / 2, 0, h),
            heat[ys, xs],
        ],
        axis=1,
    ).astype(np.float32)
    return boxes
