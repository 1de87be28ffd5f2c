"""Operator commands: look into the DLQ without losing anything, move its messages to an explicit queue at a
bounded rate, and enqueue a prefix of a source bucket again (optionally forcing a new blur).

    faceblur dlq list [--dlq-url URL] [--max N] [--json]      faceblur dlq show MESSAGE_ID
    faceblur redrive --to QUEUE_URL [--from DLQ_URL] [--rate N] [--max N] [--dry-run]
    faceblur reprocess s3://BUCKET/PREFIX --queue-url URL [--force] [--dry-run] [--max N]

Every argument is checked before the first AWS call; a bad one ends in one line and exit status 2, a failed AWS
call in one line and exit status 4 (cli.main).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus

from worker.config import ConfigError, from_env, is_bucket_name, queue_url_ok
from worker.consumer.sqs import Attr, Message, Queue
from worker.errors import MalformedMessage
from worker.events import parse_body

PEEK_VISIBILITY_SECONDS = 30  # how long a peeked message stays hidden if the command dies before returning it


@dataclass(frozen=True, slots=True)
class DeadLetter:
    message_id: str
    reason: str
    keys: str
    receive_count: str
    error: str
    source_message_id: str


def describe_dead_letter(m: Message) -> DeadLetter:
    keys = m.attribute(Attr.FAILED_KEYS)
    if not keys:
        try:
            keys = ",".join(ref.key for ref in parse_body(m.body)) or "(nothing to process)"
        except MalformedMessage:
            keys = "(malformed body)"
    return DeadLetter(
        message_id=m.message_id,
        # Messages the worker sent carry their reason; SQS's redrive moves retried ones without any.
        reason=m.attribute(Attr.REASON) or "retries_exhausted (moved by SQS after maxReceiveCount)",
        keys=keys,
        receive_count=m.attribute(Attr.RECEIVE_COUNT) or str(m.receive_count),
        error=m.attribute(Attr.ERROR)[:200],
        source_message_id=m.attribute(Attr.SOURCE_MESSAGE_ID),
    )


def peek(queue: Queue, limit: int) -> list[Message]:
    """Up to `limit` messages, each seen once, then all made visible again at once: nothing is deleted."""
    seen: dict[str, Message] = {}
    try:
        while len(seen) < limit:
            batch = queue.receive(min(10, limit - len(seen)), 1, 0.0, visibility=PEEK_VISIBILITY_SECONDS)
            fresh = [m for m in batch if m.message_id not in seen]
            if not fresh:
                break
            seen.update((m.message_id, m) for m in fresh)
    finally:
        queue.set_visibility(list(seen.values()), 0)
    return list(seen.values())


def _dlq(args: argparse.Namespace, sqs: Any) -> Queue:
    url = args.dlq_url or from_env().service.dlq_url
    if not url:
        source = from_env().service.queue_url
        if not source:
            raise ConfigError("name the DLQ with --dlq-url, or set DLQ_URL or QUEUE_URL (its RedrivePolicy names it)")
        url = Queue(sqs, source).dead_letter_url() or ""
        if not url:
            raise ConfigError(f"the queue {source} has no RedrivePolicy: name the DLQ with --dlq-url")
    _check_queue_url(url, "--dlq-url")
    return Queue(sqs, url)


def _check_queue_url(url: str, what: str) -> None:
    if not queue_url_ok(url):
        raise ConfigError(f"{what} {url!r} is not an SQS queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)")


def cmd_dlq_list(args: argparse.Namespace) -> int:
    from worker.aws import client

    entries = [describe_dead_letter(m) for m in peek(_dlq(args, client("sqs")), args.max)]
    if args.json:
        print(json.dumps([asdict(e) for e in entries], indent=1))
    else:
        for e in entries:
            print(f"{e.message_id}  {e.reason}  receives={e.receive_count}  keys={e.keys}  {e.error}")
        print(f"{len(entries)} message(s) shown; the DLQ is unchanged", file=sys.stderr)
    return 0


def cmd_dlq_show(args: argparse.Namespace) -> int:
    from worker.aws import client

    for m in peek(_dlq(args, client("sqs")), args.max):
        if m.message_id == args.message_id:
            try:
                body: Any = json.loads(m.body)
            except json.JSONDecodeError:
                body = m.body
            attributes = {k: v.get("StringValue") for k, v in m.attributes.items()}
            print(json.dumps({"message_id": m.message_id, "attributes": attributes, "body": body}, indent=1))
            return 0
    print(f"no message {args.message_id} among the first {args.max} of the DLQ", file=sys.stderr)
    return 1


def cmd_redrive(args: argparse.Namespace) -> int:
    """Move DLQ messages to --to: SQS's own StartMessageMoveTask returns them to their source queue, and messages
    the worker dead-lettered itself have none (it sent them): the destination is always explicit here."""
    from worker.aws import client
    from worker.ratelimit import TokenBucket

    _check_queue_url(args.to, "--to")
    if args.rate <= 0:
        raise ConfigError("--rate must be positive")
    sqs = client("sqs")
    source = _dlq(argparse.Namespace(dlq_url=args.from_url), sqs)
    destination = Queue(sqs, args.to)
    destination.attributes("QueueArn")  # fails (exit 4) before anything moves if it does not exist
    if args.dry_run:
        entries = [describe_dead_letter(m) for m in peek(source, args.max)]
        for e in entries:
            print(f"would move {e.message_id}  {e.reason}  keys={e.keys}")
        print(f"{len(entries)} message(s) would move to {args.to}; nothing changed")
        return 0
    bucket = TokenBucket(args.rate, burst=1)
    moved = failed = 0
    while moved + failed < args.max:
        batch = source.receive(min(10, args.max - moved - failed), 1, 0.0, visibility=PEEK_VISIBILITY_SECONDS)
        if not batch:
            break
        sent = []
        for m in batch:
            bucket.acquire()
            try:
                destination.send(m.body, {})  # a fresh attempt: the worker's reasons stay in the DLQ history only
            except Exception as exc:  # kept in the DLQ: it becomes visible again
                failed += 1
                print(f"could not move {m.message_id}: {exc}", file=sys.stderr)
                continue
            sent.append(m)
        undeleted = source.delete(sent)
        moved += len(sent) - len(undeleted)
        for m in undeleted:  # sent but still in the DLQ: it would be moved twice, say so
            print(f"moved {m.message_id} but could not delete it from the DLQ", file=sys.stderr)
    print(f"{moved} moved to {args.to}, {failed} failed")
    return 1 if failed else 0


@dataclass(frozen=True, slots=True)
class S3Url:
    bucket: str
    prefix: str


def parse_s3_url(text: str) -> S3Url:
    if not text.startswith("s3://"):
        raise ConfigError(f"{text!r} is not an s3://BUCKET/PREFIX URL")
    bucket, _, prefix = text[5:].partition("/")
    if not is_bucket_name(bucket):
        raise ConfigError(f"{bucket!r} is not an S3 bucket name")
    return S3Url(bucket, prefix)


def notification(bucket: str, obj: dict[str, Any], region: str) -> dict[str, Any]:
    """One S3 event notification record for an existing object, in the shape S3 sends (key form-encoded)."""
    record: dict[str, Any] = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": region,
        "eventTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "faceblur-reprocess"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "faceblur-reprocess",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {"key": quote_plus(obj["Key"], safe="/"), "size": obj["Size"], "eTag": obj["ETag"].strip('"')},
        },
    }
    if obj.get("VersionId"):
        record["s3"]["object"]["versionId"] = obj["VersionId"]
    return {"Records": [record]}


def _objects(s3: Any, url: S3Url) -> Iterator[dict[str, Any]]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=url.bucket, Prefix=url.prefix):
        yield from page.get("Contents", [])


def cmd_reprocess(args: argparse.Namespace) -> int:
    from worker.aws import client

    url = parse_s3_url(args.source)
    _check_queue_url(args.queue_url, "--queue-url")
    svc = from_env().service
    if url.bucket == svc.output_bucket and (not svc.output_prefix or url.prefix.startswith(svc.output_prefix)):
        raise ConfigError(f"s3://{url.bucket}/{url.prefix} holds outputs (OUTPUT_BUCKET): blurring them again loops")
    s3, sqs = client("s3"), client("sqs")
    queue = Queue(sqs, args.queue_url)
    region = s3.meta.region_name or "us-east-1"
    attributes = {Attr.FORCE: "true"} if args.force else {}
    batch: list[str] = []
    count = 0

    def flush() -> None:
        if batch and not args.dry_run:
            queue.send_batch(batch, attributes)
        batch.clear()

    for obj in _objects(s3, url):
        if count >= args.max:
            break
        body = json.dumps(notification(url.bucket, obj, region))
        if args.dry_run:
            print(f"would enqueue s3://{url.bucket}/{obj['Key']}{' (forced)' if args.force else ''}")
        batch.append(body)
        count += 1
        if len(batch) == 10:
            flush()
    flush()
    verb = "would enqueue" if args.dry_run else "enqueued"
    print(f"{verb} {count} object(s) from s3://{url.bucket}/{url.prefix}{' with force' if args.force else ''}")
    return 0


def add_commands(sub: Any) -> None:
    dlq = sub.add_parser("dlq", help="look into the dead-letter queue without changing it")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True)
    listing = dlq_sub.add_parser("list", help="one line per message: id, reason, receives, keys, error")
    show = dlq_sub.add_parser("show", help="one message's attributes and body")
    show.add_argument("message_id")
    for p in (listing, show):
        p.add_argument("--dlq-url", help="default: DLQ_URL, or the RedrivePolicy of QUEUE_URL")
        p.add_argument("--max", type=int, default=100, help="messages looked at (default 100)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_dlq_list)
    show.set_defaults(func=cmd_dlq_show)
    redrive = sub.add_parser("redrive", help="move DLQ messages to an explicit queue, at a bounded rate")
    redrive.add_argument("--to", required=True, help="destination queue URL (usually QUEUE_URL)")
    redrive.add_argument("--from", dest="from_url", help="the DLQ (default: DLQ_URL or QUEUE_URL's RedrivePolicy)")
    redrive.add_argument("--rate", type=float, default=10.0, help="messages per second (default 10)")
    redrive.add_argument("--max", type=int, default=1000, help="messages moved at most (default 1000)")
    redrive.add_argument("--dry-run", action="store_true", help="list what would move; change nothing")
    redrive.set_defaults(func=cmd_redrive)
    again = sub.add_parser("reprocess", help="enqueue every object under s3://BUCKET/PREFIX as a new upload")
    again.add_argument("source", help="s3://BUCKET/PREFIX of source photos")
    again.add_argument("--queue-url", required=True, help="the worker's queue")
    again.add_argument("--force", action="store_true", help="blur again even where an output of this version exists")
    again.add_argument("--dry-run", action="store_true", help="list what would be enqueued; send nothing")
    again.add_argument("--max", type=int, default=100_000, help="objects enqueued at most")
    again.set_defaults(func=cmd_reprocess)
