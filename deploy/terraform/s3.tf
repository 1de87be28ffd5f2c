# Two buckets: uploads land in "source"; the worker writes blurred copies under the same key to "output".
# Outputs never go to the source bucket, so the ObjectCreated notification cannot loop.
#
# Both buckets get the same hardening from one set of for_each resources keyed by local.buckets ("source",
# "output"); what differs between them (name, expiration) lives in that map. Only the source bucket has a
# notification (at the end of this file).

locals {
  buckets = {
    # Uploads. Originals are transient inputs: they expire original_expiration_days after upload.
    source = {
      name            = local.source_bucket_name
      expiration_days = var.original_expiration_days
    }
    # Blurred photos: kept forever unless output_expiration_days is set.
    output = {
      name            = local.output_bucket_name
      expiration_days = var.output_expiration_days
    }
  }
}

resource "aws_s3_bucket" "this" {
  #checkov:skip=CKV_AWS_144:Cross-region replication is not wanted: originals are transient inputs that expire (original_expiration_days) and can be re-uploaded; outputs can be regenerated from the originals by re-sending the jobs.
  #checkov:skip=CKV2_AWS_62:checkov sees this for_each as one bucket and cannot tell that aws_s3_bucket_notification.source is attached to this["source"] (tests/infra asserts that). this["output"] must not notify anything: its objects are final results, and a notification on it is how an S3->SQS worker ends up in a loop.
  for_each = local.buckets

  bucket = each.value.name
}

# S3 refuses concurrent changes to one bucket's sub-resources ("A conflicting conditional operation is currently
# in progress"), so they are applied one after another, as terraform-aws-modules/s3-bucket orders them: public
# access block -> policy -> ownership -> encryption -> versioning -> lifecycle -> logging -> notification.
resource "aws_s3_bucket_ownership_controls" "this" {
  for_each = local.buckets

  bucket = aws_s3_bucket.this[each.key].id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }

  depends_on = [aws_s3_bucket_policy.this]
}

resource "aws_s3_bucket_public_access_block" "this" {
  for_each = local.buckets

  bucket = aws_s3_bucket.this[each.key].id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  for_each = local.buckets

  bucket = aws_s3_bucket.this[each.key].id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = local.use_kms ? "aws:kms" : "AES256"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = local.use_kms
  }

  depends_on = [aws_s3_bucket_ownership_controls.this]
}

# Optional parts filter the map with a for expression: `cond ? local.buckets : {}` would be an error (the
# two object types differ).
resource "aws_s3_bucket_versioning" "this" {
  for_each = { for key, bucket in local.buckets : key => bucket if var.enable_versioning }

  bucket = aws_s3_bucket.this[each.key].id

  versioning_configuration {
    status = "Enabled"
  }

  depends_on = [aws_s3_bucket_server_side_encryption_configuration.this]
}

resource "aws_s3_bucket_logging" "this" {
  for_each = { for key, bucket in local.buckets : key => bucket if var.access_log_bucket != null }

  bucket = aws_s3_bucket.this[each.key].id

  target_bucket = var.access_log_bucket
  target_prefix = "s3/${each.value.name}/"

  depends_on = [aws_s3_bucket_lifecycle_configuration.this]
}

resource "aws_s3_bucket_lifecycle_configuration" "this" {
  for_each = local.buckets

  bucket = aws_s3_bucket.this[each.key].id

  # One rule for the whole bucket; the optional parts are dynamic blocks inside it.
  rule {
    id     = "housekeeping"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }

    # Objects expire expiration_days after they are written (0 = never): original_expiration_days for the
    # source bucket, output_expiration_days for the output bucket.
    dynamic "expiration" {
      for_each = each.value.expiration_days > 0 ? [each.value.expiration_days] : []

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

  # Versioning must be in place before noncurrent-version actions are accepted. Encryption too: versioning is
  # optional, and the chain must hold without it.
  depends_on = [aws_s3_bucket_versioning.this, aws_s3_bucket_server_side_encryption_configuration.this]
}

data "aws_iam_policy_document" "bucket" {
  for_each = local.buckets

  # TLS only. A Deny on every S3 action is intended here: it removes access, it grants none.
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.this[each.key].arn, "${aws_s3_bucket.this[each.key].arn}/*"]

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
    resources = [aws_s3_bucket.this[each.key].arn, "${aws_s3_bucket.this[each.key].arn}/*"]

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

resource "aws_s3_bucket_policy" "this" {
  for_each = local.buckets

  bucket = aws_s3_bucket.this[each.key].id
  policy = data.aws_iam_policy_document.bucket[each.key].json

  depends_on = [aws_s3_bucket_public_access_block.this]
}

# Every new object in the source bucket (optionally narrowed by prefix/suffix) becomes a job.
resource "aws_s3_bucket_notification" "source" {
  bucket = aws_s3_bucket.this["source"].id

  queue {
    id            = "faceblur-jobs"
    queue_arn     = aws_sqs_queue.jobs.arn
    events        = ["s3:ObjectCreated:*"]
    filter_prefix = var.upload_prefix_filter == "" ? null : var.upload_prefix_filter
    filter_suffix = var.upload_suffix_filter == "" ? null : var.upload_suffix_filter
  }

  # S3 validates the destination when the notification is saved: the queue policy must already let it send.
  # Last in the bucket's chain (above).
  depends_on = [aws_sqs_queue_policy.jobs, aws_s3_bucket_logging.this, aws_s3_bucket_lifecycle_configuration.this]
}
