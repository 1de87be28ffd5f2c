"""`python -m worker local`: the worker on an embedded local S3 + SQS (moto), for development without AWS."""

from __future__ import annotations

import os

from worker.aws import Aws
from worker.config import Settings, from_env
from worker.dev.stack import bootstrap, local_aws, start_moto
from worker.service import with_stack


def start(port: int = 0, fake_throttle_rate: float = 0.0) -> tuple[Settings, Aws]:
    """Start moto (and, for DETECTOR=rekognition|both, the fake DetectFaces endpoint), build the stack, and return
    the settings and the endpoints that point the worker at it (values: the environment is not touched)."""
    settings = from_env()
    _server, endpoint = start_moto(port)
    more = {}
    if settings.service.detector != "local" and not os.environ.get("AWS_ENDPOINT_URL_REKOGNITION"):
        # moto has no DetectFaces: our fake answers with the local model, over the real JSON protocol.
        from worker.dev.fake_rekognition import start_fake_rekognition

        fake = start_fake_rekognition(throttle_rate=fake_throttle_rate)
        more["rekognition"] = fake.endpoint
        print(f"fake Rekognition endpoint at {fake.endpoint}", flush=True)
    aws = local_aws(endpoint, **more)
    stack = bootstrap(aws=aws)
    print(
        f"embedded local stack at {endpoint} (moto). Upload a photo:\n"
        f"  AWS_ENDPOINT_URL={endpoint} AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local "
        f"aws s3 cp photo.jpg s3://{stack.source_bucket}/\n"
        f"Blurred copies appear in s3://{stack.output_bucket}/ under the same key.",
        flush=True,
    )
    return with_stack(settings, stack.queue_url, stack.output_bucket, stack.source_bucket), aws
