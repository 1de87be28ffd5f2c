"""Settings: every one declared once, here (environment variable, default, bound, help), read once, validated, frozen.

`from_env` reads them, `validate` checks each one's rule and the few rules between settings, and `settings_table`
renders the README's "Configuration" table from these declarations (a test keeps the two equal).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any


class ConfigError(ValueError):
    pass


_UNITS = {"": 1, "b": 1, "kib": 2**10, "mib": 2**20, "gib": 2**30, "kb": 10**3, "mb": 10**6, "gb": 10**9}
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
# scheme://host[:port]/account/queue-name: AWS (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME) and local emulators.
_QUEUE_URL = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?/\d{12}/[A-Za-z0-9_-]{1,80}(\.fifo)?$")
# Shutdown: SIGKILL follows SIGTERM after ECS's stopTimeout, at most 120 s. Before it, a long poll in progress
# (SQS_WAIT_SECONDS, not interrupted), the grace period and the settler's last flush (consumer/loop.py: _drain)
# must all end; `validate` keeps their sum within it. deploy/terraform mirrors both numbers (tests/infra).
STOP_TIMEOUT_SECONDS = 120
SETTLE_SECONDS = 5
_BUCKET_NAME = re.compile(r"^(?!xn--|sthree-)(?!.*\.\.)(?!\d+\.\d+\.\d+\.\d+$)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def queue_url_ok(url: str) -> bool:
    return bool(_QUEUE_URL.match(url))


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
    if unit not in _UNITS or not value > 0 or math.isinf(value):
        raise ValueError(f"not a size: {text!r} (use e.g. 512MiB, 2GiB)")
    return int(value * _UNITS[unit])


# -- how a setting is declared ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Rule:
    ok: Callable[[Any], bool]
    text: str  # completes "VARIABLE must be ..."


def between(lo: float, hi: float, *, off: float | None = None) -> Rule:
    """lo..hi (inclusive); `off` is a value outside the range that switches the feature off."""
    text = f"between {lo:g} and {hi:g}"
    return Rule(lambda v: v == off or lo <= v <= hi, text if off is None else f"{off:g} (off) or {text}")


def one_of(*values: str) -> Rule:
    return Rule(lambda v: v in values, "one of " + ", ".join(values))


def _is_size(value: str) -> bool:
    try:
        parse_bytes(value)
    except ValueError:
        return False
    return True


SIZE = Rule(_is_size, "a size such as 512MiB or 2GiB")


def setting(default: Any, env: str, help: str, rule: Rule | None = None) -> Any:
    return field(default=default, metadata={"env": env, "help": help, "rule": rule})


# -- the settings -------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ServiceSettings:
    queue_url: str = setting("", "QUEUE_URL", "the source queue (required by `run`)")
    output_bucket: str = setting("", "OUTPUT_BUCKET", "bucket for blurred photos (required with `QUEUE_URL`)")
    output_prefix: str = setting("", "OUTPUT_PREFIX", "prefix added to each output key")
    source_buckets: str = setting(
        "",
        "SOURCE_BUCKETS",
        "comma-separated buckets whose events are obeyed (required with `QUEUE_URL`); events for any other bucket "
        "go to the DLQ as `foreign_bucket`",
    )
    dlq_url: str = setting("", "DLQ_URL", "dead-letter queue; default = the queue's RedrivePolicy target")
    concurrency: int = setting(0, "WORKER_CONCURRENCY", "photos in work at once (0 = CPU count)", between(0, 256))
    detector: str = setting(
        "local",
        "DETECTOR",
        "`local` (CenterFace ONNX), `rekognition` (Amazon Rekognition DetectFaces) or `both` (union of the two)",
        one_of("local", "rekognition", "both"),
    )
    wait_seconds: int = setting(20, "SQS_WAIT_SECONDS", "long-poll wait", between(0, 20))
    visibility_seconds: int = setting(
        60, "HEARTBEAT_VISIBILITY_SECONDS", "visibility set by each extension", between(10, 43_200)
    )
    heartbeat_seconds: int = setting(
        20,
        "HEARTBEAT_SECONDS",
        "how often in-flight messages get their visibility extended (below the queue's visibility timeout)",
    )
    max_processing_seconds: int = setting(
        600, "MAX_PROCESSING_SECONDS", "extensions stop after this; the message then reappears"
    )
    retry_base_seconds: int = setting(10, "RETRY_BASE_SECONDS", "first retry delay; base x 2^(receives-1), jittered")
    retry_max_seconds: int = setting(900, "RETRY_MAX_SECONDS", "longest retry delay (SQS allows 12 h)")
    max_object_bytes: int = setting(
        50 * 2**20,
        "MAX_OBJECT_BYTES",
        "larger source objects go to the DLQ without being downloaded",
        Rule(lambda v: v >= 1, "positive"),
    )
    sse: str = setting(
        "AES256",
        "OUTPUT_SSE",
        "server-side encryption of outputs: `AES256` (SSE-S3) or `aws:kms`",
        one_of("AES256", "aws:kms"),
    )
    sse_kms_key_id: str = setting("", "SSE_KMS_KEY_ID", "KMS key for outputs (implies `aws:kms`)")
    shutdown_grace_seconds: int = setting(
        90,
        "SHUTDOWN_GRACE_SECONDS",
        "time to finish in-flight work after SIGTERM; with `SQS_WAIT_SECONDS` and 5 s to settle it must fit in "
        "ECS's 120 s stopTimeout",
        between(1, 115),
    )
    metrics_port: int = setting(9102, "METRICS_PORT", "`/metrics`, `/healthz`, `/readyz` (0 = off)", between(0, 65535))
    metrics_host: str = setting("0.0.0.0", "METRICS_HOST", "address the metrics and health server listens on")
    queue_depth_seconds: int = setting(15, "QUEUE_DEPTH_SECONDS", "how often queue depth is read for metrics")
    stuck_seconds: int = setting(90, "HEALTH_STUCK_SECONDS", "`/healthz` fails when the poll loop is silent this long")
    startup_wait_seconds: int = setting(
        60,
        "STARTUP_WAIT_SECONDS",
        "how long start-up retries an endpoint or queue that is not there yet (each retry logged); then exit 4",
        Rule(lambda v: v >= 0, ">= 0"),
    )
    log_format: str = setting(
        "auto", "LOG_FORMAT", "`json`, `console` or `auto` (console on a terminal)", one_of("json", "console", "auto")
    )
    log_level: str = setting(
        "info", "LOG_LEVEL", "log level", Rule(lambda v: v.lower() in LOG_LEVELS, "one of " + ", ".join(LOG_LEVELS))
    )


@dataclass(frozen=True, slots=True)
class RekognitionSettings:
    tps: float = setting(
        5.0,
        "REKOGNITION_TPS",
        "DetectFaces calls per second for the whole task (token bucket shared by its threads, retries included)",
        between(0.1, 1000),
    )
    max_attempts: int = setting(
        6, "REKOGNITION_MAX_ATTEMPTS", "DetectFaces attempts per photo (throttling, 5xx, network)", between(1, 50)
    )
    max_seconds: float = setting(
        30.0,
        "REKOGNITION_MAX_SECONDS",
        "retry budget per photo; then the message goes back to the queue",
        Rule(lambda v: 0 < v <= 600, "above 0 and at most 600"),
    )
    backoff_seconds: float = setting(
        0.5, "REKOGNITION_BACKOFF_SECONDS", "scale of the exponential backoff (full jitter)", between(0, 60)
    )
    backoff_max_seconds: float = setting(8.0, "REKOGNITION_BACKOFF_MAX_SECONDS", "longest single backoff wait")
    timeout_seconds: float = setting(
        10.0,
        "REKOGNITION_TIMEOUT_SECONDS",
        "read timeout of one DetectFaces call",
        Rule(lambda v: 0 < v <= 120, "above 0 and at most 120"),
    )
    fallback: str = setting(
        "none",
        "REKOGNITION_FALLBACK",
        "`local`: images Rekognition refuses are answered by the local detector instead of going to the DLQ",
        one_of("none", "local"),
    )


@dataclass(frozen=True, slots=True)
class DetectSettings:
    threshold: float = setting(
        0.2,
        "DETECT_THRESHOLD",
        "CenterFace score threshold; lower finds more faces and more false ones",
        between(0.05, 0.95),
    )
    min_face: int = setting(
        16,
        "DETECT_MIN_FACE",
        "smallest face (px wide, upright photo) protected at every position of every photo, whatever its size: "
        "the finest detection level brings it to the detector's reliable 16 px (cost ~ (16 / this)^2 per pixel)",
        between(8, 64),
    )
    coarse_threshold: float = setting(
        0.3,
        "DETECT_COARSE_THRESHOLD",
        "score needed on the levels coarser than the two finest (a false face there blurs a large area)",
        between(0.05, 0.95),
    )
    coarse_side: int = setting(
        640,
        "DETECT_COARSE_SIDE",
        "long side (px) of the whole-photo level that finds the largest faces",
        between(160, 1024),
    )
    fine_side: int = setting(
        1024,
        "DETECT_FINE_SIDE",
        "a photo smaller than this is looked at with its long side enlarged to it (at most DETECT_MAX_UPSCALE), "
        "for faces smaller than DETECT_MIN_FACE (0 = off)",
    )
    max_upscale: float = setting(
        1.5, "DETECT_MAX_UPSCALE", "small photos are enlarged at most this much for detection", between(1, 4)
    )
    tile_side: int = setting(
        1024,
        "DETECT_TILE_SIDE",
        "detection levels larger than this (px) are cut into overlapping tiles of at most this side "
        "(bounds the detector's memory: ~0.3 GB at 1024)",
        between(512, 4096),
    )
    precision: str = setting(
        "int8",
        "DETECT_PRECISION",
        "`int8` (quantized: ~2x faster than `fp32` with int8 dot products, ~1.3x without) or `fp32` (the original)",
        one_of("int8", "fp32"),
    )
    nms_iou: float = setting(
        0.3, "DETECT_NMS_IOU", "overlap (IoU) above which two detections are one face", between(0.1, 0.9)
    )
    rotated_side: int = setting(
        480,
        "DETECT_ROTATED_SIDE",
        "upside-down faces: the photo turned 180 degrees is looked at with a long side of at least this, "
        "and at DETECT_ROTATED_MIN_FACE (0 = no upside-down pass)",
        between(160, 4096, off=0),
    )
    rotated_min_face: int = setting(
        24,
        "DETECT_ROTATED_MIN_FACE",
        "smallest upside-down face (px wide) looked for at every position (the upside-down levels cost "
        "~ (16 / this)^2 of the photo's pixels)",
        between(12, 128),
    )
    rotated_threshold: float = setting(
        0.4,
        "DETECT_ROTATED_THRESHOLD",
        "score needed on that pass's two finest levels (stricter than upright: it sees more false faces)",
        between(0.05, 0.95),
    )
    rotated_coarse_threshold: float = setting(
        0.5,
        "DETECT_ROTATED_COARSE_THRESHOLD",
        "score needed on that pass's coarser levels (where a false face blurs a large area)",
        between(0.05, 0.95),
    )
    model_path: str = setting(
        "", "FACEBLUR_MODEL_PATH", "the verified CenterFace model file (empty = the package's `detect/models/`)"
    )


@dataclass(frozen=True, slots=True)
class RedactSettings:
    mode: str = setting("blur", "BLUR_MODE", "`blur`, `pixelate` or `solid`", one_of("blur", "pixelate", "solid"))
    padding: float = setting(
        0.4,
        "BLUR_PADDING",
        "box growth on every side, as a fraction of the face size, for faces up to 64 px",
        between(0, 1),
    )
    padding_large: float = setting(
        0.2,
        "BLUR_PADDING_LARGE",
        "the same for faces of 200 px and more (log-interpolated between; negative = `BLUR_PADDING`)",
        Rule(lambda v: v <= 1.0, "negative (= BLUR_PADDING) or 0..1"),
    )
    cells: int = setting(
        8, "BLUR_CELLS", "cells across a face region before spreading back (lower = stronger)", between(2, 24)
    )
    blocks: int = setting(8, "PIXELATE_BLOCKS", "blocks across a face in pixelate mode", between(2, 8))
    shape: str = setting("rect", "BLUR_SHAPE", "`rect` or `ellipse` (feathered)", one_of("rect", "ellipse"))


@dataclass(frozen=True, slots=True)
class ImageSettings:
    max_pixels: int = setting(
        50_000_000,
        "MAX_PIXELS",
        "images with more pixels (read from the header) are refused",
        between(1, 1_000_000_000),
    )
    max_side: int = setting(20_000, "MAX_SIDE", "images wider or taller than this (px) are refused", between(1, 32_000))
    max_metadata_bytes: int = setting(
        8 * 2**20,
        "MAX_METADATA_BYTES",
        "files carrying more metadata than this (segments, chunks, profiles; compressed ones inflated) are refused",
        between(64 * 2**10, 2**30),
    )
    memory_budget: str = setting(
        "auto",
        "MEMORY_BUDGET",
        "memory photos in work may reserve together (`auto` = 80% of the task's memory beyond 512 MiB), or a size "
        "such as `1500MiB`",
        Rule(lambda v: v == "auto" or _is_size(v), "auto or a size such as 1500MiB"),
    )
    jpeg_quality: int = setting(
        0, "JPEG_QUALITY", "0 = the input's estimated quality (60-95), else a fixed quality", between(30, 100, off=0)
    )
    memory_limit: str = setting("512MiB", "MAGICK_MEMORY_LIMIT", "ImageMagick's pixel cache in memory", SIZE)
    map_limit: str = setting("1GiB", "MAGICK_MAP_LIMIT", "ImageMagick's memory-mapped pixel cache", SIZE)
    disk_limit: str = setting("2GiB", "MAGICK_DISK_LIMIT", "ImageMagick's pixel cache on disk", SIZE)
    threads: int = setting(
        1,
        "MAGICK_THREAD_LIMIT",
        "OpenMP threads per ImageMagick call (the worker pool is the parallelism)",
        between(1, 64),
    )


@dataclass(frozen=True, slots=True)
class Settings:
    service: ServiceSettings = field(default_factory=ServiceSettings)
    rekognition: RekognitionSettings = field(default_factory=RekognitionSettings)
    detect: DetectSettings = field(default_factory=DetectSettings)
    redact: RedactSettings = field(default_factory=RedactSettings)
    image: ImageSettings = field(default_factory=ImageSettings)

    @property
    def concurrency(self) -> int:
        return self.service.concurrency or os.cpu_count() or 1

    @property
    def source_buckets(self) -> frozenset[str]:
        return frozenset(b.strip() for b in self.service.source_buckets.split(",") if b.strip())

    def __post_init__(self) -> None:
        validate(self)


GROUPS = ("service", "rekognition", "detect", "redact", "image")


def declarations() -> Iterator[tuple[str, Any]]:
    """(group, dataclass field) of every setting, in declaration order."""
    defaults = Settings()
    for group in GROUPS:
        for f in fields(getattr(defaults, group)):
            yield group, f


def _convert(raw: str, like: Any, name: str) -> Any:
    try:
        if isinstance(like, int):
            return int(raw)
        if isinstance(like, float):
            return float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a valid {type(like).__name__}") from None
    return raw.strip()


def from_env(environ: Mapping[str, str] | None = None) -> Settings:
    environ = os.environ if environ is None else environ
    values: dict[str, dict[str, Any]] = {g: {} for g in GROUPS}
    for group, f in declarations():
        raw = environ.get(f.metadata["env"], "")
        if raw != "":
            values[group][f.name] = _convert(raw, f.default, f.metadata["env"])
    return Settings(
        service=ServiceSettings(**values["service"]),
        rekognition=RekognitionSettings(**values["rekognition"]),
        detect=DetectSettings(**values["detect"]),
        redact=RedactSettings(**values["redact"]),
        image=ImageSettings(**values["image"]),
    )


def env_var(group: str, name: str) -> str:
    """The environment variable behind a setting, for error messages."""
    return next(f.metadata["env"] for g, f in declarations() if (g, f.name) == (group, name))


def _check(ok: bool, group: str, name: str, rule: str) -> None:
    if not ok:
        raise ConfigError(f"{env_var(group, name)} must be {rule}")


def validate(s: Settings) -> None:
    for group in GROUPS:
        values = getattr(s, group)
        for f in fields(values):
            rule = f.metadata["rule"]
            if rule is not None and not rule.ok(getattr(values, f.name)):
                raise ConfigError(f"{f.metadata['env']} must be {rule.text}")
    # Rules between settings.
    d, v, k = s.detect, s.service, s.rekognition
    _check(
        d.fine_side == 0 or d.coarse_side < d.fine_side <= 8192,
        "detect",
        "fine_side",
        "0 or between DETECT_COARSE_SIDE and 8192",
    )
    _check(
        k.backoff_seconds <= k.backoff_max_seconds <= 300,
        "rekognition",
        "backoff_max_seconds",
        "at least REKOGNITION_BACKOFF_SECONDS and at most 300",
    )
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
    _check(v.stuck_seconds > v.wait_seconds, "service", "stuck_seconds", "longer than SQS_WAIT_SECONDS")
    _check(
        v.wait_seconds + v.shutdown_grace_seconds + SETTLE_SECONDS <= STOP_TIMEOUT_SECONDS,
        "service",
        "shutdown_grace_seconds",
        f"at most {STOP_TIMEOUT_SECONDS} - SQS_WAIT_SECONDS - {SETTLE_SECONDS}: a poll in progress, the grace period "
        "and the last settling must end before ECS's SIGKILL",
    )
    _check(
        not v.queue_url or queue_url_ok(v.queue_url),
        "service",
        "queue_url",
        "an SQS queue URL such as https://sqs.eu-west-1.amazonaws.com/123456789012/faceblur-uploads "
        f"(not {v.queue_url[:80]!r})",
    )
    _check(bool(v.output_bucket) or not v.queue_url, "service", "output_bucket", "set when QUEUE_URL is set")
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
    return {f"{g}.{f.name}": getattr(getattr(s, g), f.name) for g, f in declarations()}


def settings_table() -> str:
    """The README's configuration table, rendered from the declarations."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for _, f in declarations():
        default = "(empty)" if f.default == "" else f"`{f.default}`"
        rule = f.metadata["rule"]
        bound = f" ({rule.text})" if rule is not None and rule.text.startswith(("between", "0 (off)")) else ""
        rows.append(f"| `{f.metadata['env']}` | {default} | {f.metadata['help']}{bound} |")
    return "\n".join(rows) + "\n"
