terraform {
  # 1.5: check blocks (with scoped data sources), lifecycle preconditions, and the syntax used here.
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # The major this configuration was written against (argument names of provider 5.x). A new major
      # renames and removes arguments: raise the bound only after `terraform validate` and a plan with it.
      version = ">= 5.0, < 6.0"
    }
  }

  # State: see examples/backend.tf.example (S3 with locking); without a backend block state is local.
}

provider "aws" {
  region = var.aws_region

  default_tags {
    tags = local.tags
  }
}
