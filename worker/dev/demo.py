"""`python -m worker demo`: the whole service on the embedded local stack, end to end, in one command.

Uploads public-domain sample photos that ship inside scikit-image (NASA's astronaut portrait and friends; never
the internal evaluation set), with the awkward cases a real bucket sees: an EXIF-rotated phone JPEG, spaces,
'+' and unicode in keys, a WebP, a photo without faces. Waits for every output, downloads them into ./out/,
prints a table and the metrics URL.
"""

from __future__ import annotations

import io
import threading
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

from worker.config import from_env
from worker.dev.stack import bootstrap, local_aws, start_moto
from worker.service import build, with_stack
from worker.telemetry import logs


def sample_photos() -> list[tuple[str, bytes]]:
    """(key, bytes) of the demo uploads, all made from scikit-image's bundled public-domain images."""
    import skimage.data
    from PIL import Image

    data_dir = Path(skimage.data.__file__).parent
    astronaut = (data_dir / "astronaut.png").read_bytes()
    portrait = Image.open(io.BytesIO(astronaut)).convert("RGB")

    def jpeg(im: Image.Image, orientation: int = 1) -> bytes:
        buf = io.BytesIO()
        exif = Image.Exif()
        exif[0x0112] = orientation
        im.save(buf, "JPEG", quality=90, exif=exif.tobytes())
        return buf.getvalue()

    webp = io.BytesIO()
    portrait.save(webp, "WEBP", quality=90)
    # Stored rotated 90 degrees with Orientation=6, as phones do: the output must come back upright.
    rotated = jpeg(portrait.transpose(Image.Transpose.ROTATE_90), orientation=6)
    return [
        ("astronaut.png", astronaut),
        ("phone uploads/astronaut rotated+1.jpg", rotated),
        ("café/宇宙飛行士.webp", webp.getvalue()),
        ("no faces/coffee.png", (data_dir / "coffee.png").read_bytes()),
        ("no faces/chelsea the cat.png", (data_dir / "chelsea.png").read_bytes()),
        ("rocket.jpg", (data_dir / "rocket.jpg").read_bytes()),
    ]


def run(out_dir: Path = Path("out"), timeout_s: float = 180.0) -> int:
    logs.configure("console", "warning")
    server, endpoint = start_moto()
    aws = local_aws(endpoint)
    stack = bootstrap(aws=aws)
    settings = with_stack(from_env(), stack.queue_url, stack.output_bucket, stack.source_bucket)
    settings = replace(settings, service=replace(settings.service, wait_seconds=1))
    try:
        service = build(settings, aws=aws)
    except OSError:  # metrics port taken: any free port will do for a demo
        service = build(replace(settings, service=replace(settings.service, metrics_port=0)), aws=aws)
    worker = threading.Thread(target=service.run, name="consumer", daemon=True)
    worker.start()
    s3 = aws.client("s3")
    photos = sample_photos()
    uploaded: dict[str, float] = {}
    print(f"local stack at {endpoint}: uploading {len(photos)} photos to s3://{stack.source_bucket}/")
    for key, data in photos:
        s3.put_object(Bucket=stack.source_bucket, Key=key, Body=data)
        uploaded[key] = time.monotonic()
    rows: dict[str, tuple[str, float]] = {}
    deadline = time.monotonic() + timeout_s
    while len(rows) < len(photos) and time.monotonic() < deadline:
        for key, _ in photos:
            if key in rows:
                continue
            try:
                head = s3.head_object(Bucket=stack.output_bucket, Key=key)
            except s3.exceptions.ClientError:
                continue
            rows[key] = (head["Metadata"].get("faces", "?"), (time.monotonic() - uploaded[key]) * 1000)
        time.sleep(0.1)
    for key in rows:
        target = out_dir / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(s3.get_object(Bucket=stack.output_bucket, Key=key)["Body"].read())
    width = max(len(k) for k, _ in photos)
    print(f"\n{'key':<{width}}  faces  upload-to-output ms")
    for key, _ in photos:
        faces, ms = rows.get(key, ("-", float("nan")))
        print(f"{key:<{width}}  {faces:>5}  {ms:>8.0f}" if key in rows else f"{key:<{width}}  MISSING")
    port = service.http.port if service.http else None
    if port:
        # Scraped now: the endpoint goes away with the demo. `python -m worker local` keeps a worker running.
        print("\nmetrics, scraped from /metrics before the demo stops:")
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        for line in text.splitlines():
            if line.startswith(("faceblur_photos_total", "faceblur_messages_total")):
                print("  " + line)
    print(f"blurred photos written to {out_dir.resolve()}/")
    service.consumer.stop()
    worker.join(timeout=30)
    server.stop()
    return 0 if len(rows) == len(photos) else 1
