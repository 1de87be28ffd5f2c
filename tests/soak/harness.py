"""Chaos soak: real workers under faults, and proof that nothing is lost and nothing unblurred ever leaks.

Processes and threads, all on 127.0.0.1:
- a moto server (its own process) with the stack `worker.dev.stack.bootstrap` builds; the output bucket is versioned,
  so every PUT the workers ever made stays visible;
- a fault-injecting proxy (tests/soak/faultproxy.py) between the workers and moto: 500/503 before or after the call
  reached moto, slow answers, connection resets;
- the fake Rekognition endpoint, with throttling bursts;
- N worker processes (`python -m worker run`, DETECTOR=rekognition), SIGKILLed or SIGTERMed at random moments and
  restarted; their peak RSS read from /proc, their /metrics scraped every second, their JSON logs kept;
- an uploader (the users: straight to moto, no faults): real photos under ordinary and odd keys, 20+ kinds of bad
  upload, malformed and ignorable queue messages, duplicate notifications (tests/soak/corpus.py);
- a watcher that lists every version of every output object while the soak runs and checks each one the moment it
  appears with our own copy of the referee's measure (tests/quality/measure.py): each annotated face must be at least
  as protected as in a reference blur of the same photo.
Then chaos stops, the queue drains, and the invariants are checked (see `check`). `python -m tests.soak.harness`
writes the report (docs/reliability.md by `make soak`); tests/soak/test_soak.py runs a short soak in `make test`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from worker import process  # noqa: E402

# What the entry point (`cli.main`) does first, before numpy or ImageMagick load: without it the reference blurs
# made in this process refuse to run ("the worker's ImageMagick policy is not in force"). Idempotent, so it is
# harmless under pytest, whose conftest has already done it.
process.prepare()

from tests.helpers.evalset import DEV  # noqa: E402
from tests.helpers.moto import moto_server_process, use_endpoint  # noqa: E402
from tests.helpers.net import answers, free_port  # noqa: E402
from tests.integration.integration_support import metric, metric_total, parse_metrics  # noqa: E402
from tests.quality.measure import PROTECTED, displayed_grey, face_detail_corr  # noqa: E402
from tests.soak.corpus import DLQ, IGNORED, OUTPUT, Item, duplicate_notification, plan  # noqa: E402
from tests.soak.faultproxy import FaultProxy, Faults  # noqa: E402
from worker.aws import client  # noqa: E402
from worker.dev.fake_rekognition import start_fake_rekognition  # noqa: E402
from worker.dev.stack import LOCAL_CREDENTIALS, Names, bootstrap  # noqa: E402
from worker.events import parse_body  # noqa: E402

MAX_OBJECT_BYTES = 8 * 2**20


@dataclass
class SoakConfig:
    uploads: int = 150
    workers: int = 2
    concurrency: int = 2  # WORKER_CONCURRENCY of each worker
    fault_rate: float = 0.10  # share of the workers' S3/SQS calls that meet a fault
    kill_every: tuple[float, float] = (3.0, 8.0)  # seconds between two signals to a random worker
    term_every: int = 4  # every 4th signal is a SIGTERM (graceful stop), the others SIGKILL
    burst_every: tuple[float, float] = (8.0, 15.0)  # seconds between Rekognition throttling bursts
    burst_seconds: tuple[float, float] = (2.0, 4.0)
    upload_seconds: float = 40.0  # the uploads are spread over this long
    max_rss_mb: int = 1024  # bound on each worker's peak RSS (the ECS task memory per worker is larger)
    drain_timeout: float = 0.0  # after the uploads, for every photo to be out and the queue empty (0: 300 s + 1 s
    # an upload: the kills and restarts cost the long soak about half its throughput)
    seed: int = 1
    dev: Path = DEV


# ------------------------------------------------------------------------------------------------ worker fleet
@dataclass
class Incarnation:
    slot: int
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    started: float
    ended: float | None = None
    ended_by: str = ""  # sigkill | sigterm | exit | final
    exit_code: int | None = None
    peak_rss_kb: int = 0
    metrics: dict[Any, float] = field(default_factory=dict)  # the last scrape


class Fleet:
    """Keeps `n` worker processes alive: a dead one is replaced by a new incarnation after a short pause."""

    def __init__(self, n: int, env: dict[str, str], logdir: Path) -> None:
        self.n, self.env, self.logdir = n, env, logdir
        self.lock = threading.Lock()
        self.all: list[Incarnation] = []
        self.live: dict[int, Incarnation] = {}
        self.keep_alive = True
        self._stop = threading.Event()
        self._monitor = threading.Thread(target=self._watch, name="fleet", daemon=True)

    def start(self) -> Fleet:
        for slot in range(self.n):
            self._spawn(slot)
        self._monitor.start()
        return self

    def _spawn(self, slot: int) -> None:
        port = free_port()
        log = self.logdir / f"worker-{slot}-{len(self.all):03d}.log"
        env = {**self.env, "METRICS_PORT": str(port)}
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "worker", "run"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        inc = Incarnation(slot, proc, port, log, time.monotonic())
        with self.lock:
            self.all.append(inc)
            self.live[slot] = inc

    def signal(self, slot: int, sig: signal.Signals) -> Incarnation | None:
        with self.lock:
            inc = self.live.get(slot)
        if inc is None or inc.proc.poll() is not None:
            return None
        if sig == signal.SIGTERM and inc.ended_by:
            return None  # already stopping: ECS sends one SIGTERM, then SIGKILL (a second SIGTERM exits at once)
        inc.ended_by = {signal.SIGKILL: "sigkill", signal.SIGTERM: "sigterm"}.get(sig, str(sig))
        inc.proc.send_signal(sig)
        return inc

    def _sample(self, inc: Incarnation, scrape: bool) -> None:
        try:
            status = Path(f"/proc/{inc.proc.pid}/status").read_text()
            hwm = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
            inc.peak_rss_kb = max(inc.peak_rss_kb, hwm)
        except (OSError, StopIteration, ValueError):
            pass
        if scrape:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{inc.port}/metrics", timeout=1) as r:
                    inc.metrics = parse_metrics(r.read().decode())
            except OSError:
                pass

    def _watch(self) -> None:
        tick = 0
        while not self._stop.wait(0.25):
            tick += 1
            with self.lock:
                live = list(self.live.items())
            for slot, inc in live:
                if inc.proc.poll() is None:
                    self._sample(inc, scrape=tick % 4 == 0)
                    continue
                inc.ended, inc.exit_code = time.monotonic(), inc.proc.returncode
                inc.ended_by = inc.ended_by or "exit"
                with self.lock:
                    self.live.pop(slot, None)
                if self.keep_alive:
                    time.sleep(0.3)
                    self._spawn(slot)

    def ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                live = list(self.live.values())
            if len(live) == self.n and all(answers(f"http://127.0.0.1:{i.port}/readyz") for i in live):
                return
            time.sleep(0.2)
        raise RuntimeError("workers did not become ready")

    def stop(self) -> None:
        """Final graceful stop: scrape each live worker once more, then SIGTERM and wait."""
        self.keep_alive = False
        self._stop.set()
        self._monitor.join(5)
        with self.lock:
            live = list(self.live.values())
        for inc in live:
            self._sample(inc, scrape=True)
            inc.ended_by = "final"
            inc.proc.send_signal(signal.SIGTERM)
        for inc in live:
            try:
                inc.exit_code = inc.proc.wait(120)
            except subprocess.TimeoutExpired:
                inc.proc.kill()
                inc.exit_code = inc.proc.wait()
            inc.ended = time.monotonic()
        for inc in self.all:  # anything that slipped through (started as the monitor stopped)
            if inc.proc.poll() is None:
                inc.proc.kill()
                inc.proc.wait()


# ---------------------------------------------------------------------------------------------------- watcher
@dataclass
class Seen:
    key: str
    version: str
    at: float
    ok: bool
    why: str = ""


class Watcher:
    """Lists every version of every output object, continuously, and checks each one as it appears."""

    def __init__(self, s3: Any, bucket: str, items: dict[str, Item], truth: Truth) -> None:
        self.s3, self.bucket, self.items, self.truth = s3, bucket, items, truth
        self.seen: dict[tuple[str, str], Seen] = {}
        self.listings = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watcher", daemon=True)

    def start(self) -> Watcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(120)
        self.sweep()  # a last full pass: nothing written before the stop escapes the check

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.sweep()

    def versions(self) -> list[tuple[str, str]]:
        out = []
        for page in self.s3.get_paginator("list_object_versions").paginate(Bucket=self.bucket):
            out += [(v["Key"], v["VersionId"]) for v in page.get("Versions", [])]
        self.listings += 1
        return out

    def sweep(self) -> None:
        for key, version in self.versions():
            if (key, version) in self.seen:
                continue
            data = self.s3.get_object(Bucket=self.bucket, Key=key, VersionId=version)["Body"].read()
            ok, why = self.judge(key, data)
            self.seen[(key, version)] = Seen(key, version, time.monotonic(), ok, why)

    def judge(self, key: str, data: bytes) -> tuple[bool, str]:
        item = self.items.get(key)
        if item is None:
            return False, "output for a key nobody uploaded"
        if item.expect != OUTPUT:
            return False, f"output for an invalid upload ({item.kind})"
        assert item.photo is not None
        return self.truth.check(item.photo, data)


class Truth:
    """Per dev photo: the annotated faces (displayed frame) and how many a reference blur protects."""

    def __init__(self, dev: Path) -> None:
        self.dev = dev
        self.entries = {e["file"]: e for e in json.loads((dev / "annotations.json").read_text())}
        self.originals: dict[str, Any] = {}
        self.reference: dict[str, int] = {}  # photo -> faces protected in the reference blur
        self.verdicts: dict[tuple[str, str], tuple[bool, str]] = {}
        self.lock = threading.Lock()

    def faces(self, photo: str) -> list[list[int]]:
        entry = self.entries[photo]
        frame = entry.get("oriented") or entry
        attrs = entry.get("face_attrs") or [{}] * len(frame["faces"])
        return [b for b, a in zip(frame["faces"], attrs, strict=True) if not a.get("tiny") and not a.get("invalid")]

    def original(self, photo: str) -> Any:
        with self.lock:
            if photo not in self.originals:
                self.originals[photo] = displayed_grey((self.dev / photo).read_bytes())
            return self.originals[photo]

    def protected(self, photo: str, data: bytes) -> tuple[int, int, str]:
        orig = self.original(photo)
        out = displayed_grey(data)
        if out.shape != orig.shape:
            return 0, 0, f"output is {out.shape[1]}x{out.shape[0]}, the upright photo {orig.shape[1]}x{orig.shape[0]}"
        corrs = [face_detail_corr(orig, out, b) for b in self.faces(photo)]
        counted = [c for c in corrs if c is not None]
        return sum(c <= PROTECTED for c in counted), len(counted), ""

    def set_reference(self, photo: str, data: bytes) -> None:
        self.reference[photo] = self.protected(photo, data)[0]

    def check(self, photo: str, data: bytes) -> tuple[bool, str]:
        """Judged once per distinct output: the same bytes of the same photo get the same verdict (the pipeline
        is deterministic, so most outputs of a photo are identical and this keeps the watcher's CPU small)."""
        digest = (photo, hashlib.sha256(data).hexdigest())
        if digest not in self.verdicts:
            self.verdicts[digest] = self._check(photo, data)
        return self.verdicts[digest]

    def _check(self, photo: str, data: bytes) -> tuple[bool, str]:
        try:
            protected, counted, why = self.protected(photo, data)
        except Exception as exc:  # an output we cannot even read is a failure, not a crash of the watcher
            return False, f"unreadable output: {exc}"
        if why:
            return False, why
        need = self.reference.get(photo, counted)
        if protected < need:
            return False, f"{counted - protected} of {counted} faces keep their detail (reference: {counted - need})"
        return True, ""


class NoReference(RuntimeError):
    """A reference blur could not be made: the soak stops, it does not judge outputs against nothing."""


def reference_blurs(truth: Truth, photos: set[str], env: dict[str, str]) -> None:
    """The same pipeline as the workers (same detector settings, same fake endpoint, no faults), in this process:
    how many annotated faces a correct blur of each photo protects. The measure, not the service, judges.
    Raises when any reference cannot be made: without it every miss would be judged against nothing."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        from worker.blur import blur_photo
        from worker.runtime import start

        settings, detector = start()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    def one(photo: str) -> None:
        try:
            truth.set_reference(photo, blur_photo((truth.dev / photo).read_bytes(), detector, settings).data)
        except Exception as exc:
            raise NoReference(f"no reference blur of {photo}: {type(exc).__name__}: {exc}") from exc

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(one, sorted(photos)))
    missing = sorted(photos - set(truth.reference))
    if missing:
        raise NoReference(f"no reference blur of {len(missing)} photos: {missing[:5]}")
    counted = sum(len(truth.faces(p)) for p in photos)
    if counted and not sum(truth.reference.values()):
        raise NoReference(f"the reference blurs protect none of {counted} annotated faces: the pipeline is broken")


# ------------------------------------------------------------------------------------------------------ chaos
class Chaos:
    """Signals to random workers and Rekognition throttling bursts, until stopped."""

    def __init__(self, cfg: SoakConfig, fleet: Fleet, fake: Any) -> None:
        self.cfg, self.fleet, self.fake = cfg, fleet, fake
        self.rng = random.Random(cfg.seed + 1)
        self.counts: Counter[str] = Counter()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._signals, name="chaos-signals", daemon=True),
            threading.Thread(target=self._bursts, name="chaos-bursts", daemon=True),
        ]

    def start(self) -> Chaos:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)
        self.fake.configure(throttle_rate=0.0)

    def _signals(self) -> None:
        n = 0
        while not self._stop.wait(self.rng.uniform(*self.cfg.kill_every)):
            n += 1
            sig = signal.SIGTERM if n % self.cfg.term_every == 0 else signal.SIGKILL
            if self.fleet.signal(self.rng.randrange(self.cfg.workers), sig):
                self.counts[sig.name] += 1

    def _bursts(self) -> None:
        while not self._stop.wait(self.rng.uniform(*self.cfg.burst_every)):
            self.fake.configure(throttle_rate=0.9)
            self.counts["throttling_burst"] += 1
            if self.rng.random() < 0.5 and self.fleet.signal(self.rng.randrange(self.cfg.workers), signal.SIGTERM):
                self.counts["SIGTERM_during_burst"] += 1
            self._stop.wait(self.rng.uniform(*self.cfg.burst_seconds))
            self.fake.configure(throttle_rate=0.0)


# ------------------------------------------------------------------------------------------------------- soak
@dataclass
class Result:
    config: dict[str, Any]
    numbers: dict[str, Any]
    violations: list[str]

    @property
    def ok(self) -> bool:
        return not self.violations


def run(cfg: SoakConfig, workdir: Path, log: Any = print) -> Result:
    with moto_server_process() as endpoint:
        return _run(cfg, workdir, log, endpoint)


def _run(cfg: SoakConfig, workdir: Path, log: Any, endpoint: str) -> Result:
    t0 = time.monotonic()
    proxy = fake = fleet = chaos = watcher = None
    try:
        use_endpoint(endpoint)
        os.environ.update(LOCAL_CREDENTIALS)
        stack = bootstrap(Names(visibility_seconds=10, max_receive_count=10))
        s3, sqs = client("s3", 16), client("sqs")
        s3.put_bucket_versioning(Bucket=stack.output_bucket, VersioningConfiguration={"Status": "Enabled"})
        proxy = FaultProxy(upstream=endpoint, faults=Faults(rate=cfg.fault_rate, seed=cfg.seed)).start()
        fake = start_fake_rekognition(seed=cfg.seed)
        detector_env = {
            "DETECTOR": "rekognition",
            "REKOGNITION_FALLBACK": "local",  # Rekognition refuses images under 80 px; the soak uploads some
            **fake.env(),
        }
        env = {
            **os.environ,
            **stack.env(),
            **detector_env,
            "AWS_ENDPOINT_URL": proxy.url,  # S3 and SQS through the faults; Rekognition straight to the fake
            "WORKER_CONCURRENCY": str(cfg.concurrency),
            "METRICS_HOST": "127.0.0.1",
            "LOG_FORMAT": "json",
            "PYTHONUNBUFFERED": "1",
            "SQS_WAIT_SECONDS": "1",
            "HEARTBEAT_SECONDS": "3",
            "HEARTBEAT_VISIBILITY_SECONDS": "10",
            "RETRY_BASE_SECONDS": "1",
            "RETRY_MAX_SECONDS": "8",
            "SHUTDOWN_GRACE_SECONDS": "20",
            "QUEUE_DEPTH_SECONDS": "5",
            "MAX_OBJECT_BYTES": str(MAX_OBJECT_BYTES),
            "REKOGNITION_TPS": "50",
            "REKOGNITION_BACKOFF_SECONDS": "0.2",
            "REKOGNITION_BACKOFF_MAX_SECONDS": "2",
        }
        items = plan(cfg.dev, cfg.uploads, stack.source_bucket, MAX_OBJECT_BYTES, cfg.seed)
        by_key = {it.key: it for it in items if it.data is not None}
        truth = Truth(cfg.dev)
        log(f"soak: {len(items)} items, {cfg.workers} workers x {cfg.concurrency}, faults {cfg.fault_rate:.0%}")

        # Objects deleted before processing: uploaded (the notification is queued) and deleted before any worker.
        etags: dict[str, str] = {}
        for it in items:
            if it.before_workers:
                s3.put_object(Bucket=stack.source_bucket, Key=it.key, Body=it.data)
                s3.delete_object(Bucket=stack.source_bucket, Key=it.key)

        # The references are made while the fleet starts; a failure raises here (NoReference), before any upload.
        photos = {it.photo for it in items if it.expect == OUTPUT and it.photo}
        with ThreadPoolExecutor(1, thread_name_prefix="references") as refs_pool:
            refs = refs_pool.submit(reference_blurs, truth, photos, detector_env)
            fleet = Fleet(cfg.workers, env, workdir).start()
            fleet.ready()
            refs.result()  # the watcher judges against the references, made before any fault (they take seconds)
        watcher = Watcher(s3, stack.output_bucket, by_key, truth).start()
        chaos = Chaos(cfg, fleet, fake).start()
        upload_start = time.monotonic()

        order = [it for it in items if not it.before_workers and it.duplicate_of is None]
        order += [it for it in items if it.duplicate_of is not None]  # after the uploads they repeat
        gap = cfg.upload_seconds / max(1, len(order))
        sizes: dict[str, int] = {}
        for i, it in enumerate(order):
            if it.data is not None:
                etags[it.key] = s3.put_object(Bucket=stack.source_bucket, Key=it.key, Body=it.data)["ETag"].strip('"')
                sizes[it.key] = len(it.data)
            elif it.body is not None:
                sqs.send_message(QueueUrl=stack.queue_url, MessageBody=it.body)
            elif it.duplicate_of is not None:
                body = duplicate_notification(
                    stack.source_bucket, it.duplicate_of, etags[it.duplicate_of], sizes[it.duplicate_of], i
                )
                sqs.send_message(QueueUrl=stack.queue_url, MessageBody=body)
            time.sleep(max(0.0, upload_start + (i + 1) * gap - time.monotonic()))
        uploaded_at = time.monotonic()
        log(f"soak: uploads done in {uploaded_at - upload_start:.0f} s; chaos goes on until every photo is out")

        valid = [it for it in items if it.expect == OUTPUT and it.data is not None]
        deadline = time.monotonic() + (cfg.drain_timeout or 300.0 + cfg.uploads)
        while time.monotonic() < deadline and not _all_out(watcher, valid):
            time.sleep(1.0)
        chaos.stop()
        proxy.enabled = False
        log(f"soak: chaos stopped after {time.monotonic() - upload_start:.0f} s; draining")
        while time.monotonic() < deadline and not (_queue_empty(sqs, stack.queue_url) and _all_out(watcher, valid)):
            time.sleep(1.0)
        drained_at = time.monotonic()
        time.sleep(2.0)  # let the last deletes land
        fleet.stop()
        watcher.stop()
        faults = proxy.counts()
        numbers, violations = check(cfg, items, etags, stack, s3, sqs, fleet, watcher, truth)
        numbers.update(
            faults_injected={**faults, **{f"rekognition_{k}": v for k, v in fake.snapshot().items()}},
            chaos=dict(chaos.counts),
            seconds_uploading=round(uploaded_at - upload_start, 1),
            seconds_to_drain_after_uploads=round(drained_at - uploaded_at, 1),
            seconds_total=round(time.monotonic() - t0, 1),
            watcher_listings=watcher.listings,
        )
        return Result(_config_dict(cfg), numbers, violations)
    finally:
        if chaos is not None:
            chaos.stop()
        if fleet is not None:
            fleet.stop()
        if proxy is not None:
            proxy.stop()
        if fake is not None:
            fake.stop()


def _config_dict(cfg: SoakConfig) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in cfg.__dict__.items() if k != "dev"}


def _all_out(watcher: Watcher, valid: list[Item]) -> bool:
    have = {k for k, _ in watcher.seen}
    return all(it.key in have for it in valid)


def _queue_empty(sqs: Any, url: str) -> bool:
    attrs = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"]) == 0


def _dlq_messages(sqs: Any, url: str) -> list[dict[str, Any]]:
    """Every DLQ message once: received with a long visibility so none comes round twice."""
    out: dict[str, dict[str, Any]] = {}
    empty = 0
    while empty < 3:
        got = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=600,
            MessageAttributeNames=["All"],
            WaitTimeSeconds=0,
        ).get("Messages", [])
        empty = 0 if got else empty + 1
        for m in got:
            out[m["MessageId"]] = m
    return list(out.values())


def _events(inc: Incarnation) -> list[dict[str, Any]]:
    events = []
    for line in inc.log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):  # a SIGKILLed process's last line may be cut short
                events.append(json.loads(line))
    return events


def check(
    cfg: SoakConfig,
    items: list[Item],
    etags: dict[str, str],
    stack: Any,
    s3: Any,
    sqs: Any,
    fleet: Fleet,
    watcher: Watcher,
    truth: Truth,
) -> tuple[dict[str, Any], list[str]]:
    """The invariants. Returns (numbers for the report, violations)."""
    bad: list[str] = []
    versions: Counter[str] = Counter(k for k, _ in watcher.seen)
    uploads = {it.key: it for it in items if it.data is not None}
    # 1. Nothing unblurred, ever: every version that ever existed passed the measure.
    unblurred = [s for s in watcher.seen.values() if not s.ok]
    bad += [f"output {s.key!r} (version {s.version}): {s.why}" for s in unblurred]
    # 2. Every valid photo exactly one output; no output for anything else.
    valid = [it for it in items if it.expect == OUTPUT and it.data is not None]
    lost = [it.key for it in valid if versions[it.key] == 0]
    doubled = [k for k, n in versions.items() if n > 1]
    bad += [f"lost: no output for {k!r}" for k in lost]
    bad += [f"double output: {k!r} was written {versions[k]} times" for k in doubled]
    # 3. Every invalid input in the DLQ with a reason; ignored ones nowhere.
    dlq = _dlq_messages(sqs, stack.dlq_url)
    by_body: Counter[str] = Counter()
    by_key: Counter[str] = Counter()
    no_reason = 0
    reasons: Counter[str] = Counter()
    sends: set[tuple[str, str]] = set()  # one per DLQ send; a send whose answer was lost and was retried is one
    for m in dlq:
        attrs = m.get("MessageAttributes", {})
        value = {k: v.get("StringValue", "") for k, v in attrs.items()}
        sends.add((value.get("faceblur-source-message-id", m["MessageId"]), value.get("faceblur-receive-count", "")))
        reason = value.get("faceblur-reason", "")
        no_reason += not reason
        reasons[reason or "(none: redriven by SQS)"] += 1
        by_body[m["Body"]] += 1
        try:
            for ref in parse_body(m["Body"]):
                by_key[ref.key] += 1
        except Exception:
            pass
    expected_dlq = [it for it in items if it.expect == DLQ]
    for it in expected_dlq:
        found = by_body[it.body] if it.body is not None else by_key[it.key]
        if not found:
            bad.append(f"invalid input {it.kind} ({it.key!r}) is not in the DLQ")
        if it.data is not None and versions[it.key]:
            bad.append(f"invalid input {it.kind} ({it.key!r}) has an output")
    for it in items:
        if it.expect == IGNORED and by_body[it.body or ""]:
            bad.append(f"{it.kind} should have been ignored, is in the DLQ")
    bad += [f"valid photo {it.key!r} is in the DLQ" for it in valid if by_key[it.key]]
    if no_reason:
        bad.append(f"{no_reason} DLQ messages carry no reason (moved by SQS's redrive, not by a worker)")
    # 4. Sources untouched, queue drained.
    listed = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=stack.source_bucket):
        listed.update({o["Key"]: o["ETag"].strip('"') for o in page.get("Contents", [])})
    kept = {k: e for k, e in etags.items() if not uploads[k].delete_after_upload}
    if listed != kept:
        changed = sorted(set(listed.items()) ^ set(kept.items()))[:5]
        bad.append(f"source bucket changed: {changed}")
    if not _queue_empty(sqs, stack.queue_url):
        bad.append("the queue is not empty at the end")
    # 5. Worker memory and exits.
    peak_mb = max((inc.peak_rss_kb for inc in fleet.all), default=0) / 1024
    if peak_mb > cfg.max_rss_mb:
        bad.append(f"a worker's peak RSS was {peak_mb:.0f} MB, above the {cfg.max_rss_mb} MB bound")
    # SIGTERM means "finish and exit 0", also during start-up. Only a process signalled before the interpreter
    # reached the worker's code (nothing logged yet) may die of it: it had taken no work.
    for inc in fleet.all:
        before_our_code = inc.exit_code == -signal.SIGTERM and inc.log.stat().st_size == 0
        if inc.ended_by in ("final", "sigterm") and inc.exit_code not in (0, None) and not before_our_code:
            bad.append(f"SIGTERMed worker {inc.log.name} exited with {inc.exit_code}")
    crashed = [inc for inc in fleet.all if inc.ended_by == "exit"]
    bad += [f"worker {inc.log.name} exited by itself with {inc.exit_code}" for inc in crashed]
    # 6. Metrics and logs reconcile with the ledger.
    numbers_metrics, metric_bad = reconcile(fleet, cfg.concurrency, sum(versions.values()), len(sends))
    bad += metric_bad
    events = [e for inc in fleet.all for e in _events(inc)]
    logged = {
        e.get("output_key") or e.get("key") for e in events if e.get("event") in ("photo blurred", "photo already done")
    }
    unlogged = [k for k in versions if k not in logged]
    bad += [f"output {k!r} exists but no worker logged making or finding it" for k in unlogged]
    dup_dlq = sum(n - 1 for n in by_body.values() if n > 1)
    counted = sum(len(truth.faces(p)) for p in truth.reference)
    numbers = {
        "items": len(items),
        "uploads": len(uploads),
        "valid_photos": len(valid),
        "photo_uploads_by_size_mp": _sizes(valid, truth),
        "invalid_kinds": len({it.kind for it in expected_dlq}),
        "invalid_items": len(expected_dlq),
        "ignored_items": sum(it.expect == IGNORED for it in items),
        "duplicate_notifications": sum(it.duplicate_of is not None for it in items),
        "outputs": len(versions),
        "output_versions_checked": len(watcher.seen),
        "lost": len(lost),
        "unblurred": len(unblurred),
        "double_outputs": len(doubled),
        "dlq_messages": len(dlq),
        "dlq_repeats": dup_dlq,
        "dlq_reasons": dict(reasons),
        "worker_incarnations": len(fleet.all),
        "ended_by": dict(Counter(inc.ended_by for inc in fleet.all)),
        "peak_rss_mb": round(peak_mb),
        "reference_faces_protected": f"{sum(truth.reference.values())}/{counted}",
        **numbers_metrics,
    }
    return numbers, bad


def _sizes(valid: list[Item], truth: Truth) -> dict[str, int]:
    out: Counter[str] = Counter()
    for it in valid:
        e = truth.entries[it.photo or ""]
        mp = e["width"] * e["height"] / 1e6
        out["< 1 MP" if mp < 1 else "1-4 MP" if mp < 4 else ">= 4 MP"] += 1
    return dict(out)


def reconcile(fleet: Fleet, concurrency: int, writes: int, dlq: int) -> tuple[dict[str, Any], list[str]]:
    """Metrics against logs against the ledger.
    - Exact: a worker stopped at the end was scraped idle, so its counters equal its own log lines.
    - Every worker: its last scrape counts no more than its log says (a kill may cut off what came after).
    - Ledger: every output write and DLQ message was logged by the worker that made it, except what a SIGKILL
      cut off between the call and the log line (at most its pool each)."""
    bad: list[str] = []
    kinds = {"stored": "photo blurred", "dlq": "message sent to DLQ"}
    logged = dict.fromkeys(kinds, 0)
    scraped = dict.fromkeys(kinds, 0.0)
    for inc in fleet.all:
        events = Counter(e.get("event") for e in _events(inc))
        counts = {
            "stored": metric(inc.metrics, "faceblur_photos_total", outcome="stored"),
            "dlq": metric_total(inc.metrics, "faceblur_dlq_sends_total"),
        }
        for k, event in kinds.items():
            logged[k] += events[event]
            scraped[k] += counts[k]
            if inc.ended_by == "final" and counts[k] != events[event]:
                bad.append(f"{inc.log.name}: counter {k} = {counts[k]:.0f}, its log says {events[event]}")
            if counts[k] > events[event] + (inc.ended_by == "sigkill"):
                bad.append(f"{inc.log.name}: counter {k} = {counts[k]:.0f} exceeds its log's {events[event]}")
    kills = sum(inc.ended_by == "sigkill" for inc in fleet.all)
    for k, ledger in (("stored", writes), ("dlq", dlq)):
        if not 0 <= ledger - logged[k] <= kills * concurrency:
            bad.append(f"{ledger} {k} in the ledger, {logged[k]} in the logs ({kills} SIGKILLs)")
    numbers = {
        "ledger_writes_logged_scraped": [writes, logged["stored"], int(scraped["stored"])],
        "ledger_dlq_logged_scraped": [dlq, logged["dlq"], int(scraped["dlq"])],
    }
    return numbers, bad


# ----------------------------------------------------------------------------------------------------- report
def report_md(result: Result, started: str, machine: str) -> str:
    n = result.numbers
    lines = [
        f"Run: {started}, {machine}.",
        "",
        "| | |",
        "|---|---|",
    ]
    lines += [f"| {k} | {json.dumps(v) if isinstance(v, dict) else v} |" for k, v in n.items()]
    lines += ["", "Configuration: " + ", ".join(f"{k}={v}" for k, v in result.config.items()), ""]
    lines.append("Violations: none." if result.ok else "Violations:\n" + "\n".join(f"- {v}" for v in result.violations))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.soak.harness", description=__doc__.splitlines()[0])
    p.add_argument("--uploads", type=int, default=int(os.environ.get("SOAK_UPLOADS", "150")))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=int(os.environ.get("SOAK_SEED", "1")))
    p.add_argument("--fault-rate", type=float, default=0.10)
    p.add_argument("--json", type=Path, help="write the result as JSON here")
    p.add_argument("--markdown", type=Path, help="write the report table here")
    p.add_argument("--keep-logs", type=Path, help="if the soak fails, copy the workers' logs here")
    args = p.parse_args(argv)
    cfg = SoakConfig(
        uploads=args.uploads,
        workers=args.workers,
        seed=args.seed,
        fault_rate=args.fault_rate,
        upload_seconds=max(40.0, args.uploads * 0.25),
    )
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with tempfile.TemporaryDirectory(prefix="faceblur-soak-") as tmp:
        result = run(cfg, Path(tmp))
        if not result.ok and args.keep_logs:
            shutil.copytree(tmp, args.keep_logs, dirs_exist_ok=True)  # the workers' logs, to see what happened
    machine = f"{os.cpu_count()} cores, {os.uname().sysname} {os.uname().release}"
    text = report_md(result, started, machine)
    print(text)
    if args.json:
        args.json.write_text(
            json.dumps({"config": result.config, "numbers": result.numbers, "violations": result.violations}, indent=2)
        )
    if args.markdown:
        args.markdown.write_text(text)
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
