"""The embedded local stack: a moto server on 127.0.0.1 with what worker.bootstrap creates (the Terraform's shape).
Used by `python -m worker local`, the demo and the tests."""

from __future__ import annotations

import logging
from typing import Any

import boto3

from worker.aws import Aws
from worker.bootstrap import LOCAL_CREDENTIALS, Names, Stack, bootstrap

__all__ = ["LOCAL_CREDENTIALS", "Names", "Stack", "bootstrap", "local_aws", "start_moto"]


def local_aws(endpoint: str, **more: str) -> Aws:
    """S3 and SQS on a local endpoint (and any other service in `more`), with throw-away credentials: values
    handed to the service, nothing written to the environment."""
    session = boto3.session.Session(
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=LOCAL_CREDENTIALS["AWS_DEFAULT_REGION"],
    )
    return Aws(session, {"s3": endpoint, "sqs": endpoint, **more})


def start_moto(port: int = 0) -> tuple[Any, str]:
    """A moto server in this process, on loopback only. Returns (server, endpoint URL)."""
    from moto.server import ThreadedMotoServer

    # werkzeug logs every request to stderr; the worker's own logs say what matters.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    host, real_port = server.get_host_and_port()
    return server, f"http://{host}:{real_port}"
