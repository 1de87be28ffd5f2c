# Job queue fed by the source bucket's ObjectCreated notifications, and its dead-letter queue.
# Encryption: SQS-managed SSE unless var.kms_key_arn is set, then SSE-KMS with that key
# (its key policy must let s3.amazonaws.com call kms:GenerateDataKey and kms:Decrypt, see README).

resource "aws_sqs_queue" "dlq" {
  name = "${local.name}-jobs-dlq"

  # 14 days, the SQS maximum: time to inspect and redrive permanent failures.
  message_retention_seconds = 1209600

  sqs_managed_sse_enabled           = local.use_kms ? null : true
  kms_master_key_id                 = var.kms_key_arn
  kms_data_key_reuse_period_seconds = local.use_kms ? 300 : null
}

resource "aws_sqs_queue" "jobs" {
  name = "${local.name}-jobs"

  # Long polling: a worker's ReceiveMessage waits up to 20 s (the maximum) for messages.
  receive_wait_time_seconds = local.sqs_wait_seconds
  # >= 6 x the worst-case processing time, see locals.tf.
  visibility_timeout_seconds = local.visibility_timeout_seconds
  message_retention_seconds  = var.message_retention_seconds

  # After 5 failed receives a message moves to the DLQ instead of cycling forever.
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq.arn
    maxReceiveCount     = 5
  })

  sqs_managed_sse_enabled           = local.use_kms ? null : true
  kms_master_key_id                 = var.kms_key_arn
  kms_data_key_reuse_period_seconds = local.use_kms ? 300 : null
}

# Only the job queue may use the DLQ as its dead-letter queue. A separate resource, because the DLQ's own
# redrive_allow_policy would reference the job queue, which already references the DLQ (a cycle).
resource "aws_sqs_queue_redrive_allow_policy" "dlq" {
  queue_url = aws_sqs_queue.dlq.id

  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.jobs.arn]
  })
}

# Only S3, and only on behalf of the source bucket in this account, may send to the job queue.
# The worker's own access comes from its IAM role (same account), not from this policy.
data "aws_iam_policy_document" "jobs_queue" {
  statement {
    sid       = "AllowSourceBucketNotifications"
    effect    = "Allow"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.jobs.arn]

    principals {
      type        = "Service"
      identifiers = ["s3.amazonaws.com"]
    }

    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_s3_bucket.this["source"].arn]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_sqs_queue_policy" "jobs" {
  queue_url = aws_sqs_queue.jobs.id
  policy    = data.aws_iam_policy_document.jobs_queue.json
}
