"""The attacker's side: hostile inputs built at test time, and the parsers that look inside the worker's outputs.

Generators (`*_bomb`, `*_hidden`, ...) return file bytes; nothing here is committed as a binary. Faces come from
scikit-image's bundled astronaut.png (public domain). Extractors and parsers (PNG chunks, JPEG markers over the
whole file, RIFF chunks, ICC tags, a bounded streaming inflate) are what the self-tests use to prove each input
carries what it claims, and what the outcome tests use to prove the output does not.

Independent of the worker code: only numpy, Pillow (incl. ImageCms) and the other test helpers.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from PIL import ImageCms

from helpers import exif as xf
from helpers.images import (
    APP2,
    COM,
    correlation,
    highpass,
    ihdr,
    insert_segments,
    iptc_segment,
    jpeg_bytes,
    luma,
    png_bytes,
    png_chunk,
    png_chunks,
    png_from_chunks,
    png_rgb16,
    segment,
    xmp_segment,
)

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
MAX_METADATA_BYTES = 8 * MIB  # the worker's limit on metadata per file (inflated size for compressed chunks)

# The astronaut's face in astronaut.png (512x512), (x0, y0, x1, y1): the real detector's box, rounded outwards.
ASTRONAUT_FACE = (179, 61, 272, 179)


def astronaut() -> np.ndarray:
    import skimage.data

    path = Path(skimage.data.__file__).resolve().parent / "astronaut.png"
    with PILImage.open(path) as im:
        return np.asarray(im.convert("RGB")).copy()


def face_detail(reference: np.ndarray, candidate: np.ndarray, box: Sequence[int] = ASTRONAUT_FACE) -> float:
    """Correlation of fine detail (high-pass at sigma = box width / 16) between two images (grey or RGB) inside
    box: ~1 the detail is there (sign matters: -1 is a negative of it), ~0 it is gone."""
    x0, y0, x1, y1 = box
    grey = [luma(a) if a.ndim == 3 else a.astype(np.float64) for a in (reference, candidate)]
    # A margin keeps the blur's reflected edges out of the box.
    m = int((x1 - x0) / 16 * 3) + 2
    h, w = grey[0].shape
    ox0, oy0, ox1, oy1 = max(0, x0 - m), max(0, y0 - m), min(w, x1 + m), min(h, y1 + m)
    sigma = (x1 - x0) / 16
    a, b = (highpass(g[oy0:oy1, ox0:ox1], sigma)[y0 - oy0 : y1 - oy0, x0 - ox0 : x1 - ox0] for g in grey)
    return correlation(a, b)


# ---------------------------------------------------------------------------------------------------------------
# Bounded zlib: build streams that inflate to gigabytes in ~1 s, and measure them without allocating them
# ---------------------------------------------------------------------------------------------------------------


def deflate_repeated(total: int, fill: bytes = b"\0", prefix: bytes = b"", block: int = MIB) -> bytes:
    """A zlib stream inflating to `prefix` followed by `fill` (one byte) up to `total` bytes.

    One block is deflated after a full flush (which resets the compressor, so each identical block deflates to
    identical bytes) and repeated; the Adler-32 trailer is computed over the whole virtual content."""
    assert len(fill) == 1
    body = total - len(prefix)
    blocks, rest = divmod(body, block)
    comp = zlib.compressobj(9)
    head = comp.compress(prefix) + comp.flush(zlib.Z_FULL_FLUSH)
    chunk = fill * block
    repeat = comp.compress(chunk) + comp.flush(zlib.Z_FULL_FLUSH)
    assert comp.compress(chunk) + comp.flush(zlib.Z_FULL_FLUSH) == repeat
    tail = comp.compress(fill * rest) + comp.flush()
    adler = zlib.adler32(prefix)
    for _ in range(blocks):
        adler = zlib.adler32(chunk, adler)
    adler = zlib.adler32(fill * rest, adler)
    return head + repeat * blocks + tail[:-4] + struct.pack(">I", adler)


def inflated_size(stream: bytes, limit: int = 2 * GIB, step: int = MIB) -> tuple[int, bytes]:
    """(inflated size, first KiB) of a zlib stream, inflating at most `step` bytes at a time and giving up at
    `limit`. Raises zlib.error on a corrupt stream (bad trailer included)."""
    d = zlib.decompressobj()
    total, head, data = 0, b"", stream
    while True:
        out = d.decompress(data, step)
        data = d.unconsumed_tail
        if len(head) < KIB:
            head += out[: KIB - len(head)]
        total += len(out)
        assert total <= limit, f"inflates past {limit} bytes"
        if d.eof:
            return total, head
        if not out and not data:
            out = d.flush()
            total += len(out)
            assert d.eof, "truncated zlib stream"
            return total, head


# ---------------------------------------------------------------------------------------------------------------
# Containers: PNG chunks (images.png_chunks), JPEG markers over the whole file, RIFF chunks
# ---------------------------------------------------------------------------------------------------------------


def png_insert(png: bytes, *chunks: bytes) -> bytes:
    """Put chunks right after IHDR (before any IDAT)."""
    at = 8 + 8 + 13 + 4
    assert png[12:16] == b"IHDR"
    return png[:at] + b"".join(chunks) + png[at:]


def png_types(data: bytes) -> list[bytes]:
    return [kind for kind, _ in png_chunks(data)]


@dataclass(frozen=True)
class Marker:
    offset: int
    marker: int  # the byte after 0xFF
    payload: bytes  # segment payload (after the length), b"" for standalone markers
    end: int  # first byte after the segment and, for SOS, after its entropy-coded data


RST = range(0xD0, 0xD8)
SOF_MARKERS = (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF)
SOS, EOI, DRI, SOI = 0xDA, 0xD9, 0xDD, 0xD8


def jpeg_markers(data: bytes) -> tuple[list[Marker], bytes]:
    """Every marker from SOI to the first EOI (restart markers inside scans listed too), and what follows EOI."""
    assert data[:2] == b"\xff\xd8", "not a JPEG"
    out = [Marker(0, SOI, b"", 2)]
    i = 2
    while i < len(data):
        assert data[i] == 0xFF, f"bad marker at {i}"
        m = data[i + 1]
        if m == 0xFF:
            i += 1
            continue
        if m == EOI:
            out.append(Marker(i, m, b"", i + 2))
            return out, data[i + 2 :]
        if m in RST or m == 0x01:
            out.append(Marker(i, m, b"", i + 2))
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        end = i + 2 + length
        if m == SOS:  # entropy-coded data runs to the next marker that is not a stuffed 0xFF00 or a restart
            j, restarts = end, []
            while True:
                j = data.index(b"\xff", j)
                if data[j + 1] == 0:
                    j += 2
                elif data[j + 1] == 0xFF:
                    j += 1
                elif data[j + 1] in RST:
                    restarts.append(Marker(j, data[j + 1], b"", j + 2))
                    j += 2
                else:
                    break
            out.append(Marker(i, m, data[i + 4 : end], j))
            out.extend(restarts)
            i = j
            continue
        out.append(Marker(i, m, data[i + 4 : end], end))
        i = end
    raise AssertionError("no EOI")


def jpeg_metadata_bytes(data: bytes) -> int:
    markers, _ = jpeg_markers(data)
    return sum(len(s.payload) for s in markers if 0xE0 <= s.marker <= 0xEF or s.marker == COM)


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the SOF segment."""
    sof = next(s for s in jpeg_markers(data)[0] if s.marker in SOF_MARKERS)
    h, w = struct.unpack(">HH", sof.payload[1:5])
    return w, h


def riff_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(fourcc, payload) of every top-level chunk of a RIFF/WEBP file."""
    assert data[:4] == b"RIFF", "not a RIFF file"
    assert data[8:12] == b"WEBP", "not a WebP"
    (size,) = struct.unpack("<I", data[4:8])
    assert size + 8 == len(data), f"RIFF size {size + 8} != file size {len(data)}"
    out, i = [], 12
    while i < len(data):
        kind = data[i : i + 4]
        (n,) = struct.unpack("<I", data[i + 4 : i + 8])
        out.append((kind, data[i + 8 : i + 8 + n]))
        i += 8 + n + (n & 1)
    return out


def riff_chunk(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack("<I", len(payload)) + payload + b"\0" * (len(payload) & 1)


def webp_from_chunks(*chunks: bytes) -> bytes:
    body = b"WEBP" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


VP8X_ICC, VP8X_ALPHA, VP8X_EXIF, VP8X_XMP, VP8X_ANIM = 0x20, 0x10, 0x08, 0x04, 0x02


def vp8x(width: int, height: int, flags: int) -> bytes:
    w, h = width - 1, height - 1
    return riff_chunk(b"VP8X", bytes([flags, 0, 0, 0]) + w.to_bytes(3, "little") + h.to_bytes(3, "little"))


def webp_bytes(arr: np.ndarray, quality: int = 90, **params) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(arr).save(buf, "WEBP", quality=quality, **params)
    return buf.getvalue()


def webp_extended(simple: bytes, *extra: tuple[bytes, bytes], canvas: tuple[int, int] | None = None) -> bytes:
    """A simple (VP8/VP8L) WebP rewritten as extended (VP8X) with extra chunks after the image data; VP8X flags
    follow the extra chunks. `canvas` overrides the declared canvas size."""
    chunks = riff_chunks(simple)
    assert len(chunks) == 1, [k for k, _ in chunks]
    assert chunks[0][0] in (b"VP8 ", b"VP8L"), chunks[0][0]
    with PILImage.open(io.BytesIO(simple)) as im:
        size = im.size
    flags = 0
    for kind, _ in extra:
        flags |= {b"EXIF": VP8X_EXIF, b"XMP ": VP8X_XMP}.get(kind, 0)
    w, h = canvas or size
    return webp_from_chunks(vp8x(w, h, flags), riff_chunk(*chunks[0]), *(riff_chunk(k, p) for k, p in extra))


# ---------------------------------------------------------------------------------------------------------------
# ICC profiles: a small v2 writer (header, tag table, XYZ / curv / para / desc / text tags) and a tag reader
# ---------------------------------------------------------------------------------------------------------------

D50 = (0.9642, 1.0, 0.8249)
SRGB_PRIMARIES = ((0.640, 0.330), (0.300, 0.600), (0.150, 0.060))
P3_PRIMARIES = ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060))
D65_XY = (0.3127, 0.3290)
SRGB_PARA = (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045)  # parametricCurveType function 3


def s15f16(v: float) -> bytes:
    return struct.pack(">i", round(v * 65536))


def xyz_tag(xyz: Sequence[float]) -> bytes:
    return b"XYZ \0\0\0\0" + b"".join(s15f16(v) for v in xyz)


def curv_tag(table: Sequence[int] | None = None, gamma: float | None = None) -> bytes:
    if gamma is not None:
        return b"curv\0\0\0\0" + struct.pack(">IH", 1, round(gamma * 256)) + b"\0\0"
    assert table is not None
    body = b"curv\0\0\0\0" + struct.pack(">I", len(table)) + struct.pack(f">{len(table)}H", *table)
    return body + b"\0" * (-len(body) % 4)


def para_tag(params: Sequence[float] = SRGB_PARA) -> bytes:
    assert len(params) == 5
    return b"para\0\0\0\0" + struct.pack(">HH", 3, 0) + b"".join(s15f16(v) for v in params)


def desc_tag(text: str) -> bytes:
    """textDescriptionType (ICC v2): ASCII, empty Unicode and ScriptCode parts."""
    ascii_ = text.encode("ascii") + b"\0"
    body = b"desc\0\0\0\0" + struct.pack(">I", len(ascii_)) + ascii_ + struct.pack(">II", 0, 0) + b"\0" * 70
    return body + b"\0" * (-len(body) % 4)


def text_tag(text: str) -> bytes:
    body = b"text\0\0\0\0" + text.encode("ascii") + b"\0"
    return body + b"\0" * (-len(body) % 4)


def icc_profile(tags: dict[bytes, bytes], colour_class: bytes = b"mntr") -> bytes:
    """An ICC v2.1 RGB/XYZ profile from {signature: tag data}."""
    table, data = b"", b""
    at = 128 + 4 + 12 * len(tags)
    for sig, tag in tags.items():
        table += sig + struct.pack(">II", at + len(data), len(tag))
        data += tag + b"\0" * (-len(tag) % 4)
    size = at + len(data)
    header = struct.pack(">I", size) + b"lcms" + struct.pack(">I", 0x02100000) + colour_class + b"RGB XYZ "
    header += struct.pack(">6H", 2026, 1, 1, 0, 0, 0) + b"acsp" + b"APPL" + b"\0" * 4
    header += b"\0" * 4 + b"\0" * 4 + b"\0" * 8 + struct.pack(">I", 0)  # manufacturer, model, attributes, intent
    header += b"".join(s15f16(v) for v in D50) + b"\0" * 4 + b"\0" * 16 + b"\0" * 28
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + data


def colorants(primaries: Sequence[Sequence[float]], white: Sequence[float] = D65_XY) -> np.ndarray:
    """3x3, columns = XYZ of the red, green and blue colorants, Bradford-adapted to the D50 PCS (as in ICC)."""

    def xyz(xy: Sequence[float]) -> np.ndarray:
        x, y = xy
        return np.array([x / y, 1.0, (1 - x - y) / y])

    p = np.stack([xyz(xy) for xy in primaries], axis=1)
    w = xyz(white)
    m = p * np.linalg.solve(p, w)
    bradford = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])
    src, dst = bradford @ w, bradford @ np.array(D50)
    adapt = np.linalg.inv(bradford) @ np.diag(dst / src) @ bradford
    return adapt @ m


def rgb_profile(
    description: str,
    primaries: Sequence[Sequence[float]] = SRGB_PRIMARIES,
    trc: bytes | Sequence[bytes] | None = None,
    extra: dict[bytes, bytes] | None = None,
) -> bytes:
    """A matrix/TRC display profile; trc defaults to the sRGB curve (para function 3), one tag for all three
    channels or one per channel."""
    trc = trc if trc is not None else para_tag()
    trcs = [trc] * 3 if isinstance(trc, bytes) else list(trc)
    m = colorants(primaries)
    tags = {b"desc": desc_tag(description), b"cprt": text_tag("No copyright, test profile"), b"wtpt": xyz_tag(D50)}
    tags.update({sig: xyz_tag(m[:, i]) for i, sig in enumerate((b"rXYZ", b"gXYZ", b"bXYZ"))})
    tags.update(zip((b"rTRC", b"gTRC", b"bTRC"), trcs, strict=True))
    tags.update(extra or {})
    return icc_profile(tags)


def icc_tags(profile: bytes) -> dict[bytes, bytes]:
    (n,) = struct.unpack(">I", profile[128:132])
    out = {}
    for k in range(n):
        sig, off, size = struct.unpack(">4sII", profile[132 + 12 * k : 144 + 12 * k])
        out[sig] = profile[off : off + size]
    return out


def icc_xyz(profile: bytes, sig: bytes) -> np.ndarray:
    tag = icc_tags(profile)[sig]
    assert tag[:4] == b"XYZ ", tag[:4]
    return np.array(struct.unpack(">3i", tag[8:20])) / 65536


def icc_description(profile: bytes) -> str:
    return ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(profile))).strip()


def embedded_icc(data: bytes) -> bytes | None:
    """The ICC profile of a JPEG / PNG / WebP as Pillow reads it (APP2 chunks reassembled, iCCP inflated)."""
    with PILImage.open(io.BytesIO(data)) as im:
        return im.info.get("icc_profile") or None


SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def rendered_srgb(data: bytes) -> np.ndarray:
    """What a colour-managed viewer shows: the pixels through their embedded profile into sRGB (as sRGB if none)."""
    with PILImage.open(io.BytesIO(data)) as im:
        icc = im.info.get("icc_profile")
        rgb = im.convert("RGB")
    if icc:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        rgb = ImageCms.profileToProfile(rgb, source, SRGB, outputMode="RGB")
    return np.asarray(rgb).copy()


def srgb_to_linear(v: np.ndarray) -> np.ndarray:
    c = np.asarray(v, np.float64) / 255
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


# ---------------------------------------------------------------------------------------------------------------
# Refused inputs: metadata bombs, oversize headers, too complex, animations
# ---------------------------------------------------------------------------------------------------------------


def small_png() -> bytes:
    from helpers.images import smooth_rgb

    return png_bytes(smooth_rgb(64, 48))


def small_jpeg(**params) -> bytes:
    from helpers.images import smooth_rgb

    return jpeg_bytes(smooth_rgb(64, 48), quality=90, **params)


def ztxt_chunk(keyword: bytes, stream: bytes) -> bytes:
    return png_chunk(b"zTXt", keyword + b"\0\0" + stream)


def itxt_compressed_chunk(keyword: bytes, stream: bytes) -> bytes:
    return png_chunk(b"iTXt", keyword + b"\0" + b"\1\0" + b"en\0" + b"\0" + stream)


def iccp_chunk(stream: bytes, name: bytes = b"ICC profile") -> bytes:
    return png_chunk(b"iCCP", name + b"\0\0" + stream)


ZTXT_BOMB_SIZE = GIB
ICCP_BOMB_SIZE = 64 * MIB


def png_ztxt_bomb() -> bytes:
    return png_insert(small_png(), ztxt_chunk(b"Comment", deflate_repeated(ZTXT_BOMB_SIZE, b"A")))


def png_itxt_bomb() -> bytes:
    return png_insert(small_png(), itxt_compressed_chunk(b"Description", deflate_repeated(ZTXT_BOMB_SIZE, b"A")))


RAW_PROFILE_KEYWORD = b"Raw profile type exif"


def raw_profile_prefix(total: int) -> bytes:
    """ImageMagick's raw-profile text: newline, name, newline, decimal length, newline, then hex digits."""
    header = b"\nexif\n"
    guess = header + b"%8d\n" % 0
    return header + b"%8d\n" % ((total - len(guess)) // 2)


def png_raw_profile_bomb() -> bytes:
    stream = deflate_repeated(ZTXT_BOMB_SIZE, b"0", prefix=raw_profile_prefix(ZTXT_BOMB_SIZE))
    return png_insert(small_png(), ztxt_chunk(RAW_PROFILE_KEYWORD, stream))


def iccp_bomb_prefix(total: int) -> bytes:
    """A plausible 128-byte ICC header declaring the whole inflated size; zeros follow."""
    header = struct.pack(">I", total) + b"lcms" + struct.pack(">I", 0x02100000) + b"mntrRGB XYZ "
    header += b"\0" * 12 + b"acsp"
    return header + b"\0" * (128 - len(header))


def png_iccp_bomb() -> bytes:
    stream = deflate_repeated(ICCP_BOMB_SIZE, b"\0", prefix=iccp_bomb_prefix(ICCP_BOMB_SIZE))
    return png_insert(small_png(), iccp_chunk(stream))


COM_FLOOD = (160, 65_000)


def jpeg_com_flood() -> bytes:
    count, size = COM_FLOOD
    rng = np.random.default_rng(1)
    payload = bytes(rng.integers(32, 127, size, dtype=np.uint8))  # incompressible printable text
    return insert_segments(small_jpeg(), [segment(COM, payload)] * count)


def jpeg_appn_flood() -> bytes:
    """The same total as the COM flood, spread over APP3..APP15 segments that no decoder interprets."""
    count, size = COM_FLOOD
    rng = np.random.default_rng(2)
    payload = bytes(rng.integers(0, 256, size, dtype=np.uint8))
    return insert_segments(small_jpeg(), [segment(0xE3 + k % 13, payload) for k in range(count)])


WEBP_METADATA_SIZE = 9 * MIB


def webp_exif_bomb() -> bytes:
    tiff = xf.orientation_only(1)
    return webp_extended(webp_bytes(astronaut()[:64, :64]), (b"EXIF", tiff + b"\0" * (WEBP_METADATA_SIZE - len(tiff))))


def webp_unknown_chunk_bomb() -> bytes:
    return webp_extended(webp_bytes(astronaut()[:64, :64]), (b"ZZZZ", b"\0" * WEBP_METADATA_SIZE))


def png_huge_ihdr(width: int = 100_000, height: int = 100_000) -> bytes:
    """IHDR declares width x height; the IDAT holds one (compressed) row only."""
    stream = zlib.compress(bytes(1 + width), 9)
    return png_from_chunks(ihdr(width, height, 8, 0), png_chunk(b"IDAT", stream))


def jpeg_patch_sof(data: bytes, width: int, height: int) -> bytes:
    sof = next(s for s in jpeg_markers(data)[0] if s.marker in SOF_MARKERS)
    at = sof.offset + 4 + 1  # after marker, length and precision
    return data[:at] + struct.pack(">HH", height, width) + data[at + 4 :]


def jpeg_huge_sof() -> bytes:
    return jpeg_patch_sof(small_jpeg(), 65_000, 65_000)


def webp_huge_canvas() -> bytes:
    return webp_extended(webp_bytes(astronaut()[:64, :64]), canvas=(16_383, 16_383))


PROGRESSIVE_SCANS = 200


def jpeg_many_scans(scans: int = PROGRESSIVE_SCANS) -> bytes:
    """A progressive JPEG whose last (refinement) scan is repeated until there are `scans` SOS markers."""
    data = small_jpeg(progressive=True)
    markers, _ = jpeg_markers(data)
    sos = [s for s in markers if s.marker == SOS]
    last, eoi = sos[-1], markers[-1]
    assert eoi.marker == EOI
    extra = data[last.offset : last.end] * (scans - len(sos))
    return data[: eoi.offset] + extra + data[eoi.offset :]


def sos_count(data: bytes) -> int:
    return sum(1 for s in jpeg_markers(data)[0] if s.marker == SOS)


def decoy() -> np.ndarray:
    """A faceless stand-in the size of the astronaut."""
    from helpers.images import smooth_rgb

    return smooth_rgb(512, 512, seed=3)


def apng_second_frame_face() -> bytes:
    """APNG: the default image (frame 1) is faceless, frame 2 is the astronaut."""
    buf = io.BytesIO()
    frames = [PILImage.fromarray(decoy()), PILImage.fromarray(astronaut())]
    frames[0].save(buf, "PNG", save_all=True, append_images=frames[1:], duration=500, loop=0)
    return buf.getvalue()


def webp_animated() -> bytes:
    buf = io.BytesIO()
    frames = [PILImage.fromarray(decoy()), PILImage.fromarray(astronaut())]
    frames[0].save(buf, "WEBP", save_all=True, append_images=frames[1:], duration=500, loop=0, quality=90)
    return buf.getvalue()


# name -> (generator, the worker's expected refusal reason)
REFUSALS: dict[str, tuple[object, str]] = {
    "png_ztxt_bomb": (png_ztxt_bomb, "metadata_too_large"),
    "png_itxt_bomb": (png_itxt_bomb, "metadata_too_large"),
    "png_raw_profile_exif_bomb": (png_raw_profile_bomb, "metadata_too_large"),
    "png_iccp_bomb": (png_iccp_bomb, "metadata_too_large"),
    "jpeg_com_flood": (jpeg_com_flood, "metadata_too_large"),
    "jpeg_appn_flood": (jpeg_appn_flood, "metadata_too_large"),
    "webp_exif_9mib": (webp_exif_bomb, "metadata_too_large"),
    "webp_unknown_chunk_9mib": (webp_unknown_chunk_bomb, "metadata_too_large"),
    "png_ihdr_100000x100000": (png_huge_ihdr, "image_too_large"),
    "jpeg_sof_65000x65000": (jpeg_huge_sof, "image_too_large"),
    "webp_vp8x_16383x16383": (webp_huge_canvas, "image_too_large"),
    "jpeg_200_scans": (jpeg_many_scans, "image_too_complex"),
    "apng_face_in_frame_2": (apng_second_frame_face, "unsupported_image"),
    "webp_animated": (webp_animated, "unsupported_image"),
}


# ---------------------------------------------------------------------------------------------------------------
# Data a viewer cannot see (or sees differently from the raw pixels)
# ---------------------------------------------------------------------------------------------------------------


def box_mask(shape: tuple[int, int], box: Sequence[int] = ASTRONAUT_FACE) -> np.ndarray:
    x0, y0, x1, y1 = box
    mask = np.zeros(shape, bool)
    mask[y0:y1, x0:x1] = True
    return mask


def rgba_face_under_alpha(face_alpha: int = 0, rest_alpha: int = 255) -> bytes:
    """The astronaut with its face box at alpha `face_alpha` and the rest at `rest_alpha`; RGB kept everywhere."""
    rgb = astronaut()
    alpha = np.full(rgb.shape[:2], rest_alpha, np.uint8)
    alpha[box_mask(alpha.shape)] = face_alpha
    return png_bytes(np.dstack([rgb, alpha]))


def rgba_face_in_alpha() -> bytes:
    """RGB constant black, alpha = the astronaut's luminance: over white a viewer sees the face (as a negative)."""
    a = np.clip(np.rint(luma(astronaut())), 0, 255).astype(np.uint8)
    return png_bytes(np.dstack([np.zeros((*a.shape, 3), np.uint8), a]))


def over_white(rgba: np.ndarray) -> np.ndarray:
    a = rgba[..., 3:4].astype(np.float64) / 255
    return rgba[..., :3] * a + 255 * (1 - a)


def png16_low_byte_face(high: np.ndarray | None = None) -> bytes:
    """16-bit RGB PNG: high byte `high` (default flat 0x80), low byte the astronaut."""
    low = astronaut().astype(np.uint16)
    hi = np.full_like(low, 0x80) if high is None else high.astype(np.uint16)
    return png_rgb16((hi << 8) | low)


def png16_astronaut() -> bytes:
    return png_rgb16(astronaut().astype(np.uint16) * 257)


def png16_unfiltered_decode(data: bytes) -> np.ndarray:
    """HxWx3 uint16 of a 16-bit RGB PNG written with filter type 0 on every row (as images.png_rgb16 writes)."""
    w, h = struct.unpack(">II", png_chunks(data)[0][1][:8])
    raw = zlib.decompress(b"".join(body for kind, body in png_chunks(data) if kind == b"IDAT"))
    rows = np.frombuffer(raw, np.uint8).reshape(h, 1 + w * 6)
    assert not rows[:, 0].any(), "a row uses a PNG filter"
    return rows[:, 1:].copy().view(">u2").reshape(h, w, 3).astype(np.uint16)


PRIVATE_TAG = b"zfcb"  # a private ICC tag signature carrying the payload


def face_jpeg_payload() -> bytes:
    return jpeg_bytes(astronaut(), quality=95)


def jpeg_icc_carrying_face() -> tuple[bytes, bytes]:
    """(JPEG, payload): an sRGB-like ICC profile with a whole JPEG of the astronaut in a private tag, embedded over
    several APP2 ICC_PROFILE segments of a JPEG of the astronaut."""
    payload = face_jpeg_payload()
    profile = rgb_profile("sRGB (with luggage)", extra={PRIVATE_TAG: b"zfcb\0\0\0\0" + payload})
    return jpeg_bytes(astronaut(), quality=92, icc_profile=profile), payload


SCRAMBLE_BAND = 8  # small enough that the raw pixels defeat the detector, large enough to survive JPEG at q100


def scramble_permutation(seed: int = 3, band: int = SCRAMBLE_BAND) -> np.ndarray:
    """3x256, perm[c, stored] = displayed level of channel c: per channel, bands of `band` levels in a random
    order, each band monotonic (so a small JPEG error stays a small error once rendered)."""
    rng = np.random.default_rng(seed)
    n = 256 // band
    # Band 0 stays first: lcms (Pillow's and ImageMagick's) mis-renders a curv table whose first entry is not its
    # lowest value, and the scramble must render exactly for the attack to work.
    orders = [np.concatenate([[0], 1 + rng.permutation(n - 1)]) for _ in range(3)]
    return np.stack([(order[:, None] * band + np.arange(band)).ravel() for order in orders])


def scrambling_profile(perm: np.ndarray) -> bytes:
    """sRGB primaries; the TRC of channel c maps stored level s to the sRGB level perm[c, s] (each curv table is
    the permutation seen through the sRGB curve)."""
    tables = [np.rint(srgb_to_linear(p) * 65535).astype(int).tolist() for p in perm]
    return rgb_profile("Scrambled sRGB", trc=[curv_tag(t) for t in tables])


def scrambled(perm: np.ndarray) -> np.ndarray:
    """The stored levels that render as the astronaut through scrambling_profile(perm)."""
    a = astronaut()
    return np.dstack([np.argsort(perm[c]).astype(np.uint8)[a[..., c]] for c in range(3)])


def png_icc_scrambled(seed: int = 3) -> bytes:
    perm = scramble_permutation(seed)
    return png_bytes(scrambled(perm), icc_profile=scrambling_profile(perm))


def jpeg_icc_scrambled(seed: int = 3) -> bytes:
    perm = scramble_permutation(seed)
    return jpeg_bytes(scrambled(perm), quality=100, subsampling=0, icc_profile=scrambling_profile(perm))


def display_p3_profile() -> bytes:
    return rgb_profile("Display P3 (test)", primaries=P3_PRIMARIES)


def jpeg_display_p3() -> bytes:
    """The astronaut converted into Display P3 values, tagged with a P3 profile: renders like astronaut.png."""
    p3 = ImageCms.ImageCmsProfile(io.BytesIO(display_p3_profile()))
    im = ImageCms.profileToProfile(PILImage.fromarray(astronaut()), SRGB, p3, outputMode="RGB")
    return jpeg_bytes(np.asarray(im), quality=95, icc_profile=display_p3_profile())


GAMA_FILE_GAMMA = 2.0
GAMA_LEVELS = 6


def gama_displayed(stored: np.ndarray, file_gamma: float = GAMA_FILE_GAMMA) -> np.ndarray:
    """What a browser shows for a PNG with gAMA = file_gamma and no sRGB/iCCP: (v/255)^(1/(2.2 gamma))."""
    return 255 * (np.asarray(stored, np.float64) / 255) ** (1 / (2.2 * file_gamma))


def png_gama_hidden_face() -> bytes:
    """The astronaut squeezed into levels 0..6 (black as stored), gAMA 2.0 lifts it to 0..109 when displayed."""
    stored = np.rint(astronaut().astype(np.float64) * GAMA_LEVELS / 255).astype(np.uint8)
    gama = png_chunk(b"gAMA", struct.pack(">I", round(GAMA_FILE_GAMMA * 100_000)))
    return png_insert(png_bytes(stored), gama)


# ---------------------------------------------------------------------------------------------------------------
# Metadata that must not leave the worker
# ---------------------------------------------------------------------------------------------------------------

CANARY = b"FACEBLUR-CANARY"
GPS_DATUM = "FACEBLUR-GPS-48.8584N"


def gps_exif(orientation: int | None = None) -> bytes:
    ifd0 = [(xf.TAG_ORIENTATION, xf.SHORT, orientation)] if orientation else [(xf.TAG_MAKE, xf.ASCII, "Hostile")]
    gps = [
        (xf.GPS_VERSION, xf.BYTE, [2, 3, 0, 0]),
        (xf.GPS_LAT_REF, xf.ASCII, "N"),
        (xf.GPS_LAT, xf.RATIONAL, [(48, 1), (51, 1), (2901, 100)]),
        (xf.GPS_LON_REF, xf.ASCII, "E"),
        (xf.GPS_LON, xf.RATIONAL, [(2, 1), (17, 1), (4049, 100)]),
        (xf.GPS_MAP_DATUM, xf.ASCII, GPS_DATUM),
    ]
    return xf.tiff(ifd0, gps_ifd=gps)


def png_with_metadata(stored: np.ndarray) -> bytes:
    """eXIf (GPS + Orientation 6), tEXt, iTXt and a small zTXt, all carrying the canary."""
    chunks = [
        png_chunk(b"eXIf", gps_exif(orientation=6)),
        png_chunk(b"tEXt", b"Author\0" + CANARY + b"-text"),
        png_chunk(b"iTXt", b"Description\0\0\0en\0\0" + CANARY + b"-itxt"),
        ztxt_chunk(b"Comment", zlib.compress(CANARY + b"-ztxt")),
    ]
    return png_insert(png_bytes(stored), *chunks)


def xmp_packet(text: str) -> bytes:
    return xmp_segment(text)[4 + len(b"http://ns.adobe.com/xap/1.0/\0") :]


def webp_with_metadata(arr: np.ndarray) -> bytes:
    return webp_extended(webp_bytes(arr), (b"EXIF", gps_exif()), (b"XMP ", xmp_packet(CANARY.decode() + "-xmp")))


def mpf_segment(first_size: int, second_size: int, second_offset: int) -> bytes:
    """APP2 'MPF' (CIPA DC-007): MP Index IFD with two MP entries; offsets are from the MP header (after 'MPF\\0')."""
    entries = struct.pack("<IIIHH", 0x20030000, first_size, 0, 0, 0)
    entries += struct.pack("<IIIHH", 0x00000000, second_size, second_offset, 0, 0)
    index = xf.ifd([(0xB000, xf.UNDEFINED, b"0100"), (0xB001, xf.LONG, 2), (0xB002, xf.UNDEFINED, entries)], 8)
    return segment(APP2, b"MPF\0" + b"II*\0" + struct.pack("<I", 8) + index)


def jpeg_with_metadata(arr: np.ndarray) -> tuple[bytes, bytes]:
    """(JPEG, appended JPEG): COM, APP13 IPTC, XMP APP1, EXIF with GPS, MPF APP2 and a second JPEG (the astronaut's
    face) after EOI, which the MPF index points at."""
    second = jpeg_bytes(astronaut()[ASTRONAUT_FACE[1] : ASTRONAUT_FACE[3], ASTRONAUT_FACE[0] : ASTRONAUT_FACE[2]])
    base = jpeg_bytes(arr)
    others = [
        segment(COM, CANARY + b"-com"),
        iptc_segment(CANARY + b"-iptc"),
        xmp_segment(CANARY.decode() + "-xmp"),
        segment(0xE1, b"Exif\0\0" + gps_exif()),
    ]
    mpf_len = len(mpf_segment(0, 0, 0))
    first_size = len(base) + mpf_len + sum(len(s) for s in others)
    mpf_at = 2 + sum(len(s) for s in others) + 4 + 4  # start of the MP header inside the first image
    mpf = mpf_segment(first_size, len(second), first_size - mpf_at)
    first = insert_segments(base, [*others, mpf])
    assert len(first) == first_size
    return first + second, second


def jpeg_with_restarts(arr: np.ndarray) -> bytes:
    return jpeg_bytes(arr, quality=92, restart_marker_blocks=4)


def find_all(data: bytes, needle: bytes) -> Iterator[int]:
    i = data.find(needle)
    while i >= 0:
        yield i
        i = data.find(needle, i + 1)


# ---------------------------------------------------------------------------------------------------------------
# HEIC metadata carriers (pillow-heif, a dev dependency: imported only when a HEIC is built)
# ---------------------------------------------------------------------------------------------------------------

HEIC_THUMBNAIL = 96


def heic_with_metadata(arr: np.ndarray) -> tuple[bytes, bytes]:
    """(HEIC, ICC payload): an Exif item (GPS, Make), an XMP item with the canary, a thumbnail item of the picture and
    an sRGB-like profile in the primary's colr box carrying a JPEG of the astronaut's face in a private tag."""
    import pillow_heif

    payload = face_jpeg_payload()
    profile = rgb_profile("sRGB (with luggage)", extra={PRIVATE_TAG: b"zfcb\0\0\0\0" + payload})
    heif = pillow_heif.from_pillow(PILImage.fromarray(arr))
    out = io.BytesIO()
    heif.save(
        out,
        quality=90,
        exif=b"Exif\0\0" + gps_exif(),
        xmp=xmp_packet(CANARY.decode() + "-xmp"),
        icc_profile=profile,
        thumbnails=[HEIC_THUMBNAIL],
    )
    return out.getvalue(), payload


# ---------------------------------------------------------------------------------------------------------------
# What an output may hold (README, "What leaves the worker"): checked from outside, without the worker's egress
# ---------------------------------------------------------------------------------------------------------------

PNG_OUTPUT_CHUNKS = {b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND", b"iCCP"}
JPEG_OUTPUT_MARKERS = {SOI, EOI, SOS, DRI, 0xDB, 0xC4, 0xC0, 0xC1, 0xC2, *RST}  # the coding segments
JPEG_OUTPUT_APPS = {0xE0: b"JFIF\0", 0xEE: b"Adobe", APP2: b"ICC_PROFILE\0"}
WEBP_OUTPUT_CHUNKS = {b"VP8X", b"VP8 ", b"VP8L", b"ALPH", b"ICCP"}


def output_parts(data: bytes) -> list[bytes]:
    """The names of every part of an output, asserting each is on its format's allow-list, that nothing follows
    the image and that a profile, if any, is the worker's own."""
    if data.startswith(b"\x89PNG"):
        kinds = png_types(data)
        assert set(kinds) <= PNG_OUTPUT_CHUNKS, kinds
        assert kinds[0] == b"IHDR"
        assert kinds[-1] == b"IEND"
        names = kinds
    elif data.startswith(b"\xff\xd8"):
        markers, trailing = jpeg_markers(data)
        assert trailing == b"", "bytes after EOI"
        for m in markers:
            if m.marker in JPEG_OUTPUT_APPS:
                assert m.payload.startswith(JPEG_OUTPUT_APPS[m.marker]), (hex(m.marker), m.payload[:16])
            else:
                assert m.marker in JPEG_OUTPUT_MARKERS, hex(m.marker)
        jfif = [m.payload for m in markers if m.marker == 0xE0]
        assert all(len(p) == 14 for p in jfif), "a JFIF thumbnail"
        assert data.count(b"\xff\xd8") == 1, "a second SOI"
        names = [b"%02X" % m.marker for m in markers]
    else:
        names = [k for k, _ in riff_chunks(data)]
        assert set(names) <= WEBP_OUTPUT_CHUNKS, names
        if names[0] == b"VP8X":
            flags = dict(riff_chunks(data))[b"VP8X"][0]
            assert not flags & (VP8X_EXIF | VP8X_XMP | VP8X_ANIM), hex(flags)
    icc = embedded_icc(data)
    if icc is not None:
        assert icc_description(icc).lower().startswith("faceblur"), icc_description(icc)
    return names
