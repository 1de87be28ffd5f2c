"""AWS access: one boto3 Session for the process and the endpoints to reach, passed as a value (`Aws`), never
through os.environ. In production the endpoints are boto3's own settings (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_S3,
profiles...); the development stack passes its moto and fake Rekognition endpoints explicitly."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config


@dataclass(frozen=True)
class Aws:
    session: boto3.session.Session
    endpoints: Mapping[str, str] = field(default_factory=dict)  # service -> URL; absent = boto3's own settings

    def client(self, service: str, pool: int = 10, config: Config | None = None) -> Any:
        """A client with bounded timeouts and botocore's standard retry mode (it retries throttling, 5xx and
        connection errors with backoff; our own retry policy then works per message), unless `config` says else."""
        config = config or Config(
            # total_max_attempts counts the first call too (botocore's "max_attempts" would count retries only).
            retries={"mode": "standard", "total_max_attempts": 4},
            connect_timeout=5,
            read_timeout=30,
            max_pool_connections=max(10, pool),
            # Virtual-hosted addressing does not resolve against a local emulator; path style works everywhere.
            s3={"addressing_style": "path"} if service == "s3" else None,
        )
        endpoint = {"endpoint_url": self.endpoints[service]} if service in self.endpoints else {}
        return self.session.client(service, config=config, **endpoint)


def from_environment() -> Aws:
    """boto3's own configuration. The botocore we pin reads the region from AWS_DEFAULT_REGION only; ECS, Lambda
    and our Terraform set AWS_REGION: accept either."""
    region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")
    return Aws(boto3.session.Session(region_name=region))


def client(service: str, pool: int = 10) -> Any:
    """A client from boto3's own configuration (one-shot commands and tests)."""
    return from_environment().client(service, pool)
