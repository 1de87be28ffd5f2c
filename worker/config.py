"""Settings: read from environment variables once, validated, then frozen.

Every variable is documented in the README ("Configuration"). Defaults work locally.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any


class ConfigError(ValueError):
    pass


_UNITS = {"": 1, "b": 1, "kib": 2**10, "mib": 2**20, "gib": 2**30, "kb": 10**3, "mb": 10**6, "gb": 10**9}


_BUCKET_NAME = re.compile(r"^(?!xn--|sthree-)(?!.*\.\.)(?!\d+\.\d+\.\d+\.\d+$)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
# scheme://host[:port]/account/queue-name: AWS (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME) and local emulators.
_QUEUE_URL = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?/\d{12}/[A-Za-z0-9_-]{1,80}(\.fifo)?$")


def is_bucket_name(name: str) -> bool:
    """S3's naming rules for general-purpose buckets: 3-63 lowercase letters, digits, dots and hyphens, starting
    and ending with a letter or digit, not an IP address. An ARN or an access point alias is not a name."""
    return bool(_BUCKET_NAME.match(name)) and not name.endswith(("-s3alias", "--ol-s3"))


def parse_bytes(text: str) -> int:
    """'512MiB' -> 536870912. Plain numbers are bytes."""
    t = text.strip().lower()
    digits = t.rstrip("kmgib")
    unit = t[len(digits) :]
    try:
        value = float(digits)
    except ValueError:
        value = -1.0
    if unit not in _UNITS or value <= 0:
        raise ValueError(f"not a size: {text!r} (use e.g. 512MiB, 2GiB)")
    return int(value * _UNITS[unit])


@dataclass(frozen=True, slots=True)
class DetectSettings:
    threshold: float = 0.2  # DETECT_THRESHOLD: CenterFace score; lower finds more faces and more false ones
    coarse_side: int = 640  # DETECT_COARSE_SIDE: long side (px) of the pass that finds large faces
    fine_side: int = 1024  # DETECT_FINE_SIDE: long side (px) of the pass that finds small faces (0 = off)
    max_upscale: float = 1.5  # DETECT_MAX_UPSCALE: small photos are enlarged at most this much for detection
    nms_iou: float = 0.3  # DETECT_NMS_IOU: overlap above which two detections are one face
    rotated_side: int = 480  # DETECT_ROTATED_SIDE: long side (px) of a pass on the photo turned 180 degrees (0 = off)
    rotated_threshold: float = 0.5  # DETECT_ROTATED_THRESHOLD: score needed in the upside-down pass


@dataclass(frozen=True, slots=True)
class RedactSettings:
    mode: str = "blur"  # BLUR_MODE: blur | pixelate | solid
    padding: float = 0.4  # BLUR_PADDING: grow faces up to 64 px by this fraction of their size on every side
    padding_large: float = 0.2  # BLUR_PADDING_LARGE: padding of faces >= 200 px, log-interpolated from 64 px
    cells: int = 8  # BLUR_CELLS: a face is reduced to this many cells across before blurring (lower = stronger)
    blocks: int = 8  # PIXELATE_BLOCKS: blocks across a face in pixelate mode (at most 8)
    shape: str = "rect"  # BLUR_SHAPE: rect | ellipse (feathered edge)


@dataclass(frozen=True, slots=True)
class ImageSettings:
    max_pixels: int = 50_000_000  # MAX_PIXELS: refuse images with more pixels (checked from the header)
    max_side: int = 20_000  # MAX_SIDE: refuse images wider or taller than this (px)
    # MAX_METADATA_BYTES: refuse files carrying more metadata than this (segments, chunks, profiles; inflated size)
    max_metadata_bytes: int = 8 * 2**20
    jpeg_quality: int = 0  # JPEG_QUALITY: 0 = match the input's estimated quality (clamped to 60..95)
    # MEMORY_BUDGET: memory that photos in work may reserve together (worker/admission.py); auto = 80% of the
    # task's memory (cgroup limit) beyond a 512 MiB baseline
    memory_budget: str = "auto"
    memory_limit: str = "512MiB"  # MAGICK_MEMORY_LIMIT: ImageMagick pixel cache in RAM, then it maps/disks
    map_limit: str = "1GiB"  # MAGICK_MAP_LIMIT
    disk_limit: str = "2GiB"  # MAGICK_DISK_LIMIT
    threads: int = 1  # MAGICK_THREAD_LIMIT: OpenMP threads per ImageMagick call (the worker pool parallelises)


@dataclass(frozen=True, slots=True)
class RekognitionSettings:
    tps: float = 5.0  # REKOGNITION_TPS: DetectFaces calls per second for the whole process (token bucket)
    max_attempts: int = 6  # REKOGNITION_MAX_ATTEMPTS: DetectFaces attempts per photo (throttling, 5xx, network)
    max_seconds: float = 30.0  # REKOGNITION_MAX_SECONDS: give up retrying a photo after this long (-> retry later)
    backoff_seconds: float = 0.5  # REKOGNITION_BACKOFF_SECONDS: scale of the exponential, fully jittered backoff
    backoff_max_seconds: float = 8.0  # REKOGNITION_BACKOFF_MAX_SECONDS: longest single backoff wait
    timeout_seconds: float = 10.0  # REKOGNITION_TIMEOUT_SECONDS: read timeout of one DetectFaces call
    fallback: str = "none"  # REKOGNITION_FALLBACK: none | local (answer refused images with the local detector)


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    queue_url: str = ""  # QUEUE_URL: the source queue; empty = start the embedded local stack
    output_bucket: str = ""  # OUTPUT_BUCKET: where blurred photos go (same key, plus OUTPUT_PREFIX)
    output_prefix: str = ""  # OUTPUT_PREFIX
    source_buckets: str = (
        ""  # SOURCE_BUCKETS: comma-separated buckets whose events are obeyed (required with QUEUE_URL)
    )
    dlq_url: str = ""  # DLQ_URL: optional; default = the queue's RedrivePolicy target
    concurrency: int = 0  # WORKER_CONCURRENCY: photos in work at once (0 = CPU count)
    detector: str = "local"  # DETECTOR: local (CenterFace ONNX) | rekognition | both (union of the two)
    wait_seconds: int = 20  # SQS_WAIT_SECONDS: long-poll wait
    visibility_seconds: int = 60  # HEARTBEAT_VISIBILITY_SECONDS: visibility set on each heartbeat
    heartbeat_seconds: int = 20  # HEARTBEAT_SECONDS: how often in-flight messages are extended
    max_processing_seconds: int = 600  # MAX_PROCESSING_SECONDS: stop extending after this; message reappears
    retry_base_seconds: int = 10  # RETRY_BASE_SECONDS: first retry delay; doubles with each receive
    retry_max_seconds: int = 900  # RETRY_MAX_SECONDS: longest retry delay (SQS allows 12 h)
    max_object_bytes: int = 50 * 2**20  # MAX_OBJECT_BYTES: larger source objects go to the DLQ unread
    sse: str = "AES256"  # OUTPUT_SSE: AES256 (SSE-S3) | aws:kms
    sse_kms_key_id: str = ""  # SSE_KMS_KEY_ID: KMS key for OUTPUT_SSE=aws:kms (implies it when set)
    shutdown_grace_seconds: int = 100  # SHUTDOWN_GRACE_SECONDS: finish in-flight work within this (< stopTimeout)
    metrics_port: int = 9102  # METRICS_PORT: /metrics, /healthz, /readyz (0 = off)
    metrics_host: str = "0.0.0.0"  # METRICS_HOST
    queue_depth_seconds: int = 15  # QUEUE_DEPTH_SECONDS: how often queue depth is read for metrics
    stuck_seconds: int = 90  # HEALTH_STUCK_SECONDS: /healthz fails when the poll loop is silent this long
    startup_wait_seconds: int = 60  # STARTUP_WAIT_SECONDS: how long start-up waits for an endpoint or queue to exist
    log_format: str = "auto"  # LOG_FORMAT: json | console | auto (console on a terminal)
    log_level: str = "info"  # LOG_LEVEL


_ENV: dict[str, tuple[str, str]] = {
    "QUEUE_URL": ("service", "queue_url"),
    "OUTPUT_BUCKET": ("service", "output_bucket"),
    "OUTPUT_PREFIX": ("service", "output_prefix"),
    "SOURCE_BUCKETS": ("service", "source_buckets"),
    "DLQ_URL": ("service", "dlq_url"),
    "WORKER_CONCURRENCY": ("service", "concurrency"),
    "DETECTOR": ("service", "detector"),
    "SQS_WAIT_SECONDS": ("service", "wait_seconds"),
    "HEARTBEAT_VISIBILITY_SECONDS": ("service", "visibility_seconds"),
    "HEARTBEAT_SECONDS": ("service", "heartbeat_seconds"),
    "MAX_PROCESSING_SECONDS": ("service", "max_processing_seconds"),
    "RETRY_BASE_SECONDS": ("service", "retry_base_seconds"),
    "RETRY_MAX_SECONDS": ("service", "retry_max_seconds"),
    "MAX_OBJECT_BYTES": ("service", "max_object_bytes"),
    "OUTPUT_SSE": ("service", "sse"),
    "SSE_KMS_KEY_ID": ("service", "sse_kms_key_id"),
    "SHUTDOWN_GRACE_SECONDS": ("service", "shutdown_grace_seconds"),
    "METRICS_PORT": ("service", "metrics_port"),
    "METRICS_HOST": ("service", "metrics_host"),
    "QUEUE_DEPTH_SECONDS": ("service", "queue_depth_seconds"),
    "HEALTH_STUCK_SECONDS": ("service", "stuck_seconds"),
    "STARTUP_WAIT_SECONDS": ("service", "startup_wait_seconds"),
    "LOG_FORMAT": ("service", "log_format"),
    "LOG_LEVEL": ("service", "log_level"),
    # env var: (group, field)
    "DETECT_THRESHOLD": ("detect", "threshold"),
    "DETECT_COARSE_SIDE": ("detect", "coarse_side"),
    "DETECT_FINE_SIDE": ("detect", "fine_side"),
    "DETECT_MAX_UPSCALE": ("detect", "max_upscale"),
    "DETECT_NMS_IOU": ("detect", "nms_iou"),
    "DETECT_ROTATED_SIDE": ("detect", "rotated_side"),
    "DETECT_ROTATED_THRESHOLD": ("detect", "rotated_threshold"),
    "BLUR_PADDING_LARGE": ("redact", "padding_large"),
    "BLUR_MODE": ("redact", "mode"),
    "BLUR_PADDING": ("redact", "padding"),
    "BLUR_CELLS": ("redact", "cells"),
    "PIXELATE_BLOCKS": ("redact", "blocks"),
    "BLUR_SHAPE": ("redact", "shape"),
    "MAX_PIXELS": ("image", "max_pixels"),
    "MAX_SIDE": ("image", "max_side"),
    "MAX_METADATA_BYTES": ("image", "max_metadata_bytes"),
    "JPEG_QUALITY": ("image", "jpeg_quality"),
    "MEMORY_BUDGET": ("image", "memory_budget"),
    "MAGICK_MEMORY_LIMIT": ("image", "memory_limit"),
    "MAGICK_MAP_LIMIT": ("image", "map_limit"),
    "MAGICK_DISK_LIMIT": ("image", "disk_limit"),
    "MAGICK_THREAD_LIMIT": ("image", "threads"),
    "REKOGNITION_TPS": ("rekognition", "tps"),
    "REKOGNITION_MAX_ATTEMPTS": ("rekognition", "max_attempts"),
    "REKOGNITION_MAX_SECONDS": ("rekognition", "max_seconds"),
    "REKOGNITION_BACKOFF_SECONDS": ("rekognition", "backoff_seconds"),
    "REKOGNITION_BACKOFF_MAX_SECONDS": ("rekognition", "backoff_max_seconds"),
    "REKOGNITION_TIMEOUT_SECONDS": ("rekognition", "timeout_seconds"),
    "REKOGNITION_FALLBACK": ("rekognition", "fallback"),
}


@dataclass(frozen=True, slots=True)
class Settings:
    detect: DetectSettings = field(default_factory=DetectSettings)
    redact: RedactSettings = field(default_factory=RedactSettings)
    image: ImageSettings = field(default_factory=ImageSettings)
    service: ServiceSettings = field(default_factory=ServiceSettings)
    rekognition: RekognitionSettings = field(default_factory=RekognitionSettings)

    @property
    def concurrency(self) -> int:
        return self.service.concurrency or os.cpu_count() or 1

    @property
    def source_buckets(self) -> frozenset[str]:
        return frozenset(b.strip() for b in self.service.source_buckets.split(",") if b.strip())

    def __post_init__(self) -> None:
        validate(self)


def _convert(raw: str, like: Any, name: str) -> Any:
    try:
        if isinstance(like, bool):
            return raw.strip().lower() in {"1", "true", "yes", "on"}
        if isinstance(like, int):
            return int(raw)
        if isinstance(like, float):
            return float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a valid {type(like).__name__}") from None
    return raw.strip()


def from_env(environ: Mapping[str, str] | None = None) -> Settings:
    environ = os.environ if environ is None else environ
    groups: dict[str, dict[str, Any]] = {"detect": {}, "redact": {}, "image": {}, "service": {}, "rekognition": {}}
    defaults = Settings()
    for var, (group, name) in _ENV.items():
        if environ.get(var, "") != "":
            groups[group][name] = _convert(environ[var], getattr(getattr(defaults, group), name), var)
    return Settings(
        detect=DetectSettings(**groups["detect"]),
        redact=RedactSettings(**groups["redact"]),
        image=ImageSettings(**groups["image"]),
        service=ServiceSettings(**groups["service"]),
        rekognition=RekognitionSettings(**groups["rekognition"]),
    )


def env_var(group: str, name: str) -> str:
    """The environment variable behind a setting, for error messages."""
    return next(var for var, target in _ENV.items() if target == (group, name))


def _check(ok: bool, group: str, name: str, rule: str) -> None:
    if not ok:
        raise ConfigError(f"{env_var(group, name)} must be {rule}")


def validate(s: Settings) -> None:
    d, r, i = s.detect, s.redact, s.image
    _check(0.05 <= d.threshold <= 0.95, "detect", "threshold", "between 0.05 and 0.95")
    _check(160 <= d.coarse_side <= 4096, "detect", "coarse_side", "between 160 and 4096")
    _check(
        d.fine_side == 0 or d.coarse_side < d.fine_side <= 8192,
        "detect",
        "fine_side",
        "0 or between DETECT_COARSE_SIDE and 8192",
    )
    _check(1.0 <= d.max_upscale <= 4.0, "detect", "max_upscale", "between 1 and 4")
    _check(0.1 <= d.nms_iou <= 0.9, "detect", "nms_iou", "between 0.1 and 0.9")
    _check(d.rotated_side == 0 or 160 <= d.rotated_side <= 4096, "detect", "rotated_side", "0 or between 160 and 4096")
    _check(0.05 <= d.rotated_threshold <= 0.95, "detect", "rotated_threshold", "between 0.05 and 0.95")
    _check(r.mode in {"blur", "pixelate", "solid"}, "redact", "mode", "one of blur, pixelate, solid")
    _check(0.0 <= r.padding <= 1.0, "redact", "padding", "between 0 and 1")
    _check(
        r.padding_large < 0 or r.padding_large <= 1.0, "redact", "padding_large", "negative (= BLUR_PADDING) or 0..1"
    )
    _check(2 <= r.cells <= 24, "redact", "cells", "between 2 and 24 (higher keeps more detail)")
    _check(2 <= r.blocks <= 8, "redact", "blocks", "between 2 and 8")
    _check(r.shape in {"rect", "ellipse"}, "redact", "shape", "rect or ellipse")
    _check(1 <= i.max_pixels <= 1_000_000_000, "image", "max_pixels", "between 1 and 1e9")
    _check(1 <= i.max_side <= 32_000, "image", "max_side", "between 1 and 32000")
    _check(64 * 2**10 <= i.max_metadata_bytes <= 2**30, "image", "max_metadata_bytes", "between 64 KiB and 1 GiB")
    _check(i.jpeg_quality == 0 or 30 <= i.jpeg_quality <= 100, "image", "jpeg_quality", "0 or 30..100")
    _check(1 <= i.threads <= 64, "image", "threads", "between 1 and 64")
    if i.memory_budget != "auto":
        try:
            parse_bytes(i.memory_budget)
        except ValueError:
            _check(False, "image", "memory_budget", "auto or a size such as 1500MiB")
    for name in ("memory_limit", "map_limit", "disk_limit"):
        try:
            parse_bytes(getattr(i, name))
        except ValueError:
            _check(False, "image", name, "a size such as 512MiB or 2GiB")
    v = s.service
    _check(0 <= v.concurrency <= 256, "service", "concurrency", "between 0 (= CPU count) and 256")
    _check(v.detector in {"local", "rekognition", "both"}, "service", "detector", "local, rekognition or both")
    k = s.rekognition
    _check(0.1 <= k.tps <= 1000, "rekognition", "tps", "between 0.1 and 1000")
    _check(1 <= k.max_attempts <= 50, "rekognition", "max_attempts", "between 1 and 50")
    _check(0 < k.max_seconds <= 600, "rekognition", "max_seconds", "above 0 and at most 600")
    _check(0 <= k.backoff_seconds <= 60, "rekognition", "backoff_seconds", "between 0 and 60")
    _check(
        k.backoff_seconds <= k.backoff_max_seconds <= 300,
        "rekognition",
        "backoff_max_seconds",
        "at least REKOGNITION_BACKOFF_SECONDS and at most 300",
    )
    _check(0 < k.timeout_seconds <= 120, "rekognition", "timeout_seconds", "above 0 and at most 120")
    _check(k.fallback in {"none", "local"}, "rekognition", "fallback", "none or local")
    _check(0 <= v.wait_seconds <= 20, "service", "wait_seconds", "between 0 and 20 (the SQS maximum)")
    _check(10 <= v.visibility_seconds <= 43_200, "service", "visibility_seconds", "between 10 and 43200")
    _check(
        1 <= v.heartbeat_seconds < v.visibility_seconds,
        "service",
        "heartbeat_seconds",
        "at least 1 and below HEARTBEAT_VISIBILITY_SECONDS (or messages reappear while in work)",
    )
    _check(
        v.max_processing_seconds >= v.visibility_seconds,
        "service",
        "max_processing_seconds",
        "at least HEARTBEAT_VISIBILITY_SECONDS",
    )
    _check(
        0 <= v.retry_base_seconds <= v.retry_max_seconds <= 43_200,
        "service",
        "retry_max_seconds",
        "at least RETRY_BASE_SECONDS and at most 43200",
    )
    _check(v.max_object_bytes >= 1, "service", "max_object_bytes", "positive")
    _check(v.sse in {"AES256", "aws:kms"}, "service", "sse", "AES256 or aws:kms")
    _check(
        1 <= v.shutdown_grace_seconds <= 115,
        "service",
        "shutdown_grace_seconds",
        "between 1 and 115 (below ECS's 120 s stopTimeout, leaving time to return messages)",
    )
    _check(0 <= v.metrics_port <= 65535, "service", "metrics_port", "a port number (0 = off)")
    _check(v.stuck_seconds > v.wait_seconds, "service", "stuck_seconds", "longer than SQS_WAIT_SECONDS")
    _check(v.startup_wait_seconds >= 0, "service", "startup_wait_seconds", ">= 0")
    _check(v.log_format in {"json", "console", "auto"}, "service", "log_format", "json, console or auto")
    _check(v.log_level.lower() in LOG_LEVELS, "service", "log_level", "one of " + ", ".join(LOG_LEVELS))
    _check(
        not v.queue_url or bool(_QUEUE_URL.match(v.queue_url)),
        "service",
        "queue_url",
        "an SQS queue URL such as https://sqs.eu-west-1.amazonaws.com/123456789012/faceblur-uploads "
        f"(not {v.queue_url[:80]!r})",
    )
    _check(
        bool(v.queue_url) == bool(v.output_bucket) or not v.queue_url,
        "service",
        "output_bucket",
        "set when QUEUE_URL is set",
    )
    _check(
        bool(s.source_buckets) or not v.queue_url,
        "service",
        "source_buckets",
        "set when QUEUE_URL is set: the buckets whose uploads this worker may read (comma-separated)",
    )
    for name in (*s.source_buckets, *([v.output_bucket] if v.output_bucket else [])):
        _check(
            is_bucket_name(name),
            "service",
            "source_buckets" if name in s.source_buckets else "output_bucket",
            f"valid S3 bucket names ({name!r} is not)",
        )


def describe(s: Settings) -> dict[str, Any]:
    """Flat view of the settings for the start-up log line."""
    return {
        f"{g}.{f.name}": getattr(getattr(s, g), f.name)
        for g in ("detect", "redact", "image", "service", "rekognition")
        for f in fields(getattr(s, g))
    }
