"""ICC v2 profiles built for tests, independently of the worker's own v4 writer: 'curv' tables (not parametric
curves), textDescription tags, D65 media white. LittleCMS (Pillow's ImageCms) reads them like any camera's."""

from __future__ import annotations

import struct

import numpy as np

_D50 = np.array([0.9642, 1.0, 0.8249])
_BRADFORD = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])
P3 = ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060))
ADOBE_RGB = ((0.64, 0.33), (0.21, 0.71), (0.15, 0.06))
D65 = (0.3127, 0.3290)


def d50_colorants(primaries, white=D65) -> np.ndarray:
    xyz = lambda x, y: np.array([x / y, 1.0, (1 - x - y) / y])  # noqa: E731
    rgb = np.column_stack([xyz(*p) for p in primaries])
    w = xyz(*white)
    m = rgb * np.linalg.solve(rgb, w)
    cone = np.diag((_BRADFORD @ _D50) / (_BRADFORD @ w))
    return np.linalg.inv(_BRADFORD) @ cone @ _BRADFORD @ m


def srgb_table(n: int = 1024) -> np.ndarray:
    x = np.linspace(0, 1, n)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def curv(values: np.ndarray | float) -> bytes:
    """A 'curv' tag: a table of 16-bit values, or a single gamma (u8.8)."""
    if np.isscalar(values):
        return b"curv\0\0\0\0" + struct.pack(">IH", 1, round(float(values) * 256)) + b"\0\0"
    table = np.round(np.clip(values, 0, 1) * 65535).astype(">u2")
    return b"curv\0\0\0\0" + struct.pack(">I", len(table)) + table.tobytes()


def _xyz(v) -> bytes:
    return b"XYZ \0\0\0\0" + b"".join(struct.pack(">i", round(float(c) * 65536)) for c in v)


def _desc(text: str) -> bytes:
    ascii_ = text.encode() + b"\0"
    return b"desc\0\0\0\0" + struct.pack(">I", len(ascii_)) + ascii_ + b"\0" * 12 + b"\0" * 67


def rgb_profile(description: str, primaries, trc: bytes, extra: list[tuple[bytes, bytes]] = ()) -> bytes:
    """A v2 RGB display profile with the given primaries, one TRC for all channels and optional extra tags."""
    m = d50_colorants(primaries)
    w = np.array([D65[0] / D65[1], 1.0, (1 - sum(D65)) / D65[1]])
    tags = [
        (b"desc", _desc(description)),
        (b"wtpt", _xyz(w)),
        (b"rXYZ", _xyz(m[:, 0])),
        (b"gXYZ", _xyz(m[:, 1])),
        (b"bXYZ", _xyz(m[:, 2])),
        (b"rTRC", trc),
        (b"gTRC", trc),
        (b"bTRC", trc),
        *extra,
    ]
    offset = 132 + 12 * len(tags)
    table, data = b"", b""
    for sig, body in tags:
        table += struct.pack(">4sII", sig, offset + len(data), len(body))
        data += body + b"\0" * (-len(body) % 4)
    size = offset + len(data)
    header = struct.pack(">I4sI4s4s4s12s4s", size, b"lcms", 0x02100000, b"mntr", b"RGB ", b"XYZ ", b"\0" * 12, b"acsp")
    header += b"\0" * (68 - len(header)) + _xyz(_D50)[8:] + b"\0" * 48
    return header + struct.pack(">I", len(tags)) + table + data


def display_p3() -> bytes:
    return rgb_profile("Display P3", P3, curv(srgb_table()))


def adobe_rgb() -> bytes:
    return rgb_profile("Adobe RGB (1998)", ADOBE_RGB, curv(563 / 256))
