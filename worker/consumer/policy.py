"""Pure decisions: how long a retry waits, what an error means for its message, the recursion guard."""

from __future__ import annotations

import math
import random
from typing import Any

from worker.errors import PermanentError


def retry_delay(receive_count: int, base: int, cap: int, rand: random.Random | None = None) -> int:
    """Visibility timeout for a retry: exponential in the receive count, with jitter so a burst of failures
    (an S3 or Rekognition hiccup) does not come back all at once. Between half and all of base * 2^(n-1)."""
    n = max(1, receive_count)
    ceiling = min(cap, base * 2 ** min(n - 1, 20))
    r = rand or random
    return min(cap, math.ceil(ceiling / 2 + r.random() * ceiling / 2))


def classify(exc: BaseException) -> tuple[str, str]:
    """('dlq', reason) for errors retrying cannot fix; ('retry', reason) for everything else (fail closed:
    an unknown error never deletes a message)."""
    if isinstance(exc, PermanentError):
        return "dlq", exc.reason
    reason = getattr(exc, "reason", None) or type(exc).__name__
    return "retry", str(reason)


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
