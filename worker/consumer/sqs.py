"""Thin SQS adapter: receive, batch delete, visibility changes, DLQ sends, queue attributes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError


class Attr:
    """Our message attributes: what the worker writes on a DLQ message and what the operator commands read or set."""

    REASON = "faceblur-reason"
    ERROR = "faceblur-error"
    SOURCE_MESSAGE_ID = "faceblur-source-message-id"
    RECEIVE_COUNT = "faceblur-receive-count"
    FAILED_KEYS = "faceblur-failed-keys"
    FORCE = "faceblur-force"  # `reprocess --force`: re-blur even when the output was made from this very source


@dataclass(slots=True)
class Message:
    message_id: str
    receipt: str
    body: str
    receive_count: int
    received_at: float = 0.0
    attributes: dict[str, Any] = field(default_factory=dict)

    def attribute(self, name: str) -> str:
        """A string message attribute, or "" when absent."""
        return str(self.attributes.get(name, {}).get("StringValue", ""))


class QueueError(RuntimeError):
    pass


def _attributes(attributes: dict[str, str]) -> dict[str, dict[str, str]]:
    return {k: {"DataType": "String", "StringValue": v[:1024] or "-"} for k, v in attributes.items()}


class Queue:
    def __init__(self, sqs: Any, url: str) -> None:
        self.sqs = sqs
        self.url = url

    def attributes(self, *names: str) -> dict[str, str]:
        return self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=list(names)).get("Attributes", {})

    def receive(self, max_messages: int, wait_seconds: int, now: float, visibility: int | None = None) -> list[Message]:
        extra = {"VisibilityTimeout": visibility} if visibility is not None else {}
        resp = self.sqs.receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=max(1, min(10, max_messages)),
            WaitTimeSeconds=wait_seconds,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
            MessageAttributeNames=["All"],
            **extra,
        )
        out = []
        for m in resp.get("Messages", []):
            attrs = m.get("Attributes", {})
            out.append(
                Message(
                    message_id=m["MessageId"],
                    receipt=m["ReceiptHandle"],
                    body=m.get("Body", ""),
                    receive_count=int(attrs.get("ApproximateReceiveCount", "1")),
                    received_at=now,
                    attributes=m.get("MessageAttributes", {}),
                )
            )
        return out

    def _batched(self, call: Any, messages: list[Message], **extra: Any) -> list[Message]:
        """Run a *Batch SQS call 10 entries at a time. Returns the messages whose entry failed."""
        failed: list[Message] = []
        for i in range(0, len(messages), 10):
            chunk = messages[i : i + 10]
            entries = [{"Id": str(n), "ReceiptHandle": m.receipt, **extra} for n, m in enumerate(chunk)]
            try:
                resp = call(QueueUrl=self.url, Entries=entries)
            except (ClientError, BotoCoreError):
                failed.extend(chunk)
                continue
            failed.extend(chunk[int(f["Id"])] for f in resp.get("Failed", []))
        return failed

    def delete(self, messages: list[Message]) -> list[Message]:
        """Batch delete. Returns the messages that could not be deleted."""
        return self._batched(self.sqs.delete_message_batch, messages)

    def set_visibility(self, messages: list[Message], seconds: int) -> list[Message]:
        """Batch ChangeMessageVisibility. Returns the messages whose change failed."""
        return self._batched(self.sqs.change_message_visibility_batch, messages, VisibilityTimeout=seconds)

    def send(self, body: str, attributes: dict[str, str]) -> None:
        self.sqs.send_message(QueueUrl=self.url, MessageBody=body, MessageAttributes=_attributes(attributes))

    def send_batch(self, bodies: list[str], attributes: dict[str, str]) -> None:
        """Up to 10 bodies in one call; raises QueueError naming any entry SQS refused."""
        entries = [
            {"Id": str(i), "MessageBody": b, "MessageAttributes": _attributes(attributes)} for i, b in enumerate(bodies)
        ]
        failed = self.sqs.send_message_batch(QueueUrl=self.url, Entries=entries).get("Failed", [])
        if failed:
            raise QueueError(f"{len(failed)} message(s) not sent: {failed[0].get('Message', failed[0])}")

    def dead_letter_url(self) -> str | None:
        """The DLQ named by this queue's RedrivePolicy, if any."""
        policy = self.attributes("RedrivePolicy").get("RedrivePolicy")
        if not policy:
            return None
        arn = json.loads(policy)["deadLetterTargetArn"]
        _, _, _, _, account, name = arn.split(":", 5)
        return self.sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]

    def depth(self) -> dict[str, int]:
        attrs = self.attributes(
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"
        )
        return {
            "visible": int(attrs.get("ApproximateNumberOfMessages", 0)),
            "in_flight": int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
            "delayed": int(attrs.get("ApproximateNumberOfMessagesDelayed", 0)),
        }
