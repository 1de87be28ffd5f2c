# Two roles: the execution role lets ECS pull the image and ship logs; the task role is what the worker's
# code runs as, limited to exactly the calls it makes. No statement here allows a wildcard action.

# The execution role's trust policy as AWS documents it for task execution roles: the ECS tasks service, with
# no conditions (ECS assumes it before the task exists, to pull the image and create the log stream).
data "aws_iam_policy_document" "execution_assume" {
  statement {
    sid     = "EcsTasksAssumeExecutionRole"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

# The task role's trust policy, with the confused-deputy conditions AWS recommends for task roles.
data "aws_iam_policy_document" "task_assume" {
  statement {
    sid     = "EcsTasksAssumeRole"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }

    # Confused-deputy protection: only ECS acting for this account and region.
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:ecs:${var.aws_region}:${local.account_id}:*"]
    }
  }
}

# ---------------------------------------------------------------------------------------------------------
# Execution role: the scoped equivalent of AmazonECSTaskExecutionRolePolicy (ECR pull + awslogs).
# ---------------------------------------------------------------------------------------------------------

resource "aws_iam_role" "execution" {
  name_prefix        = "${local.name}-exec-"
  description        = "ECS task execution role of the faceblur worker: pulls the image from ECR and writes logs"
  assume_role_policy = data.aws_iam_policy_document.execution_assume.json
}

data "aws_iam_policy_document" "execution" {
  # ecr:GetAuthorizationToken has no resource-level permissions: it only accepts Resource "*".
  statement {
    sid       = "EcrAuthToken"
    effect    = "Allow"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid    = "EcrPullWorkerImage"
    effect = "Allow"
    actions = [
      "ecr:BatchCheckLayerAvailability",
      "ecr:BatchGetImage",
      "ecr:GetDownloadUrlForLayer",
    ]
    resources = [aws_ecr_repository.worker.arn]
  }

  statement {
    sid    = "WriteWorkerLogs"
    effect = "Allow"
    actions = [
      "logs:CreateLogStream",
      "logs:PutLogEvents",
    ]
    resources = ["${aws_cloudwatch_log_group.worker.arn}:*"]
  }
}

resource "aws_iam_role_policy" "execution" {
  name   = "ecr-pull-and-logs"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

# ---------------------------------------------------------------------------------------------------------
# Task role: what the worker itself may do.
# ---------------------------------------------------------------------------------------------------------

resource "aws_iam_role" "task" {
  name_prefix        = "${local.name}-task-"
  description        = "faceblur worker: read uploads, write blurred outputs, consume the job queue"
  assume_role_policy = data.aws_iam_policy_document.task_assume.json
}

data "aws_iam_policy_document" "task" {
  statement {
    sid    = "ReadUploads"
    effect = "Allow"
    actions = [
      "s3:GetObject",
      "s3:GetObjectVersion",
    ]
    resources = ["${aws_s3_bucket.this["source"].arn}/*"]
  }

  # Without s3:ListBucket, S3 answers a GET or HEAD of a missing key with 403, not 404: an upload deleted
  # before the worker reads it would be retried as access_denied and dead-lettered as retries_exhausted,
  # instead of going to the DLQ at once as object_missing (worker/storage.py).
  statement {
    sid       = "KnowMissingUploads"
    effect    = "Allow"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.this["source"].arn]
  }

  # PutObject writes the blurred photo. GetObject is needed too: the worker HEADs the output key to skip
  # photos already done (idempotent redelivery), and HeadObject is authorised by s3:GetObject.
  statement {
    sid    = "WriteOutputs"
    effect = "Allow"
    actions = [
      "s3:GetObject",
      "s3:PutObject",
    ]
    resources = ["${aws_s3_bucket.this["output"].arn}/${var.output_prefix}*"]
  }

  # Bucket-level reads on the output bucket (the source bucket's ListBucket is above):
  #  * s3:ListBucket: without it S3 answers HEAD on a missing key with 403 instead of 404, and the worker
  #    (worker/storage.py) treats 403 as a transient error: every new photo would be retried into the DLQ.
  #  * s3:GetBucketNotification: the worker's start-up recursion guard reads the output bucket's
  #    notifications to prove that its outputs cannot feed the queue again.
  statement {
    sid    = "InspectOutputBucket"
    effect = "Allow"
    actions = [
      "s3:GetBucketNotification",
      "s3:ListBucket",
    ]
    resources = [aws_s3_bucket.this["output"].arn]
  }

  statement {
    sid    = "ConsumeJobs"
    effect = "Allow"
    actions = [
      "sqs:ChangeMessageVisibility",
      "sqs:DeleteMessage",
      "sqs:GetQueueAttributes",
      "sqs:ReceiveMessage",
    ]
    resources = [aws_sqs_queue.jobs.arn]
  }

  # Permanent failures (unreadable or oversized images) are sent straight to the DLQ (DLQ_URL); the DLQ's
  # depth is exported as a metric.
  statement {
    sid    = "UseDlq"
    effect = "Allow"
    actions = [
      "sqs:GetQueueAttributes",
      "sqs:SendMessage",
    ]
    resources = [aws_sqs_queue.dlq.arn]
  }

  # rekognition:DetectFaces has no resource-level permissions (it works on image bytes, not on an AWS
  # resource), so IAM only accepts Resource "*". Granted only when the worker may call Rekognition.
  dynamic "statement" {
    for_each = var.detector == "local" ? [] : ["rekognition"]

    content {
      sid       = "DetectFaces"
      effect    = "Allow"
      actions   = ["rekognition:DetectFaces"]
      resources = ["*"]
    }
  }

  # With the metrics collector sidecar (metrics_collector = amp): remote-write to that one AMP workspace.
  dynamic "statement" {
    for_each = local.amp_enabled ? [local.amp_workspace_arn] : []

    content {
      sid       = "RemoteWriteMetrics"
      effect    = "Allow"
      actions   = ["aps:RemoteWrite"]
      resources = [statement.value]
    }
  }

  # With a customer managed key: decrypt SSE-KMS uploads and queue messages, encrypt outputs and DLQ messages.
  dynamic "statement" {
    for_each = local.use_kms ? [var.kms_key_arn] : []

    content {
      sid    = "UseCustomerKey"
      effect = "Allow"
      actions = [
        "kms:Decrypt",
        "kms:GenerateDataKey",
      ]
      resources = [statement.value]
    }
  }
}

resource "aws_iam_role_policy" "task" {
  name   = "faceblur-worker"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task.json
}
