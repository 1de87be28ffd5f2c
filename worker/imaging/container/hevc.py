"""HEVC: the picture size in a decoder configuration (hvcC), what libde265 allocates for. Pure bit reading."""

from __future__ import annotations

import re
import struct

from worker.errors import CorruptImage


def sps_size(hvcc: bytes | None) -> tuple[int, int]:
    """The picture size in the HEVC sequence parameter set of an hvcC box."""
    if hvcc is None or len(hvcc) < 23:
        raise CorruptImage("HEIF HEVC image has no decoder configuration (hvcC)")
    pos, arrays = 23, hvcc[22]
    for _ in range(arrays):
        nal_type = hvcc[pos] & 0x3F
        (count,) = struct.unpack_from(">H", hvcc, pos + 1)
        pos += 3
        for _ in range(count):
            (length,) = struct.unpack_from(">H", hvcc, pos)
            nal = hvcc[pos + 2 : pos + 2 + length]
            pos += 2 + length
            if nal_type == 33:
                return _sps_size(nal)
    raise CorruptImage("HEIF HEVC configuration has no sequence parameter set")


def _sps_size(nal: bytes) -> tuple[int, int]:
    bits = _Bits(re.sub(b"\x00\x00\x03", b"\x00\x00", nal[2:]))  # without the emulation prevention bytes
    bits.u(4)  # sps_video_parameter_set_id
    sub_layers = bits.u(3)
    bits.u(1)
    bits.u(96)  # general profile, tier and level
    present = [(bits.u(1), bits.u(1)) for _ in range(sub_layers)]
    if sub_layers:
        bits.u(2 * (8 - sub_layers))
    for profile, level in present:
        bits.u(88 * profile + 8 * level)
    bits.ue()  # sps_seq_parameter_set_id
    if bits.ue() == 3:  # chroma_format_idc 4:4:4: separate_colour_plane_flag
        bits.u(1)
    return bits.ue(), bits.ue()


class _Bits:
    """The start of an RBSP, read bit by bit (the picture size comes within its first 64 bytes)."""

    def __init__(self, rbsp: bytes) -> None:
        self.bits = "".join(f"{b:08b}" for b in rbsp[:64])
        self.pos = 0

    def u(self, n: int) -> int:
        """An n-bit unsigned integer."""
        if self.pos + n > len(self.bits):
            raise CorruptImage("HEVC sequence parameter set is truncated")
        value = int(self.bits[self.pos : self.pos + n], 2) if n else 0
        self.pos += n
        return value

    def ue(self) -> int:
        """An unsigned Exp-Golomb code."""
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise CorruptImage("HEVC sequence parameter set is malformed")
        return (1 << zeros) - 1 + self.u(zeros)
