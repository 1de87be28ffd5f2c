"""The int8 CenterFace: the pinned bytes are what the quantizer makes here, and every x86 CPU computes what its
graph says. Without VNNI (AVX2, AVX-512 without VNNI) ONNX Runtime's u8s8 kernels add pairs of uint8 x int8
products in 16 bits, so weights beyond 7 bits can saturate there and scores drop on those CPUs only (measured on
an AVX2 machine with 8-bit weights: a face's score 0.83 instead of 0.93, and 0.963 of the dev set's faces
protected instead of 0.982)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper
from PIL import Image

from worker.detect.model import DEFAULT_MODEL_PATH, INPUT, INT8_SHA256, load_model_bytes, quantize, sha256_of

HEATMAP = "537"


def test_the_int8_model_made_here_is_the_pinned_one():
    assert sha256_of(quantize(load_model_bytes(DEFAULT_MODEL_PATH))) == INT8_SHA256
    assert load_model_bytes(DEFAULT_MODEL_PATH, "int8")  # the installed file passes its check


def test_every_weight_fits_in_seven_bits_so_no_pair_of_products_can_saturate_16_bits():
    model = onnx.load_from_string(load_model_bytes(DEFAULT_MODEL_PATH, "int8"))
    weights = [numpy_helper.to_array(i) for i in model.graph.initializer if i.data_type == onnx.TensorProto.INT8]
    assert len(weights) >= 50  # one per convolution
    largest = max(int(np.abs(w.astype(np.int32)).max()) for w in weights)
    assert largest <= 64
    assert 2 * 255 * largest <= np.iinfo(np.int16).max


def _session(data: bytes, level: ort.GraphOptimizationLevel) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.graph_optimization_level = level
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("tiles", [1, 2])
def test_the_fused_int8_kernels_of_this_cpu_agree_with_the_graph_computed_in_float(skimage_data: Path, tiles: int):
    """With every optimisation off, ONNX Runtime runs the QDQ graph as written (dequantize, float convolution,
    quantize): no 16-bit sums. The fused integer kernels that run in production must give the same face scores
    up to rounding (8-bit weights on an AVX2 CPU: up to 0.36 apart; 7-bit: 0.05). On a CPU with VNNI both kinds
    of weights pass; the weight test above holds everywhere."""
    data = load_model_bytes(DEFAULT_MODEL_PATH, "int8")
    photo = np.asarray(Image.open(skimage_data / "astronaut.png").convert("RGB"))
    if tiles > 1:  # several smaller faces in one input
        small = np.asarray(Image.fromarray(photo).resize((photo.shape[1] // tiles, photo.shape[0] // tiles)))
        photo = np.tile(small, (tiles, tiles, 1))
    blob = photo.transpose(2, 0, 1)[None].astype(np.float32)
    fused = _session(data, ort.GraphOptimizationLevel.ORT_ENABLE_ALL).run([HEATMAP], {INPUT: blob})[0]
    graph = _session(data, ort.GraphOptimizationLevel.ORT_DISABLE_ALL).run([HEATMAP], {INPUT: blob})[0]
    assert graph.max() > 0.8  # the face is there
    assert float(np.abs(fused - graph).max()) <= 0.1
