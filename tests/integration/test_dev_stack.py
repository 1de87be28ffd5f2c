"""`python -m worker local`'s stack reaches the service as values: nothing is written to the environment, and one
boto3 Session with explicit endpoints serves S3 and SQS."""

from __future__ import annotations

import os
import threading
from dataclasses import replace

from integration_support import exists, skimage_photo, wait_for

from worker.dev import local
from worker.service import build


def test_the_local_stack_is_reached_through_values_not_the_environment():
    before = dict(os.environ)
    settings, aws = local.start()
    assert dict(os.environ) == before
    assert aws.endpoints["s3"] == aws.endpoints["sqs"]
    assert aws.endpoints["s3"].startswith("http://127.0.0.1:")
    settings = replace(settings, service=replace(settings.service, wait_seconds=1, metrics_port=0))
    service = build(settings, aws=aws)
    s3 = aws.client("s3")
    source = settings.service.source_buckets
    s3.put_object(Bucket=source, Key="dev/astronaut.png", Body=skimage_photo("astronaut.png"))
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: exists(s3, settings.service.output_bucket, "dev/astronaut.png"), timeout=60, what="output")
    finally:
        service.consumer.stop()
        thread.join(30)
    assert dict(os.environ) == before
