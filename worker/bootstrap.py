"""Create the buckets, queue, DLQ (redrive), queue policy and S3 -> SQS notification that deploy/terraform builds,
on whatever endpoint boto3 is pointed at: a compose stack's moto (`python -m worker bootstrap`) or the embedded
local stack of worker.dev. Idempotent. Real AWS is Terraform's job."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from worker.aws import Aws, from_environment

LOCAL_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass(frozen=True, slots=True)
class Names:
    source_bucket: str = "faceblur-source"
    output_bucket: str = "faceblur-output"
    queue: str = "faceblur-uploads"
    dlq: str = "faceblur-uploads-dlq"
    max_receive_count: int = 5
    visibility_seconds: int = 60


@dataclass(frozen=True, slots=True)
class Stack:
    endpoint: str
    source_bucket: str
    output_bucket: str
    queue_url: str
    dlq_url: str

    def env(self) -> dict[str, str]:
        """Environment for a worker process pointed at this stack."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "QUEUE_URL": self.queue_url,
            "OUTPUT_BUCKET": self.output_bucket,
            "SOURCE_BUCKETS": self.source_bucket,
            **LOCAL_CREDENTIALS,
        }


def bootstrap(names: Names = Names(), aws: Aws | None = None) -> Stack:
    """Create (idempotently) buckets, DLQ, queue with redrive policy and queue policy, and the notification."""
    aws = aws or from_environment()
    s3, sqs = aws.client("s3"), aws.client("sqs")
    for bucket in (names.source_bucket, names.output_bucket):
        s3.create_bucket(Bucket=bucket)
        s3.put_public_access_block(
            Bucket=bucket,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )
    dlq_url = sqs.create_queue(QueueName=names.dlq, Attributes={"MessageRetentionPeriod": str(14 * 86400)})["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(
        QueueName=names.queue,
        Attributes={
            "VisibilityTimeout": str(names.visibility_seconds),
            "ReceiveMessageWaitTimeSeconds": "20",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": names.max_receive_count}),
        },
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    account = queue_arn.split(":")[4]
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AllowSourceBucketNotifications",
                "Effect": "Allow",
                "Principal": {"Service": "s3.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {
                    "ArnEquals": {"aws:SourceArn": f"arn:aws:s3:::{names.source_bucket}"},
                    "StringEquals": {"aws:SourceAccount": account},
                },
            }
        ],
    }
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy)})
    s3.put_bucket_notification_configuration(
        Bucket=names.source_bucket,
        NotificationConfiguration={
            "QueueConfigurations": [{"Id": "faceblur", "QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    endpoint = aws.endpoints.get("s3") or os.environ.get("AWS_ENDPOINT_URL", "")
    return Stack(endpoint, names.source_bucket, names.output_bucket, queue_url, dlq_url)
