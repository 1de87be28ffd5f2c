# Two buckets: uploads land in "source"; the worker writes blurred copies under the same key to "output".
# Outputs never go to the source bucket, so the ObjectCreated notification cannot loop.

# ---------------------------------------------------------------------------------------------------------
# Source bucket (uploads)
# ---------------------------------------------------------------------------------------------------------

resource "aws_s3_bucket" "source" {
  #checkov:skip=CKV_AWS_144:Cross-region replication is not wanted: originals are transient inputs that expire (original_expiration_days) and can be re-uploaded.
  bucket = local.source_bucket_name
}

resource "aws_s3_bucket_ownership_controls" "source" {
  bucket = aws_s3_bucket.source.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "source" {
  bucket = aws_s3_bucket.source.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "source" {
  bucket = aws_s3_bucket.source.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = local.use_kms ? "aws:kms" : "AES256"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = local.use_kms
  }
}

resource "aws_s3_bucket_versioning" "source" {
  count  = var.enable_versioning ? 1 : 0
  bucket = aws_s3_bucket.source.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_logging" "source" {
  count  = var.access_log_bucket == null ? 0 : 1
  bucket = aws_s3_bucket.source.id

  target_bucket = var.access_log_bucket
  target_prefix = "s3/${local.source_bucket_name}/"
}

resource "aws_s3_bucket_lifecycle_configuration" "source" {
  bucket = aws_s3_bucket.source.id

  # One rule for the whole bucket; the optional parts are dynamic blocks inside it.
  rule {
    id     = "housekeeping"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }

    # Originals expire original_expiration_days after upload (0 = never).
    dynamic "expiration" {
      for_each = var.original_expiration_days > 0 ? [var.original_expiration_days] : []

      content {
        days = expiration.value
      }
    }

    dynamic "noncurrent_version_expiration" {
      for_each = var.enable_versioning ? [var.noncurrent_version_expiration_days] : []

      content {
        noncurrent_days = noncurrent_version_expiration.value
      }
    }
  }

  # Versioning must be in place before noncurrent-version actions are accepted.
  depends_on = [aws_s3_bucket_versioning.source]
}

data "aws_iam_policy_document" "source_bucket" {
  # TLS only. A Deny on every S3 action is intended here: it removes access, it grants none.
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.source.arn, "${aws_s3_bucket.source.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  statement {
    sid       = "DenyOutdatedTls"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.source.arn, "${aws_s3_bucket.source.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "NumericLessThan"
      variable = "s3:TlsVersion"
      values   = ["1.2"]
    }
  }
}

resource "aws_s3_bucket_policy" "source" {
  bucket = aws_s3_bucket.source.id
  policy = data.aws_iam_policy_document.source_bucket.json

  depends_on = [aws_s3_bucket_public_access_block.source]
}

# Every new object in the source bucket (optionally narrowed by prefix/suffix) becomes a job.
resource "aws_s3_bucket_notification" "source" {
  bucket = aws_s3_bucket.source.id

  queue {
    id            = "faceblur-jobs"
    queue_arn     = aws_sqs_queue.jobs.arn
    events        = ["s3:ObjectCreated:*"]
    filter_prefix = var.upload_prefix_filter == "" ? null : var.upload_prefix_filter
    filter_suffix = var.upload_suffix_filter == "" ? null : var.upload_suffix_filter
  }

  # S3 validates the destination when the notification is saved: the queue policy must already let it send.
  depends_on = [aws_sqs_queue_policy.jobs]
}

# ---------------------------------------------------------------------------------------------------------
# Output bucket (blurred photos)
# ---------------------------------------------------------------------------------------------------------

resource "aws_s3_bucket" "output" {
  #checkov:skip=CKV_AWS_144:Cross-region replication is not wanted: outputs can be regenerated from the originals by re-sending the jobs.
  #checkov:skip=CKV2_AWS_62:The output bucket must not notify anything: its objects are final results, and a notification on it is how an S3->SQS worker ends up in a loop.
  bucket = local.output_bucket_name
}

resource "aws_s3_bucket_ownership_controls" "output" {
  bucket = aws_s3_bucket.output.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "output" {
  bucket = aws_s3_bucket.output.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "output" {
  bucket = aws_s3_bucket.output.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = local.use_kms ? "aws:kms" : "AES256"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = local.use_kms
  }
}

resource "aws_s3_bucket_versioning" "output" {
  count  = var.enable_versioning ? 1 : 0
  bucket = aws_s3_bucket.output.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_logging" "output" {
  count  = var.access_log_bucket == null ? 0 : 1
  bucket = aws_s3_bucket.output.id

  target_bucket = var.access_log_bucket
  target_prefix = "s3/${local.output_bucket_name}/"
}

resource "aws_s3_bucket_lifecycle_configuration" "output" {
  bucket = aws_s3_bucket.output.id

  # One rule for the whole bucket; the optional parts are dynamic blocks inside it.
  rule {
    id     = "housekeeping"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }

    # Outputs expire output_expiration_days after they are written (0 = never).
    dynamic "expiration" {
      for_each = var.output_expiration_days > 0 ? [var.output_expiration_days] : []

      content {
        days = expiration.value
      }
    }

    dynamic "noncurrent_version_expiration" {
      for_each = var.enable_versioning ? [var.noncurrent_version_expiration_days] : []

      content {
        noncurrent_days = noncurrent_version_expiration.value
      }
    }
  }

  # Versioning must be in place before noncurrent-version actions are accepted.
  depends_on = [aws_s3_bucket_versioning.output]
}

data "aws_iam_policy_document" "output_bucket" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.output.arn, "${aws_s3_bucket.output.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  statement {
    sid       = "DenyOutdatedTls"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.output.arn, "${aws_s3_bucket.output.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "NumericLessThan"
      variable = "s3:TlsVersion"
      values   = ["1.2"]
    }
  }
}

resource "aws_s3_bucket_policy" "output" {
  bucket = aws_s3_bucket.output.id
  policy = data.aws_iam_policy_document.output_bucket.json

  depends_on = [aws_s3_bucket_public_access_block.output]
}
