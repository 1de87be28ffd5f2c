"""Command line: run (the worker), blur (local files: worker/blur_cli.py), bootstrap, settings, healthcheck; and, in
a development checkout, local and demo from worker/dev."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from worker import __version__, blur_cli, ops
from worker.config import ConfigError


def catch_early_stop() -> threading.Event:
    """Until the service exists: remember a SIGTERM/SIGINT (ECS may stop a task while it imports, loads the model
    or runs its start-up checks), so the worker then exits 0 without taking any work instead of dying
    half-started. Installed before the heavy imports."""
    early = threading.Event()

    def handler(_signum: int, _frame: object) -> None:
        early.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return early


def cmd_run(args: argparse.Namespace) -> int:
    """The production worker: QUEUE_URL, OUTPUT_BUCKET and SOURCE_BUCKETS are required."""
    early_stop = catch_early_stop()
    from worker.config import from_env

    settings = from_env()
    if not settings.service.queue_url:
        raise ConfigError(
            "QUEUE_URL is not set: `run` needs QUEUE_URL, OUTPUT_BUCKET and SOURCE_BUCKETS "
            "(for a local stack without AWS, in a development install: python -m worker local)"
        )
    return serve(settings, early_stop)


def serve(settings: Any, early_stop: threading.Event, aws: Any = None) -> int:
    """Build the service from `settings` and run it until SIGTERM (shared by `run` and the dev stack's `local`)."""
    from worker.service import build, install_signal_handlers
    from worker.telemetry import logs

    logs.configure(settings.service.log_format, settings.service.log_level)
    service = build(settings, aws=aws)
    if early_stop.is_set():
        print("stop signal during start-up: exiting without taking any work", file=sys.stderr, flush=True)
        return 0
    install_signal_handlers(service)
    code = service.run()
    if service.consumer.abandoned:
        # Work still running past the grace period was returned to the queue; don't wait for it.
        sys.stdout.flush()
        os._exit(code)
    return code


def cmd_bootstrap(args: argparse.Namespace) -> int:
    """Create the buckets, queue, DLQ and notification on the configured endpoint (compose's init step)."""
    from tenacity import retry, stop_after_delay, wait_fixed

    from worker.bootstrap import Names, bootstrap

    if not (os.environ.get("AWS_ENDPOINT_URL") or args.yes):
        print(
            "AWS_ENDPOINT_URL is not set: this would create resources in real AWS. Use Terraform for that, "
            "or pass --yes.",
            file=sys.stderr,
        )
        return 2
    names = Names(
        source_bucket=args.source_bucket, output_bucket=args.output_bucket, queue=args.queue, dlq=f"{args.queue}-dlq"
    )
    stack = retry(stop=stop_after_delay(60), wait=wait_fixed(1), reraise=True)(bootstrap)(names)
    print(
        json.dumps(
            {
                "queue_url": stack.queue_url,
                "dlq_url": stack.dlq_url,
                "source_bucket": stack.source_bucket,
                "output_bucket": stack.output_bucket,
            }
        )
    )
    return 0


def cmd_healthcheck(args: argparse.Namespace) -> int:
    """For container HEALTHCHECKs: 0 when /healthz on METRICS_PORT answers 200."""
    import urllib.request

    from worker.config import from_env

    port = from_env().service.metrics_port
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=args.timeout) as resp:
            return 0 if resp.status == 200 else 1
    except OSError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1


def development(name: str) -> Any:
    """A module of worker.dev (the moto stack, the demo, the fake Rekognition), absent from the container image."""
    import importlib

    try:
        return importlib.import_module(f"worker.dev.{name}")
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"development commands are not part of this installation ({exc.name} is missing): "
            "use a development checkout (make install)"
        ) from None


def cmd_settings(args: argparse.Namespace) -> int:
    """Every setting: its variable, default and meaning (the README's table), or the values in force."""
    from worker.config import describe, from_env, settings_table

    if args.values:
        for name, value in describe(from_env()).items():
            print(f"{name} = {value!r}")
    else:
        print(settings_table(), end="")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    return int(development("demo").run(args.out))


def cmd_local(args: argparse.Namespace) -> int:
    early_stop = catch_early_stop()
    settings, aws = development("local").start(args.port, args.fake_throttle_rate)
    return serve(settings, early_stop, aws)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m worker", description="faceblur worker")
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    blur_cli.add_command(sub)
    ops.add_commands(sub)
    run = sub.add_parser("run", help="the SQS worker (needs QUEUE_URL, OUTPUT_BUCKET, SOURCE_BUCKETS)")
    run.set_defaults(func=cmd_run)
    local = sub.add_parser("local", help="development: the worker on an embedded local S3 + SQS (moto), no AWS")
    local.add_argument("--port", type=int, default=0, help="port of the embedded moto server (0 = any)")
    local.add_argument(
        "--fake-throttle-rate",
        type=float,
        default=0.0,
        help="with DETECTOR=rekognition|both: share of the fake DetectFaces endpoint's calls throttled",
    )
    local.set_defaults(func=cmd_local)
    demo = sub.add_parser("demo", help="local stack end to end: upload sample photos, collect outputs in ./out")
    demo.add_argument("--out", type=Path, default=Path("out"))
    demo.set_defaults(func=cmd_demo)
    boot = sub.add_parser("bootstrap", help="create buckets, queue, DLQ and notification on AWS_ENDPOINT_URL")
    boot.add_argument("--source-bucket", default="faceblur-source")
    boot.add_argument("--output-bucket", default=os.environ.get("OUTPUT_BUCKET") or "faceblur-output")
    boot.add_argument("--queue", default="faceblur-uploads")
    boot.add_argument("--yes", action="store_true", help="allow running without AWS_ENDPOINT_URL")
    boot.set_defaults(func=cmd_bootstrap)
    conf = sub.add_parser("settings", help="list every setting (variable, default, meaning) as a Markdown table")
    conf.add_argument("--values", action="store_true", help="print the values in force instead (validated)")
    conf.set_defaults(func=cmd_settings)
    health = sub.add_parser("healthcheck", help="exit 0 when the running worker's /healthz answers 200")
    health.add_argument("--timeout", type=float, default=4.0)
    health.set_defaults(func=cmd_healthcheck)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from worker import process

    process.prepare()  # before anything loads numpy or ImageMagick
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except blur_cli.Refused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from botocore.exceptions import BotoCoreError, ClientError

        from worker.runtime import StartupError

        if isinstance(exc, StartupError):
            print(f"refusing to start: {exc}", file=sys.stderr)
            return 3
        if isinstance(exc, BotoCoreError | ClientError):
            # Start-up calls (queue attributes, DLQ, notification check) failed after botocore's retries.
            lead = "could not start: " if args.func is cmd_run else ""
            print(f"{lead}AWS call failed: {exc}", file=sys.stderr)
            return 4
        raise


if __name__ == "__main__":
    raise SystemExit(main())
