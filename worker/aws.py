"""boto3 clients. Endpoints come from boto3's own settings (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_S3,
AWS_ENDPOINT_URL_SQS, profiles...): nothing here invents a parallel mechanism."""

from __future__ import annotations

import os
from typing import Any

import boto3
from botocore.config import Config


def client(service: str, pool: int = 10) -> Any:
    """A client with bounded timeouts and botocore's standard retry mode (it retries throttling,
    5xx and connection errors with backoff; our own retry policy then works per message)."""
    config = Config(
        # total_max_attempts counts the first call too (botocore's "max_attempts" would count retries only).
        retries={"mode": "standard", "total_max_attempts": 4},
        connect_timeout=5,
        read_timeout=30,
        max_pool_connections=max(10, pool),
        # Virtual-hosted addressing does not resolve against a local emulator; path style works everywhere.
        s3={"addressing_style": "path"} if service == "s3" else None,
    )
    return session().client(service, config=config)


def session() -> boto3.session.Session:
    """A boto3 session reading the environment (credentials, endpoints) at this moment. The botocore we pin reads
    the region from AWS_DEFAULT_REGION only; ECS, Lambda and our Terraform set AWS_REGION: accept either."""
    return boto3.session.Session(region_name=os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION"))
