"""The embedded local stack: a moto server on 127.0.0.1 with what worker.bootstrap creates (the Terraform's shape).
Used by `python -m worker local`, the demo and the tests."""

from __future__ import annotations

import logging
import os
from typing import Any

from worker.bootstrap import LOCAL_CREDENTIALS, Names, Stack, bootstrap

__all__ = ["LOCAL_CREDENTIALS", "Names", "Stack", "bootstrap", "start_moto", "use_endpoint"]


def start_moto(port: int = 0) -> tuple[Any, str]:
    """A moto server in this process, on loopback only. Returns (server, endpoint URL)."""
    from moto.server import ThreadedMotoServer

    # werkzeug logs every request to stderr; the worker's own logs say what matters.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    host, real_port = server.get_host_and_port()
    return server, f"http://{host}:{real_port}"


def use_endpoint(endpoint: str) -> None:
    """Point boto3 (in this process) at a local endpoint, with throw-away credentials."""
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    for k, v in LOCAL_CREDENTIALS.items():
        os.environ.setdefault(k, v)
