"""The retry/DLQ decision and the start-up recursion guard, as pure functions."""

from __future__ import annotations

import random

import pytest

from worker.consumer.settlement import Action, MessageOutcome, Settlement, decide, retry_delay
from worker.consumer.sqs import Attr, Message
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

MESSAGE = Message("id-1", "receipt-1", "{}", 1)


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


def test_a_message_of_several_records_is_deleted_only_when_none_was_refused():
    assert Settlement.of_records(MESSAGE, []).action is Action.DELETE
    refused = [
        Settlement.failed(MESSAGE, CorruptImage("x"), keys="a.jpg"),
        Settlement.failed(MESSAGE, ForeignBucket("y"), keys="b.jpg"),
    ]
    whole = Settlement.of_records(MESSAGE, refused)
    # The whole message, intact for a redrive, with the first reason and every refused key.
    assert (whole.action, whole.reason, whole.keys) == (Action.DEAD_LETTER, "corrupt_image", "a.jpg,b.jpg")


def test_a_failed_dlq_send_is_retried_never_deleted():
    unsent = Settlement.failed(MESSAGE, CorruptImage("broken"), keys="a.jpg").dlq_unsent()
    assert (unsent.action, unsent.reason, unsent.error) == (Action.RETRY, "dlq_send_failed", "broken")


def test_the_dlq_copy_carries_what_the_operator_commands_read():
    m = Message("id-7", "r", "{}", 3)
    attrs = Settlement.failed(m, CorruptImage("bad"), keys="a.jpg").dead_letter_attributes()
    assert attrs == {
        Attr.REASON: "corrupt_image",
        Attr.ERROR: "bad",
        Attr.SOURCE_MESSAGE_ID: "id-7",
        Attr.RECEIVE_COUNT: "3",
        Attr.FAILED_KEYS: "a.jpg",
    }
    assert Attr.FAILED_KEYS not in Settlement.failed(m, MalformedMessage("x")).dead_letter_attributes()
    received = Message(
        "id-8", "r", "{}", 1, attributes={k: {"DataType": "String", "StringValue": v} for k, v in attrs.items()}
    )
    assert received.attribute(Attr.REASON) == "corrupt_image"
    assert received.attribute(Attr.FORCE) == ""


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


def test_a_dlq_settlement_is_deleted_only_once_its_copy_was_sent():
    refused = Settlement.failed(MESSAGE, CorruptImage("broken"), keys="a.jpg")
    sent = refused.after_dlq_send(sent=True)
    # Deleted, and still counted as dead-lettered; the reason stays for the log.
    assert (sent.action, sent.outcome, sent.reason, sent.keys) == (
        Action.DELETE,
        MessageOutcome.DEAD_LETTERED,
        "corrupt_image",
        "a.jpg",
    )
    # The send failed, or there is no DLQ: back to the queue, never deleted.
    unsent = refused.after_dlq_send(sent=False)
    assert (unsent.action, unsent.outcome, unsent.reason) == (Action.RETRY, MessageOutcome.RETRIED, "dlq_send_failed")
    with pytest.raises(ValueError, match="not a DLQ settlement"):
        Settlement.done(MESSAGE).after_dlq_send(sent=True)


def test_a_handler_that_raised_returns_the_message_for_a_retry():
    crashed = Settlement.unhandled(MESSAGE, KeyError("bug"))
    assert (crashed.action, crashed.reason, crashed.error) == (Action.RETRY, "KeyError", "'bug'")
    never = Settlement.unhandled(MESSAGE)
    assert (never.action, never.outcome, never.reason) == (Action.RETRY, MessageOutcome.RETRIED, "internal_error")
