"""Assemble the running service from settings: clients, queues, storage, detector, consumer, HTTP endpoints.

Start-up checks refuse to run rather than run unsafely: our ImageMagick policy must be in force, a DLQ must
exist (else a bad photo would loop), and outputs must not re-trigger the source notification (recursion).
"""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass, replace
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError
from tenacity import RetryCallState, retry, retry_if_exception, stop_after_delay, wait_random_exponential

from worker.aws import Aws, from_environment
from worker.config import Settings
from worker.consumer.handler import Handler
from worker.consumer.loop import Consumer
from worker.consumer.sqs import Queue
from worker.runtime import StartupError, memory_budget, start
from worker.storage import OutputTarget, Storage
from worker.telemetry import logs
from worker.telemetry.http import HealthServer
from worker.telemetry.metrics import Metrics

log = logs.get("worker.service")

_NOT_YET = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "NoSuchBucket"}


def _not_up_yet(exc: BaseException) -> bool:
    if isinstance(exc, EndpointConnectionError | ConnectionError):
        return True
    return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in _NOT_YET


def _until_up(seconds: int) -> Any:
    """At start-up the endpoint or the queue may not exist yet (compose starts everything at once, the init step
    creates the queue): retry for STARTUP_WAIT_SECONDS instead of relying on start order."""
    return retry(
        retry=retry_if_exception(_not_up_yet),
        wait=wait_random_exponential(multiplier=0.5, max=5),
        stop=stop_after_delay(seconds),
        before_sleep=_log_wait,
        reraise=True,
    )


def _log_wait(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    log.warning(
        "waiting for the queue or endpoint at start-up",
        attempt=state.attempt_number,
        waited_s=round(state.seconds_since_start or 0.0, 1),
        retry_in_s=round(state.upcoming_sleep, 1),
        error=str(error)[:300],
    )


@dataclass
class Service:
    settings: Settings
    consumer: Consumer
    http: HealthServer | None

    def run(self, until_idle: bool = False) -> int:
        try:
            self.consumer.run(until_idle=until_idle)
        finally:
            if self.http:
                self.http.stop()
        return 0


def _resolve_queues(sqs: Any, settings: Settings) -> tuple[Queue, Queue, str]:
    source = Queue(sqs, settings.service.queue_url)
    attrs = source.attributes("QueueArn", "VisibilityTimeout")
    if int(attrs.get("VisibilityTimeout", "30")) <= settings.service.heartbeat_seconds:
        raise StartupError(
            f"the queue's VisibilityTimeout ({attrs.get('VisibilityTimeout')} s) must exceed HEARTBEAT_SECONDS "
            f"({settings.service.heartbeat_seconds} s), or messages reappear before their first heartbeat"
        )
    dlq_url = settings.service.dlq_url or source.dead_letter_url()
    if not dlq_url:
        raise StartupError(
            "the queue has no RedrivePolicy and DLQ_URL is not set: refusing to start, since "
            "photos that can never be processed would loop forever"
        )
    return source, Queue(sqs, dlq_url), attrs["QueueArn"]


def recursion_risk(notification: dict[str, Any], queue_arn: str, output_prefix: str) -> str | None:
    """Would writing outputs (keys = output_prefix + source key) into the bucket with this notification
    configuration send new ObjectCreated events to our queue? Returns why, or None when safe."""
    for conf in notification.get("QueueConfigurations", []):
        if conf.get("QueueArn") != queue_arn:
            continue
        if not any(e.startswith(("s3:ObjectCreated:", "s3:*")) for e in conf.get("Events", [])):
            continue
        rules = conf.get("Filter", {}).get("Key", {}).get("FilterRules", [])
        prefix = next((r.get("Value", "") for r in rules if r.get("Name", "").lower() == "prefix"), "")
        if not output_prefix:
            return "outputs are written under the same keys into a bucket that notifies this queue"
        if not prefix or output_prefix.startswith(prefix) or prefix.startswith(output_prefix):
            return (
                f"outputs under prefix {output_prefix!r} match the bucket's notification prefix filter "
                f"{prefix!r} for this queue"
            )
    return None


def check_recursion(s3: Any, settings: Settings, queue_arn: str) -> None:
    svc = settings.service
    try:
        conf = s3.get_bucket_notification_configuration(Bucket=svc.output_bucket)
    except (ClientError, BotoCoreError) as exc:
        if svc.output_bucket in settings.source_buckets and not svc.output_prefix:
            raise StartupError(
                "OUTPUT_BUCKET is one of SOURCE_BUCKETS with no OUTPUT_PREFIX: every output would "
                "trigger a new notification"
            ) from exc
        log.warning(
            "cannot read the output bucket's notification configuration; recursion check skipped", error=str(exc)
        )
        return
    risk = recursion_risk(conf, queue_arn, svc.output_prefix)
    if risk:
        raise StartupError(
            f"recursion guard: {risk}. Write outputs to another bucket or under a prefix the "
            "notification does not cover."
        )


def build(settings: Settings, metrics: Metrics | None = None, aws: Aws | None = None) -> Service:
    """The one place the service is assembled: imaging, detector, memory budget, clients from one boto3 Session,
    queues, storage, consumer, HTTP endpoints, and every start-up check."""
    metrics = metrics or Metrics()  # shared with the detector (Rekognition counters)
    aws = aws or from_environment()
    settings, detector = start(settings, metrics, aws)
    svc = settings.service
    pool = settings.concurrency + 4
    s3, sqs = aws.client("s3", pool), aws.client("sqs", pool)
    source, dlq, queue_arn = _until_up(svc.startup_wait_seconds)(_resolve_queues)(sqs, settings)
    check_recursion(s3, settings, queue_arn)
    sse = "aws:kms" if svc.sse_kms_key_id else svc.sse
    storage = Storage(
        s3, OutputTarget(svc.output_bucket, svc.output_prefix, sse, svc.sse_kms_key_id), svc.max_object_bytes
    )
    handler = Handler(settings, detector, storage, metrics, memory_budget(settings, metrics))
    consumer = Consumer(settings, handler, source, dlq)
    http = None
    if svc.metrics_port:
        http = HealthServer(
            svc.metrics_host, svc.metrics_port, consumer.metrics.registry, consumer.healthy, consumer.is_ready
        ).start()
    log.info(
        "service ready",
        queue=svc.queue_url,
        dlq=dlq.url,
        output_bucket=svc.output_bucket,
        output_prefix=svc.output_prefix,
        concurrency=settings.concurrency,
        detector=detector.name,
        metrics_port=http.port if http else None,
    )
    return Service(settings, consumer, http)


def with_stack(settings: Settings, queue_url: str, output_bucket: str, source_bucket: str) -> Settings:
    return replace(
        settings,
        service=replace(
            settings.service, queue_url=queue_url, output_bucket=output_bucket, source_buckets=source_bucket
        ),
    )


def install_signal_handlers(service: Service) -> None:
    """First SIGTERM/SIGINT: stop receiving and drain. Second: exit at once (messages reappear by themselves)."""
    received = threading.Event()

    def handler(signum: int, _frame: object) -> None:
        # No logging here: the handler may interrupt a log write that holds the (non-reentrant) output lock.
        if received.is_set():
            os._exit(128 + signum)
        received.set()
        service.consumer.stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
