"""Synthetic images, container surgery (JPEG segments, PNG chunks) and numpy-only measures.

Everything here is independent of the worker code: it is the reference the worker is checked against.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from PIL import Image as PILImage

# ---------------------------------------------------------------------------------------------------------------
# EXIF orientation, as documented (TIFF 6 / EXIF 2.32, tag 0x0112): how the *stored* pixels must be transformed to
# be displayed upright. 1 top-left (as stored), 2 mirrored, 3 rotated 180, 4 flipped vertically, 5 transposed,
# 6 rotated 90 clockwise, 7 transversed, 8 rotated 90 counter-clockwise.
# ---------------------------------------------------------------------------------------------------------------


def to_upright(stored: np.ndarray, orientation: int) -> np.ndarray:
    a = stored
    match orientation:
        case 1:
            return a.copy()
        case 2:
            return np.flip(a, axis=1).copy()
        case 3:
            return np.rot90(a, 2).copy()
        case 4:
            return np.flip(a, axis=0).copy()
        case 5:
            return np.swapaxes(a, 0, 1).copy()
        case 6:
            return np.rot90(a, -1).copy()  # np.rot90 with k=-1 turns clockwise
        case 7:
            return np.swapaxes(np.rot90(a, 2), 0, 1).copy()
        case 8:
            return np.rot90(a, 1).copy()
    raise ValueError(orientation)


def to_stored(upright: np.ndarray, orientation: int) -> np.ndarray:
    """The inverse: the pixels a camera would store for this upright picture and this Orientation tag."""
    inverse = {6: 8, 8: 6}.get(orientation, orientation)  # the others are their own inverse
    return to_upright(upright, inverse)


# ---------------------------------------------------------------------------------------------------------------
# Synthetic pictures
# ---------------------------------------------------------------------------------------------------------------


def smooth_rgb(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A smooth colourful gradient with a little texture: compresses well, JPEG noise stays small."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    rng = np.random.default_rng(seed)
    r = 40 + 160 * xx / max(width - 1, 1)
    g = 40 + 160 * yy / max(height - 1, 1)
    b = 128 + 60 * np.sin(xx / 9.0) * np.cos(yy / 7.0)
    img = np.stack([r, g, b], axis=-1) + rng.normal(0, 2, (height, width, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def textured_rgb(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Blocky noise (4 px blocks): lots of detail for a redaction to destroy, still JPEG-friendly enough."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (-(-height // 4), -(-width // 4), 3), dtype=np.uint8)
    return np.repeat(np.repeat(small, 4, axis=0), 4, axis=1)[:height, :width].copy()


def with_markers(img: np.ndarray) -> np.ndarray:
    """Asymmetric markers: red square near the top-left, blue bar along the top right, green dot bottom-left.

    No rotation or mirror of the picture maps it onto itself, so every wrong orientation is visible.
    """
    out = img.copy()
    h, w = out.shape[:2]
    out[h // 10 : h // 10 + h // 5, w // 10 : w // 10 + h // 5] = (230, 20, 20)
    out[h // 12 : h // 12 + h // 12, w // 2 : w - w // 12] = (20, 20, 230)
    out[h - h // 4 : h - h // 8, w // 8 : w // 8 + h // 8] = (20, 220, 20)
    return out


def marker_centre(img: np.ndarray, colour: Sequence[int], tolerance: int = 60) -> tuple[float, float]:
    """(x, y) centre of the pixels close to `colour` (L-inf distance)."""
    d = np.abs(img.astype(np.int16) - np.asarray(colour, np.int16)).max(axis=-1)
    ys, xs = np.nonzero(d < tolerance)
    if xs.size == 0:
        raise AssertionError(f"no {tuple(colour)} marker in the image")
    return float(xs.mean()), float(ys.mean())


# ---------------------------------------------------------------------------------------------------------------
# Encoders (Pillow) and readers
# ---------------------------------------------------------------------------------------------------------------


def jpeg_bytes(arr: np.ndarray, quality: int = 95, subsampling: int = 0, **params: Any) -> bytes:
    """subsampling: 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0 (Pillow's numbering)."""
    buf = io.BytesIO()
    mode = params.pop("mode", None)
    im = PILImage.fromarray(arr)
    if mode:
        im = im.convert(mode)
    im.save(buf, "JPEG", quality=quality, subsampling=subsampling, **params)
    return buf.getvalue()


def png_bytes(arr: np.ndarray, **params: Any) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(arr).save(buf, "PNG", **params)
    return buf.getvalue()


def pil_array(data: bytes, mode: str | None = "RGB") -> np.ndarray:
    """Decode with Pillow (an independent decoder); the array is as stored (no EXIF transpose)."""
    with PILImage.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert(mode) if mode else im).copy()


# ---------------------------------------------------------------------------------------------------------------
# JPEG segments
# ---------------------------------------------------------------------------------------------------------------

SOI, SOS, EOI, COM, APP1, APP2, APP13 = 0xD8, 0xDA, 0xD9, 0xFE, 0xE1, 0xE2, 0xED


def jpeg_segments(data: bytes) -> list[tuple[int, bytes]]:
    """(marker, payload) of every segment from SOI up to and including SOS (the header part)."""
    assert data[:2] == b"\xff\xd8", "not a JPEG"
    out: list[tuple[int, bytes]] = []
    i = 2
    while i < len(data):
        assert data[i] == 0xFF, f"bad marker at {i}"
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        out.append((marker, data[i + 4 : i + 2 + length]))
        i += 2 + length
        if marker == SOS:
            break
    return out


def segment(marker: int, payload: bytes) -> bytes:
    assert len(payload) + 2 <= 0xFFFF
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def insert_segments(jpeg: bytes, segments: Iterable[bytes]) -> bytes:
    """Put extra segments right after SOI (where cameras put APP1 EXIF)."""
    return jpeg[:2] + b"".join(segments) + jpeg[2:]


def icc_from_segments(segments: list[tuple[int, bytes]]) -> bytes | None:
    """Reassemble an ICC profile from its APP2 'ICC_PROFILE' chunks."""
    parts = [(p[12], p[14:]) for m, p in segments if m == APP2 and p.startswith(b"ICC_PROFILE\0")]
    if not parts:
        return None
    return b"".join(chunk for _, chunk in sorted(parts))


def xmp_segment(text: str) -> bytes:
    packet = (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">'
        f"<dc:creator><rdf:Seq><rdf:li>{text}</rdf:li></rdf:Seq></dc:creator>"
        '</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
    )
    return segment(APP1, b"http://ns.adobe.com/xap/1.0/\0" + packet.encode("utf-8"))


def iptc_segment(caption: bytes) -> bytes:
    """APP13 Photoshop 3.0 resource block 0x0404 holding IPTC-IIM datasets 2:0 (version) and 2:120 (caption)."""
    iim = b"\x1c\x02\x00" + struct.pack(">H", 2) + b"\x00\x04"
    iim += b"\x1c\x02\x78" + struct.pack(">H", len(caption)) + caption
    block = b"8BIM" + struct.pack(">H", 0x0404) + b"\x00\x00" + struct.pack(">I", len(iim)) + iim
    block += b"\0" * (len(iim) % 2)
    return segment(APP13, b"Photoshop 3.0\0" + block)


def exif_segment(tiff: bytes) -> bytes:
    return segment(APP1, b"Exif\0\0" + tiff)


# ---------------------------------------------------------------------------------------------------------------
# PNG chunks
# ---------------------------------------------------------------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def ihdr(width: int, height: int, bit_depth: int = 8, colour_type: int = 2) -> bytes:
    return png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0))


def png_from_chunks(*chunks: bytes) -> bytes:
    return PNG_SIGNATURE + b"".join(chunks) + png_chunk(b"IEND", b"")


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, data) of every chunk; checks each CRC."""
    assert data[:8] == PNG_SIGNATURE, "not a PNG"
    out, i = [], 8
    while i < len(data):
        (n,) = struct.unpack(">I", data[i : i + 4])
        kind, body = data[i + 4 : i + 8], data[i + 8 : i + 8 + n]
        (crc,) = struct.unpack(">I", data[i + 8 + n : i + 12 + n])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, f"bad CRC in {kind!r}"
        out.append((kind, body))
        i += 12 + n
    return out


def png_ihdr(data: bytes) -> tuple[int, int, int, int]:
    """(width, height, bit depth, colour type) straight from the IHDR chunk."""
    kind, body = png_chunks(data)[0]
    assert kind == b"IHDR"
    w, h, depth, colour = struct.unpack(">IIBB", body[:10])
    return w, h, depth, colour


def png_rgb16(arr: np.ndarray) -> bytes:
    """A 16-bit RGB PNG (colour type 2, depth 16), which Pillow cannot write."""
    h, w, _ = arr.shape
    rows = arr.astype(">u2").reshape(h, w * 3).view(np.uint8).reshape(h, w * 6)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1).tobytes()
    return png_from_chunks(ihdr(w, h, 16, 2), png_chunk(b"IDAT", zlib.compress(raw, 6)))


def png_rgb16_decode(data: bytes) -> np.ndarray:
    """Decode a non-interlaced 16-bit RGB/RGBA PNG with filters 0..4 (numpy reference decoder)."""
    w, h, depth, colour = png_ihdr(data)
    assert depth == 16, depth
    assert colour in (2, 6), colour
    channels = 3 if colour == 2 else 4
    raw = zlib.decompress(b"".join(body for kind, body in png_chunks(data) if kind == b"IDAT"))
    stride, bpp = w * channels * 2, channels * 2
    rows = np.frombuffer(raw, np.uint8).reshape(h, stride + 1)
    out = np.zeros((h, stride), np.int32)
    prev = np.zeros(stride, np.int32)
    for y in range(h):
        ftype, line = rows[y, 0], rows[y, 1:].astype(np.int32)
        cur = np.zeros(stride, np.int32)
        for x in range(stride):
            a = cur[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if ftype == 0:
                pred = 0
            elif ftype == 1:
                pred = a
            elif ftype == 2:
                pred = b
            elif ftype == 3:
                pred = (a + b) // 2
            else:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            cur[x] = (line[x] + pred) & 0xFF
        out[y], prev = cur, cur
    return out.astype(np.uint8).reshape(h, w * channels, 2).view(">u2")[..., 0].reshape(h, w, channels)


def png_bomb(width: int, height: int, rows_per_block: int = 256) -> bytes:
    """A real decompression bomb: 8-bit greyscale, every scanline zero, deflated at ~1000:1.

    Deflating 121 MB of zeros takes seconds; instead one block of rows is deflated after a full flush (which
    resets the compressor, so every later identical block deflates to identical bytes) and repeated, and the
    zlib trailer (Adler-32 of all the data) is recomputed.
    """
    row = bytes(width + 1)  # filter byte 0 + zero pixels
    block = row * rows_per_block
    blocks, rest = divmod(height, rows_per_block)
    assert blocks >= 2
    comp = zlib.compressobj(9)
    first = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)  # starts with the 2-byte zlib header
    repeat = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)
    tail = comp.compress(row * rest) + comp.flush()
    adler = 1
    for _ in range(blocks):
        adler = zlib.adler32(block, adler)
    adler = zlib.adler32(row * rest, adler)
    stream = first + repeat * (blocks - 1) + tail[:-4] + struct.pack(">I", adler)
    return png_from_chunks(ihdr(width, height, 8, 0), png_chunk(b"IDAT", stream))


# ---------------------------------------------------------------------------------------------------------------
# Measures
# ---------------------------------------------------------------------------------------------------------------


def luma(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.float64)
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


def gaussian_blur(gray: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian, edges reflected."""
    radius = max(1, int(3 * sigma + 0.5))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    k /= k.sum()
    padded = np.pad(gray.astype(np.float64), radius, mode="reflect")
    rows = np.apply_along_axis(lambda r: np.convolve(r, k, mode="valid"), 1, padded)
    return np.apply_along_axis(lambda c: np.convolve(c, k, mode="valid"), 0, rows)


def highpass(gray: np.ndarray, sigma: float) -> np.ndarray:
    return gray.astype(np.float64) - gaussian_blur(gray, sigma)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else 0.0


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())
