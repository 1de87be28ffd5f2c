"""What happens to a message, decided in one place (the way dramatiq keeps its retry policy in one middleware).

- A photo stored, or a message with nothing to do: DELETE.
- An error retrying cannot fix (`PermanentError`: not an image, a bomb, a foreign bucket, a malformed body...):
  DEAD_LETTER with the error's reason, then delete. If the DLQ send fails, or there is no DLQ, the message is retried
  instead (`after_dlq_send`).
- Several records in one message: the first record that must be retried returns the whole message for a retry
  (the records already stored are skipped as duplicates next time); otherwise, if any was refused, the whole
  message goes to the DLQ intact (for a redrive) with the first reason and every refused key; else DELETE.
- Anything else, known or not (S3 or network errors, detection failures, resource exhaustion, bugs): RETRY, back to
  the queue after `retry_delay`; after the queue's maxReceiveCount SQS's own redrive moves it to the DLQ. Fail
  closed: no unknown error ever deletes a message. The handler itself failing is such an error (`unhandled`).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from enum import StrEnum

from worker.consumer.sqs import Attr, Message
from worker.errors import DLQ_SEND_FAILED, INTERNAL_ERROR, PermanentError


class Action(StrEnum):
    DELETE = "delete"
    RETRY = "retry"
    DEAD_LETTER = "dead_letter"


class MessageOutcome(StrEnum):
    """The `outcome` label of faceblur_messages_total."""

    DONE = "done"
    IGNORED = "ignored"
    RETRIED = "retried"
    DEAD_LETTERED = "dead_lettered"
    RETURNED_ON_SHUTDOWN = "returned_on_shutdown"


_OUTCOME = {Action.RETRY: MessageOutcome.RETRIED, Action.DEAD_LETTER: MessageOutcome.DEAD_LETTERED}


@dataclass(frozen=True, slots=True)
class Settlement:
    message: Message
    action: Action
    outcome: MessageOutcome
    reason: str = ""
    error: str = ""
    keys: str = ""  # the keys that failed, for the DLQ's faceblur-failed-keys attribute

    @classmethod
    def done(cls, m: Message) -> Settlement:
        return cls(m, Action.DELETE, MessageOutcome.DONE)

    @classmethod
    def ignored(cls, m: Message) -> Settlement:
        return cls(m, Action.DELETE, MessageOutcome.IGNORED)

    @classmethod
    def failed(cls, m: Message, exc: BaseException, keys: str = "") -> Settlement:
        action, reason = decide(exc)
        return cls(m, action, _OUTCOME[action], reason, str(exc)[:500], keys)

    @classmethod
    def retry(cls, m: Message, reason: str, error: str = "") -> Settlement:
        return cls(m, Action.RETRY, MessageOutcome.RETRIED, reason, error[:500])

    @classmethod
    def unhandled(cls, m: Message, exc: BaseException | None = None) -> Settlement:
        """The handler raised (a bug) or never returned: the message goes back to the queue, never lost."""
        if exc is None:
            return cls.retry(m, INTERNAL_ERROR, "unhandled")
        return cls.retry(m, type(exc).__name__, str(exc))

    @classmethod
    def of_records(cls, m: Message, refused: list[Settlement]) -> Settlement:
        """Every record of `m` stored, skipped or refused (none to retry): DELETE, or the whole message to the DLQ."""
        if not refused:
            return cls.done(m)
        return replace(refused[0], keys=",".join(s.keys for s in refused))

    def after_dlq_send(self, sent: bool) -> Settlement:
        """A DEAD_LETTER once its DLQ copy was tried: deleted (still counted as dead-lettered) if the copy was sent;
        retried, never deleted, if it was not (the send failed, or there is no DLQ to send to)."""
        if self.action is not Action.DEAD_LETTER:
            raise ValueError(f"not a DLQ settlement: {self.action}")
        return replace(self, action=Action.DELETE) if sent else self.dlq_unsent()

    def dlq_unsent(self) -> Settlement:
        """The DLQ send failed: retried, never deleted (fail closed)."""
        return Settlement.retry(self.message, DLQ_SEND_FAILED, self.error)

    def dead_letter_attributes(self) -> dict[str, str]:
        """What the DLQ copy carries, for `python -m worker dlq` and the operator."""
        attrs = {
            Attr.REASON: self.reason,
            Attr.ERROR: self.error,
            Attr.SOURCE_MESSAGE_ID: self.message.message_id,
            Attr.RECEIVE_COUNT: str(self.message.receive_count),
        }
        if self.keys:
            attrs[Attr.FAILED_KEYS] = self.keys
        return attrs


def decide(exc: BaseException) -> tuple[Action, str]:
    """(DEAD_LETTER, reason) for errors retrying cannot fix; (RETRY, reason) for everything else."""
    if isinstance(exc, PermanentError):
        return Action.DEAD_LETTER, exc.reason
    return Action.RETRY, str(getattr(exc, "reason", None) or type(exc).__name__)


def retry_delay(receive_count: int, base: int, cap: int, rand: random.Random | None = None) -> int:
    """Visibility timeout for a retry: exponential in the receive count, with jitter so a burst of failures
    (an S3 or Rekognition hiccup) does not come back all at once. Between half and all of base * 2^(n-1)."""
    n = max(1, receive_count)
    ceiling = min(cap, base * 2 ** min(n - 1, 20))
    r = rand or random
    return min(cap, math.ceil(ceiling / 2 + r.random() * ceiling / 2))
