# State moves for the switch of s3.tf from one resource per bucket to for_each over local.buckets: an
# existing deployment keeps its buckets (and their objects) instead of destroying and recreating them.
# Versioning and logging used count; their instance [0] moves to the map key. A move whose source is not
# in the state (e.g. versioning was off) does nothing. Safe to delete once every state has been applied.

moved {
  from = aws_s3_bucket.source
  to   = aws_s3_bucket.this["source"]
}

moved {
  from = aws_s3_bucket.output
  to   = aws_s3_bucket.this["output"]
}

moved {
  from = aws_s3_bucket_ownership_controls.source
  to   = aws_s3_bucket_ownership_controls.this["source"]
}

moved {
  from = aws_s3_bucket_ownership_controls.output
  to   = aws_s3_bucket_ownership_controls.this["output"]
}

moved {
  from = aws_s3_bucket_public_access_block.source
  to   = aws_s3_bucket_public_access_block.this["source"]
}

moved {
  from = aws_s3_bucket_public_access_block.output
  to   = aws_s3_bucket_public_access_block.this["output"]
}

moved {
  from = aws_s3_bucket_server_side_encryption_configuration.source
  to   = aws_s3_bucket_server_side_encryption_configuration.this["source"]
}

moved {
  from = aws_s3_bucket_server_side_encryption_configuration.output
  to   = aws_s3_bucket_server_side_encryption_configuration.this["output"]
}

moved {
  from = aws_s3_bucket_versioning.source[0]
  to   = aws_s3_bucket_versioning.this["source"]
}

moved {
  from = aws_s3_bucket_versioning.output[0]
  to   = aws_s3_bucket_versioning.this["output"]
}

moved {
  from = aws_s3_bucket_logging.source[0]
  to   = aws_s3_bucket_logging.this["source"]
}

moved {
  from = aws_s3_bucket_logging.output[0]
  to   = aws_s3_bucket_logging.this["output"]
}

moved {
  from = aws_s3_bucket_lifecycle_configuration.source
  to   = aws_s3_bucket_lifecycle_configuration.this["source"]
}

moved {
  from = aws_s3_bucket_lifecycle_configuration.output
  to   = aws_s3_bucket_lifecycle_configuration.this["output"]
}

moved {
  from = aws_s3_bucket_policy.source
  to   = aws_s3_bucket_policy.this["source"]
}

moved {
  from = aws_s3_bucket_policy.output
  to   = aws_s3_bucket_policy.this["output"]
}
