"""What the chaos soak uploads: real photos under ordinary and odd keys, and every kind of bad input we know of.

Each item says what must become of it: `output` (exactly one blurred output, faces protected), `dlq` (in the DLQ
with a reason, no output) or `ignored` (deleted without output or DLQ entry: S3 test events, removals).
Photos are read in place from the internal evaluation set (never copied); bad inputs are made here, in memory.
"""

from __future__ import annotations

import io
import json
import random
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from tests.integration.integration_support import eventbridge_event, s3_event, s3_record, sns_envelope

OUTPUT, DLQ, IGNORED = "output", "dlq", "ignored"
ODD_KEY_PARTS = ("with space", "plus+sign", "ünïcødé-照片", "percent%20literal", "a=b&c", "(brackets)", "tilde~")


@dataclass
class Item:
    key: str  # source key (uploads) or a label (messages sent straight to the queue)
    kind: str
    expect: str
    data: bytes | None = None  # uploaded to the source bucket when set
    body: str | None = None  # sent to the queue as it is when set
    photo: str | None = None  # the dev photo behind the data
    before_workers: bool = False  # done before any worker starts (objects deleted before processing)
    delete_after_upload: bool = False
    duplicate_of: str | None = None  # a notification repeated for this already-uploaded key


def _jpeg(size: tuple[int, int] = (320, 240), colour: tuple[int, int, int] = (90, 120, 150), **kw: Any) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "JPEG", quality=85, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width x height (a decompression bomb when large)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small real JPEG with its frame header rewritten to declare width x height."""
    data = bytearray(_jpeg((64, 48)))
    i = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, i + 5, height, width)
    return bytes(data)


def _encoded(img: Image.Image, fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _zeros(n: int) -> bytes:
    z = zlib.compressobj(9)
    return b"".join(z.compress(bytes(1 << 20)) for _ in range(n >> 20)) + z.flush()


def _with_chunk(png: bytes, kind: bytes, body: bytes) -> bytes:
    chunk = struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return png[:33] + chunk + png[33:]  # right after IHDR


def bad_uploads(sample_jpeg: bytes, sample_png: bytes, max_object_bytes: int, rng: random.Random) -> list[Item]:
    """At least 20 kinds of invalid upload; every one must end in the DLQ with a reason and no output."""
    corrupt = bytearray(sample_jpeg)
    sos = corrupt.index(b"\xff\xda")
    for i in range(sos + 200, len(corrupt) - 2, 7):  # entropy-coded data scrambled, headers intact
        corrupt[i] = rng.randrange(256)
    bad_crc = bytearray(sample_png)
    bad_crc[29] ^= 0xFF  # IHDR's CRC
    gradient = Image.linear_gradient("L").resize((8000, 7000)).convert("RGB")  # 56 MP, above MAX_PIXELS
    frames = [Image.new("RGB", (120, 90), c) for c in ((200, 0, 0), (0, 200, 0))]
    animated = io.BytesIO()
    frames[0].save(animated, "WEBP", save_all=True, append_images=frames[1:], duration=100)
    kinds: dict[str, tuple[str, bytes]] = {
        "zero_bytes": (".jpg", b""),
        "text_named_jpg": (".jpg", b"this is not a photo\n" * 20),
        "html_named_png": (".png", b"<!doctype html><html><body><img src=x onerror=alert(1)></body></html>"),
        "svg_named_jpg": (
            ".jpg",
            b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="640" height="480">'
            b'<image href="file:///etc/passwd" width="640" height="480"/></svg>',
        ),
        "mvg_named_jpg": (
            ".jpg",
            b'push graphic-context\nviewbox 0 0 640 480\nimage over 0,0 0,0 "https://127.0.0.1/x.jpg"\n'
            b"pop graphic-context\n",
        ),
        "msl_named_png": (".png", b'<?xml version="1.0"?><image><read filename="/etc/passwd"/></image>'),
        "postscript_named_jpg": (".jpg", b"%!PS-Adobe-3.0\n%%BoundingBox: 0 0 100 100\nshowpage\n"),
        "pdf_named_jpg": (".jpg", b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF\n"),
        "elf_named_png": (".png", b"\x7fELF\x02\x01\x01" + bytes(rng.randrange(256) for _ in range(2048))),
        "gzip_named_jpg": (".jpg", zlib.compress(b"not an image" * 100)),
        "truncated_jpeg": (".jpg", sample_jpeg[: len(sample_jpeg) // 2]),
        "corrupt_jpeg_scan": (".jpg", bytes(corrupt)),
        "jpeg_headers_only": (".jpg", sample_jpeg[:sos] + b"\xff\xd9"),
        "truncated_png": (".png", sample_png[: len(sample_png) // 2]),
        "png_bad_crc": (".png", bytes(bad_crc)),
        "png_bomb_30000x30000": (".png", png_declaring(30000, 30000)),
        "jpeg_bomb_60000x60000": (".jpg", jpeg_declaring(60000, 60000)),
        "oversize_56mp_photo": (".jpg", _encoded(gradient, "JPEG", quality=70)),
        "object_over_max_bytes": (".jpg", b"\xff\xd8\xff\xe0" + bytes(max_object_bytes + 1024)),
        "gif_unsupported": (".gif", _encoded(Image.new("P", (64, 64)), "GIF")),
        "tiff_unsupported": (".tif", _encoded(Image.new("RGB", (64, 64)), "TIFF")),
        "bmp_unsupported": (".bmp", _encoded(Image.new("RGB", (64, 64)), "BMP")),
        "animated_webp": (".webp", animated.getvalue()),
        "random_bytes_named_webp": (
            ".webp",
            b"RIFF\x00\x00\x00\x00WEBP" + bytes(rng.randrange(256) for _ in range(512)),
        ),
        # Issue 10's classes: ancillary-data bombs, animation a viewer would play, a scan bomb.
        "png_ztxt_bomb_1gib": (
            ".png",
            _with_chunk(sample_png, b"zTXt", b"Raw profile type exif\0\0" + _zeros(1 << 30)),
        ),
        "png_iccp_bomb": (".png", _with_chunk(sample_png, b"iCCP", b"icc\0\0" + _zeros(64 << 20))),
        "apng_second_frame": (".png", _with_chunk(sample_png, b"acTL", struct.pack(">II", 2, 0))),
        "jpeg_comment_flood": (
            ".jpg",
            sample_jpeg[:2] + (b"\xff\xfe" + struct.pack(">H", 65002) + bytes(65000)) * 160 + sample_jpeg[2:],
        ),
    }
    return [Item(f"bad/{kind}{ext}", kind, DLQ, data=data) for kind, (ext, data) in kinds.items()]


def bad_messages(source_bucket: str, max_object_bytes: int) -> list[Item]:
    """Queue messages that are malformed (-> DLQ with a reason) or carry nothing to do (-> ignored)."""
    missing = s3_event(s3_record(source_bucket, "never/uploaded.jpg", "0" * 32, 1000))
    lying_size = s3_event(s3_record(source_bucket, "never/too-big.jpg", "0" * 32, max_object_bytes * 4))
    no_s3 = json.dumps({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put"}]})
    bad_escape = s3_event(s3_record(source_bucket, "x", "0" * 32, 10)).replace('"key": "x"', '"key": "%ZZ%"')
    removed = s3_event(s3_record(source_bucket, "gone.jpg", "0" * 32, 10, event_name="ObjectRemoved:Delete"))
    foreign = s3_event(s3_record("someone-elses-bucket", "photo.jpg", "0" * 32, 10))
    arn = s3_event(s3_record("arn:aws:s3:us-east-1:123456789012:accesspoint/ap", "photo.jpg", "0" * 32, 10))
    bodies = {
        "body_not_json": (DLQ, "this is not json {"),
        "body_json_array": (DLQ, "[1, 2, 3]"),
        "body_records_not_list": (DLQ, json.dumps({"Records": "nope"})),
        "body_record_without_s3": (DLQ, no_s3),
        "body_key_bad_escape": (DLQ, bad_escape),
        "body_sns_message_not_json": (DLQ, sns_envelope("not json either")),
        "body_eventbridge_without_detail": (DLQ, json.dumps({"detail-type": "Object Created", "source": "aws.s3"})),
        "body_huge_garbage": (DLQ, json.dumps({"junk": "x" * 200_000})),
        "body_whitespace": (DLQ, "   "),
        "event_for_missing_object": (DLQ, missing),
        "event_declaring_oversize_object": (DLQ, lying_size),
        "event_for_a_foreign_bucket": (DLQ, foreign),
        "event_with_an_arn_as_bucket": (DLQ, arn),
        "s3_test_event": (IGNORED, json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "b"})),
        "object_removed_event": (IGNORED, removed),
    }
    return [Item(f"message/{kind}", kind, expect, body=body) for kind, (expect, body) in bodies.items()]


def duplicate_notification(bucket: str, key: str, etag: str, size: int, shape: int) -> str:
    """A repeated notification for an uploaded object, in one of the shapes AWS delivers."""
    if shape % 3 == 0:
        return s3_event(s3_record(bucket, key, etag, size))
    if shape % 3 == 1:
        return sns_envelope(s3_event(s3_record(bucket, key, etag, size)))
    return eventbridge_event(bucket, key, etag, size)


def plan(dev: Path, uploads: int, source_bucket: str, max_object_bytes: int, seed: int) -> list[Item]:
    """`uploads` items: every bad kind at least once, ~8% duplicates, the rest real photos (all sizes, cycled)."""
    rng = random.Random(seed)
    photos = sorted(p for p in dev.iterdir() if p.suffix in (".jpg", ".png"))
    sample_jpeg = next(p for p in photos if p.suffix == ".jpg").read_bytes()
    sample_png = next(p for p in photos if p.suffix == ".png").read_bytes()
    bad = bad_uploads(sample_jpeg, sample_png, max_object_bytes, rng) + bad_messages(source_bucket, max_object_bytes)
    deleted = [
        Item(f"deleted/{i} {p.name}", "deleted_before_processing", DLQ, data=p.read_bytes(), photo=p.name)
        for i, p in enumerate(photos[:2])
    ]
    for d in deleted:
        d.before_workers = d.delete_after_upload = True
    n_photos = max(len(photos), uploads - len(bad) - len(deleted))
    n_dups = max(3, n_photos // 12)
    n_photos -= n_dups
    items = list(bad) + deleted
    for i in range(n_photos):
        p = photos[i % len(photos)]
        odd = ODD_KEY_PARTS[i % len(ODD_KEY_PARTS)] if i % 3 == 0 else ""
        key = f"photos/{i:04d}/{odd + ' ' if odd else ''}{p.name}"
        items.append(Item(key, "photo", OUTPUT, data=p.read_bytes(), photo=p.name))
    photo_items = [it for it in items if it.kind == "photo"]
    for j in range(n_dups):
        target = photo_items[rng.randrange(len(photo_items))]
        items.append(Item(f"duplicate/{j}", "duplicate_notification", OUTPUT, duplicate_of=target.key))
    rng.shuffle(items)
    return items
