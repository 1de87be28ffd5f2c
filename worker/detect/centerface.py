"""CenterFace through ONNX Runtime: one small callable that loads the model once.

`CenterFace.run(rgb)` detects on one array at the array's own scale; the multi-scale plan that decides
which arrays to feed it lives in `local.py`.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import ClassVar

import numpy as np
import onnx
import onnxruntime as ort
from onnx.tools.update_model_dims import update_inputs_outputs_dims

from worker.detect.model import load_model_bytes

_INPUT = "input.1"
_OUTPUTS = ["537", "538", "539", "540"]  # heatmap, log-scale, offset, landmarks
STRIDE = 4  # the heatmap is 1/4 of the input


def _dynamic_model(data: bytes) -> bytes:
    """The exported graph declares a fixed 10x3x32x32 input; make H and W (and batch) free.

    It also lists every weight as a graph input, which stops ONNX Runtime from folding BatchNorm into the
    convolutions; dropping those inputs (and the unused BN counters) halves inference time.
    """
    model = onnx.load_from_string(data)
    weights = {i.name for i in model.graph.initializer}
    real_inputs = [i for i in model.graph.input if i.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(real_inputs)
    used = {name for node in model.graph.node for name in node.input}
    unused = [i for i in model.graph.initializer if i.name not in used]
    for init in unused:
        model.graph.initializer.remove(init)
    inputs = {n.name: [d.dim_value for d in n.type.tensor_type.shape.dim] for n in model.graph.input}
    outputs = {n.name: [d.dim_value for d in n.type.tensor_type.shape.dim] for n in model.graph.output}
    inputs[_INPUT] = ["B", 3, "H", "W"]
    outputs.update(
        {
            "537": ["B", 1, "h", "w"],
            "538": ["B", 2, "h", "w"],
            "539": ["B", 2, "h", "w"],
            "540": ["B", 10, "h", "w"],
        }
    )
    return update_inputs_outputs_dims(model, inputs, outputs).SerializeToString()


class CenterFace:
    """Thread-safe: ONNX Runtime sessions may be run from several threads at once."""

    _lock = threading.Lock()
    _shared: ClassVar[dict[tuple[str, int], CenterFace]] = {}

    def __init__(self, path: str = "", threads: int = 1) -> None:
        opts = ort.SessionOptions()
        # One intra-op thread per call: the worker pool is the parallelism, so calls don't fight for cores.
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(
            _dynamic_model(load_model_bytes(Path(path) if path else None)), opts, providers=["CPUExecutionProvider"]
        )

    @classmethod
    def shared(cls, path: str = "", threads: int = 1) -> CenterFace:
        """One session per model file and process (loading costs ~0.3 s and 20 MB)."""
        with cls._lock:
            if (path, threads) not in cls._shared:
                cls._shared[path, threads] = cls(path, threads)
            return cls._shared[path, threads]

    def run(self, rgb: np.ndarray, threshold: float) -> np.ndarray:
        """Detect on `rgb` (HxWx3 uint8, any size). Returns Nx5 float32 [x0, y0, x1, y1, score] in its pixels."""
        h, w = rgb.shape[:2]
        # The network needs sides divisible by 32: pad (not stretch) so geometry stays exact.
        ph, pw = -(-h // 32) * 32, -(-w // 32) * 32
        blob = np.zeros((1, 3, ph, pw), np.float32)
        # RGB order: measured on the dev set, BGR loses ~15% recall.
        blob[0, :, :h, :w] = rgb.transpose(2, 0, 1)
        heat, scale, offset, _ = self.session.run(_OUTPUTS, {_INPUT: blob})
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
