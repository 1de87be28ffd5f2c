"""ICC colour profiles: what a colour-managed viewer would do with a photo's profile, as pure functions.

The rule (README, "What leaves the worker"): an output carries no profile (sRGB, what viewers assume) or one of
the two profiles this module writes itself, sRGB-equivalent data never needing one. `colour_space` decides:
- 'srgb': an RGB matrix/TRC profile (or a grey one) whose colorants and tone curves render like sRGB within
  half an 8-bit level: the pixels are already what a viewer shows; no profile is written;
- 'p3': the same for Display P3 (what phones write for wide-gamut photos): pixels kept, our P3 profile written;
- None: anything else (other primaries or curves, lookup tables, CMYK, a curve that scrambles levels, a profile
  padded with private data): the pixels are converted to Display P3 through the profile (LittleCMS, in
  ImageMagick) before detection, and our P3 profile is written. So detection sees what a viewer sees, and no
  byte of an uploaded profile ever reaches an output.
"""

from __future__ import annotations

import struct
from functools import cache

import numpy as np

_D50 = np.array([0.9642, 1.0, 0.8249])
_BRADFORD = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])
# CIE xy of red, green, blue and the white point.
SRGB_PRIMARIES = ((0.64, 0.33), (0.30, 0.60), (0.15, 0.06), (0.3127, 0.3290))
P3_PRIMARIES = ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060), (0.3127, 0.3290))
# sRGB's tone curve as an ICC parametric curve (type 3): Y = (aX + b)^g above d, cX below.
SRGB_CURVE = (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045)
COLORANT_TOLERANCE = 0.002  # XYZ; sRGB profiles in the wild differ by ~1e-4 (s15.16 rounding, adaptation)
CURVE_TOLERANCE = 0.5 / 255  # half an 8-bit level anywhere on the curve
MAX_TAGS = 100
_LUT_TAGS = {b"A2B0", b"A2B1", b"A2B2", b"B2A0", b"B2A1", b"B2A2", b"D2B0", b"D2B1", b"D2B2", b"D2B3"}


def colorants(primaries: tuple[tuple[float, float], ...]) -> np.ndarray:
    """3x3 matrix whose columns are the D50-adapted XYZ of red, green and blue (what rXYZ/gXYZ/bXYZ hold)."""
    xyz = np.array([[x / y, 1.0, (1 - x - y) / y] for x, y in primaries])
    rgb, white = xyz[:3].T, xyz[3]
    scale = np.linalg.solve(rgb, white)
    to_xyz = rgb * scale
    lms_ratio = (_BRADFORD @ _D50) / (_BRADFORD @ white)
    adapt = np.linalg.inv(_BRADFORD) @ np.diag(lms_ratio) @ _BRADFORD
    return np.asarray(adapt @ to_xyz)


def srgb_decode(x: np.ndarray) -> np.ndarray:
    return _parametric(3, SRGB_CURVE, x)


# -- writing ---------------------------------------------------------------------------------------------------------
def _s15(v: float) -> bytes:
    return struct.pack(">i", round(v * 65536))


def _xyz(values: np.ndarray) -> bytes:
    return b"XYZ \0\0\0\0" + b"".join(_s15(v) for v in values)


def _mluc(text: str) -> bytes:
    encoded = text.encode("utf-16-be")
    return b"mluc\0\0\0\0" + struct.pack(">II2s2sII", 1, 12, b"en", b"US", len(encoded), 28) + encoded


def _para(kind: int, params: tuple[float, ...]) -> bytes:
    return b"para\0\0\0\0" + struct.pack(">HH", kind, 0) + b"".join(_s15(p) for p in params)


def matrix_profile(description: str, primaries: tuple[tuple[float, float], ...], curve: bytes) -> bytes:
    """An ICC v4 display profile: colorants from `primaries`, the same tone curve (a 'para' tag) for R, G, B."""
    m = colorants(primaries)
    white = np.array([primaries[3][0] / primaries[3][1], 1.0, (1 - sum(primaries[3])) / primaries[3][1]])
    lms_ratio = (_BRADFORD @ _D50) / (_BRADFORD @ white)
    chad = np.linalg.inv(_BRADFORD) @ np.diag(lms_ratio) @ _BRADFORD
    tags = [
        (b"desc", _mluc(description)),
        (b"cprt", _mluc("No copyright, use freely")),
        (b"wtpt", _xyz(_D50)),
        (b"chad", b"sf32\0\0\0\0" + b"".join(_s15(v) for v in chad.ravel())),
        (b"rXYZ", _xyz(m[:, 0])),
        (b"gXYZ", _xyz(m[:, 1])),
        (b"bXYZ", _xyz(m[:, 2])),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, blobs, placed = [], b"", {}
    for sig, data in tags:
        if data not in placed:  # the three curves share one tag body, as the ICC spec allows
            placed[data] = offset + len(blobs)
            blobs += data + b"\0" * (-len(data) % 4)
        table.append(struct.pack(">4sII", sig, placed[data], len(data)))
    body = struct.pack(">I", len(tags)) + b"".join(table) + blobs
    size = 128 + len(body)
    header = struct.pack(
        ">I4sI4s4s4s6H4sI4sII8sI",
        size,
        b"\0\0\0\0",
        0x04300000,
        b"mntr",
        b"RGB ",
        b"XYZ ",
        *(2026, 1, 1, 0, 0, 0),
        b"acsp",
        0,
        b"\0\0\0\0",
        0,
        0,
        b"\0" * 8,
        0,
    )
    header += b"".join(_s15(v) for v in _D50) + b"\0" * 4 + b"\0" * 16 + b"\0" * 28
    return header + body


@cache
def canonical(name: str) -> bytes:
    """The profile this worker writes: 'p3' (Display P3); sRGB outputs carry none."""
    if name != "p3":
        raise ValueError(f"no canonical profile {name!r}")
    return matrix_profile("faceblur Display P3", P3_PRIMARIES, _para(3, SRGB_CURVE))


def gamma_profile(gamma: float, chromaticities: tuple[float, ...] | None) -> bytes:
    """The profile a PNG's gAMA (and cHRM) chunks describe, so they go through the same decision as ICC."""
    c = chromaticities
    primaries = SRGB_PRIMARIES if c is None else ((c[2], c[3]), (c[4], c[5]), (c[6], c[7]), (c[0], c[1]))
    return matrix_profile("PNG gAMA/cHRM", primaries, _para(0, (1.0 / gamma,)))


# -- reading ---------------------------------------------------------------------------------------------------------
class ProfileError(ValueError):
    pass


def _tags(icc: bytes) -> tuple[bytes, dict[bytes, bytes]]:
    if len(icc) < 132 or icc[36:40] != b"acsp":
        raise ProfileError("not an ICC profile")
    (count,) = struct.unpack_from(">I", icc, 128)
    if count > MAX_TAGS or 132 + 12 * count > len(icc):
        raise ProfileError("bad tag table")
    tags = {}
    for i in range(count):
        sig, offset, size = struct.unpack_from(">4sII", icc, 132 + 12 * i)
        if offset + size > len(icc):
            raise ProfileError(f"tag {sig!r} runs past the profile")
        tags[sig] = icc[offset : offset + size]
    return icc[16:20], tags


def _read_xyz(tag: bytes) -> np.ndarray:
    if len(tag) < 20 or tag[:4] != b"XYZ ":
        raise ProfileError("bad XYZ tag")
    return np.array(struct.unpack_from(">3i", tag, 8)) / 65536


def _parametric(kind: int, p: tuple[float, ...], x: np.ndarray) -> np.ndarray:
    g, a, b, c, d, e, f = (*p, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)[:7]
    if kind == 0:
        return np.power(x, g)
    if kind == 1:
        return np.where(x >= -b / a, np.power(np.maximum(a * x + b, 0), g), 0.0)
    if kind == 2:
        return np.where(x >= -b / a, np.power(np.maximum(a * x + b, 0), g) + c, c)
    if kind == 3:
        return np.where(x >= d, np.power(np.maximum(a * x + b, 0), g), c * x)
    if kind == 4:
        return np.where(x >= d, np.power(np.maximum(a * x + b, 0), g) + e, c * x + f)
    raise ProfileError(f"unknown parametric curve type {kind}")


_PARAM_COUNTS = {0: 1, 1: 3, 2: 4, 3: 5, 4: 7}


def curve(tag: bytes, x: np.ndarray) -> np.ndarray:
    """Evaluate a 'curv' or 'para' tone curve at `x` in [0, 1]."""
    if tag[:4] == b"curv" and len(tag) >= 12:
        (n,) = struct.unpack_from(">I", tag, 8)
        if len(tag) < 12 + 2 * n:
            raise ProfileError("curve table runs past its tag")
        if n == 0:
            return x
        table = np.frombuffer(tag, ">u2", n, 12).astype(np.float64)
        if n == 1:
            return np.power(x, table[0] / 256)
        return np.interp(x * (n - 1), np.arange(n), table / 65535)
    if tag[:4] == b"para" and len(tag) >= 12:
        (kind,) = struct.unpack_from(">H", tag, 8)
        count = _PARAM_COUNTS.get(kind)
        if count is None or len(tag) < 12 + 4 * count:
            raise ProfileError("bad parametric curve")
        params = tuple(v / 65536 for v in struct.unpack_from(f">{count}i", tag, 12))
        return _parametric(kind, params, x)
    raise ProfileError("unknown curve type")


def colour_space(icc: bytes) -> str | None:
    """'srgb', 'p3' or None (convert): see the module docstring. A profile that cannot be read -> None."""
    try:
        space, tags = _tags(icc)
        if _LUT_TAGS & tags.keys():
            return None  # lookup tables take precedence over the matrix in a viewer: not a known shape
        x = np.linspace(0.0, 1.0, 256)
        srgb = srgb_decode(x)

        def same_curve(sig: bytes) -> bool:
            return sig in tags and float(np.max(np.abs(curve(tags[sig], x) - srgb))) <= CURVE_TOLERANCE

        if space == b"GRAY":
            return "srgb" if same_curve(b"kTRC") else None
        if space != b"RGB " or not all(same_curve(s) for s in (b"rTRC", b"gTRC", b"bTRC")):
            return None
        found = np.column_stack([_read_xyz(tags.get(s, b"")) for s in (b"rXYZ", b"gXYZ", b"bXYZ")])
    except (ProfileError, struct.error, ValueError, FloatingPointError):
        return None
    for name, primaries in (("srgb", SRGB_PRIMARIES), ("p3", P3_PRIMARIES)):
        if float(np.max(np.abs(found - colorants(primaries)))) <= COLORANT_TOLERANCE:
            return name
    return None


# -- converting a matrix/TRC profile's pixels to Display P3 (what LittleCMS does for these profiles, 5-10x faster) ----
P3_ENCODE_STEPS = 4096  # linear light quantised this finely before the tone curve: far below an 8-bit level


def matrix_trc(icc: bytes) -> tuple[np.ndarray, np.ndarray] | None:
    """(3x3 colorant matrix, 3x256 tone-curve table at the 8-bit levels) of an RGB matrix/TRC profile; None for
    any other shape (lookup tables, grey, CMYK, unreadable), which LittleCMS then converts."""
    try:
        space, tags = _tags(icc)
        if space != b"RGB " or _LUT_TAGS & tags.keys():
            return None
        x = np.linspace(0.0, 1.0, 256)
        curves = np.stack([np.clip(curve(tags[s], x), 0.0, 1.0) for s in (b"rTRC", b"gTRC", b"bTRC")])
        matrix = np.column_stack([_read_xyz(tags[s]) for s in (b"rXYZ", b"gXYZ", b"bXYZ")])
    except (KeyError, ProfileError, struct.error, ValueError, FloatingPointError):
        return None
    if not np.all(np.isfinite(curves)) or not np.all(np.isfinite(matrix)) or abs(np.linalg.det(matrix)) < 1e-6:
        return None
    return matrix, curves


@cache
def _p3_encode_table() -> np.ndarray:
    """Linear light (P3_ENCODE_STEPS steps) -> 8-bit P3 value through the sRGB tone curve P3 uses."""
    linear = np.linspace(0.0, 1.0, P3_ENCODE_STEPS)
    encoded = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * np.power(linear, 1 / 2.4) - 0.055)
    return np.round(np.clip(encoded, 0, 1) * 255).astype(np.uint8)


def to_p3(rgb: np.ndarray, profile: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """8-bit pixels (..., >= 3 channels; the first three converted) in the profile's space -> 8-bit Display P3
    RGB (relative colorimetric, clipped): tone curve to linear light, one 3x3 matrix, P3's tone curve back.
    One output channel at a time, as multiply-adds on whole arrays: ~25 ns a pixel."""
    matrix, curves = profile
    scale = np.float32(P3_ENCODE_STEPS - 1)
    to_p3_matrix = (np.linalg.inv(colorants(P3_PRIMARIES)) @ matrix).astype(np.float32) * scale
    tables = curves.astype(np.float32)
    linear = [np.take(tables[c], rgb[..., c]) for c in range(3)]
    encode = _p3_encode_table()
    out = np.empty((*rgb.shape[:-1], 3), np.uint8)
    for c in range(3):
        acc = linear[0] * to_p3_matrix[c, 0]
        acc += linear[1] * to_p3_matrix[c, 1]
        acc += linear[2] * to_p3_matrix[c, 2]
        np.clip(acc, 0, scale, out=acc)
        acc += 0.5
        out[..., c] = np.take(encode, acc.astype(np.uint16))
    return out


def png_gamma_is_srgb(gamma: float, chromaticities: tuple[float, ...] | None) -> bool:
    """gAMA 1/2.2 with sRGB's (or no) cHRM: what most PNG writers put beside sRGB data. Viewers render it within
    a level or two of sRGB, too little to hide anything in."""
    if abs(gamma - 1 / 2.2) > 0.01:
        return False
    if chromaticities is None:
        return True
    c = chromaticities
    expected = (0.3127, 0.3290, 0.64, 0.33, 0.30, 0.60, 0.15, 0.06)
    return all(abs(a - b) <= 0.01 for a, b in zip(c, expected, strict=True))
