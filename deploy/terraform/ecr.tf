# Repository for the worker image. Tags are immutable: deploy a new tag (git SHA) and change var.image_tag.

resource "aws_ecr_repository" "worker" {
  name                 = "${local.name}-worker"
  image_tag_mutability = "IMMUTABLE"
  force_delete         = var.ecr_force_delete

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = local.use_kms ? "KMS" : "AES256"
    kms_key         = var.kms_key_arn
  }
}

locals {
  # Exact tags (image tags cannot contain the pattern wildcard '*'), deduplicated.
  ecr_protected_tags = distinct(concat([var.image_tag], var.ecr_protected_tags))
}

resource "aws_ecr_lifecycle_policy" "worker" {
  repository = aws_ecr_repository.worker.name

  # An image selected by a rule cannot be expired by a rule of lower priority (higher number): rule 1 selects
  # the deployed tags and can never expire them (one image per immutable tag, and it keeps up to 1 each), so
  # the count rule below cannot take the image the service runs or rolls back to, however many are pushed.
  policy = jsonencode({
    rules = [
      {
        rulePriority = 1
        description  = "Never expire the deployed image tags (image_tag and ecr_protected_tags)"
        selection = {
          tagStatus      = "tagged"
          tagPatternList = local.ecr_protected_tags
          countType      = "imageCountMoreThan"
          countNumber    = length(local.ecr_protected_tags)
        }
        action = { type = "expire" }
      },
      {
        rulePriority = 2
        description  = "Expire untagged images (failed or superseded pushes) after 7 days"
        selection = {
          tagStatus   = "untagged"
          countType   = "sinceImagePushed"
          countUnit   = "days"
          countNumber = 7
        }
        action = { type = "expire" }
      },
      {
        rulePriority = 3
        description  = "Keep the ${var.ecr_keep_images} most recent images"
        selection = {
          tagStatus   = "any"
          countType   = "imageCountMoreThan"
          countNumber = var.ecr_keep_images
        }
        action = { type = "expire" }
      },
    ]
  })
}
