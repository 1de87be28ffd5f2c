"""The retry/DLQ decision and the start-up recursion guard, as pure functions."""

from __future__ import annotations

import random

import pytest

from worker.consumer.settlement import Action, MessageOutcome, Settlement, decide, retry_delay
from worker.consumer.sqs import Message
from worker.errors import (
    CorruptImage,
    DetectionFailed,
    ForeignBucket,
    MalformedMessage,
    MetadataTooLarge,
    ResourcesExhausted,
    TransientError,
)
from worker.service import recursion_risk

MESSAGE = Message("id-1", "receipt-1", "{}", 1, None)


@pytest.mark.parametrize(
    ("exc", "action", "reason"),
    [
        (CorruptImage("x"), Action.DEAD_LETTER, "corrupt_image"),
        (MetadataTooLarge("x"), Action.DEAD_LETTER, "metadata_too_large"),
        (ForeignBucket("x"), Action.DEAD_LETTER, "foreign_bucket"),
        (MalformedMessage("x"), Action.DEAD_LETTER, "malformed_message"),
        (ResourcesExhausted("x"), Action.RETRY, "resources_exhausted"),
        (DetectionFailed("x", reason="rekognition_unavailable"), Action.RETRY, "rekognition_unavailable"),
        (TransientError("x", reason="s3_error"), Action.RETRY, "s3_error"),
        (KeyError("bug"), Action.RETRY, "KeyError"),  # fail closed: an unknown error never deletes
        (MemoryError(), Action.RETRY, "MemoryError"),
    ],
)
def test_only_permanent_errors_are_dead_lettered(exc, action, reason):
    assert decide(exc) == (action, reason)
    settled = Settlement.failed(MESSAGE, exc, keys="k.jpg")
    assert (settled.action, settled.reason, settled.keys) == (action, reason, "k.jpg")
    assert settled.outcome is (MessageOutcome.DEAD_LETTERED if action is Action.DEAD_LETTER else MessageOutcome.RETRIED)


def test_success_and_nothing_to_do_delete():
    assert Settlement.done(MESSAGE).action is Action.DELETE
    assert Settlement.ignored(MESSAGE).outcome is MessageOutcome.IGNORED
    assert Settlement.retry(MESSAGE, "dlq_send_failed", "x" * 900).error == "x" * 500


def test_retry_delay_grows_within_half_and_all_of_its_ceiling_and_is_capped():
    rand = random.Random(3)
    for n, ceiling in ((1, 10), (2, 20), (3, 40), (6, 320), (30, 900)):
        delays = {retry_delay(n, 10, 900, rand) for _ in range(50)}
        assert min(delays) >= ceiling / 2
        assert max(delays) <= ceiling
        assert len(delays) > 1 or ceiling <= 1  # jittered
    assert retry_delay(0, 10, 900, rand) <= 10


def notification(*, prefix: str = "", events: tuple[str, ...] = ("s3:ObjectCreated:*",), arn: str = "q") -> dict:
    rules = [{"Name": "Prefix", "Value": prefix}] if prefix else []
    return {
        "QueueConfigurations": [{"QueueArn": arn, "Events": list(events), "Filter": {"Key": {"FilterRules": rules}}}]
    }


def test_recursion_guard():
    assert recursion_risk(notification(), "q", "") is not None  # same keys into a watched bucket
    assert recursion_risk(notification(), "q", "blurred/") is not None  # no prefix filter: everything notifies
    assert recursion_risk(notification(prefix="uploads/"), "q", "blurred/") is None
    assert recursion_risk(notification(prefix="uploads/"), "q", "uploads/blurred/") is not None
    assert recursion_risk(notification(arn="other"), "q", "") is None  # notifies another queue
    assert recursion_risk(notification(events=("s3:ObjectRemoved:*",)), "q", "") is None
    assert recursion_risk({}, "q", "") is None
