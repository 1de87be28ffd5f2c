# Inputs of the faceblur stack. Every variable states its unit and valid range; cross-variable rules
# (Fargate cpu/memory pairs, the worker's memory admission, the stop budget, min <= max capacity) are lifecycle
# preconditions in ecs.tf and autoscaling.tf. The variables that become worker settings refuse what the worker
# refuses (worker/config.py, worker/admission.py): tests/infra/test_worker_contract.py evaluates these rules and
# the worker's own on the same inputs and fails when they disagree.

# ---------------------------------------------------------------------------------------------------------
# General
# ---------------------------------------------------------------------------------------------------------

variable "aws_region" {
  description = "AWS region to deploy into (an AWS region code such as eu-west-1). Also passed to the worker as AWS_REGION."
  type        = string
  default     = "eu-west-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]$", var.aws_region))
    error_message = "aws_region must be a region code such as eu-west-1 or us-gov-west-1."
  }
}

variable "name_prefix" {
  description = "Prefix of every resource name (lowercase letters, digits and hyphens; 3 to 20 characters, starting with a letter). Bucket names append -source/-output, the account id and the region."
  type        = string
  default     = "faceblur"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,18}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 3-20 characters of lowercase letters, digits and hyphens, start with a letter and not end with a hyphen."
  }
}

variable "tags" {
  description = "Extra tags applied to every resource through the provider's default_tags (map of tag key to value; at most 40 entries, keys up to 128 and values up to 256 characters)."
  type        = map(string)
  default     = {}

  validation {
    condition     = length(var.tags) <= 40 && alltrue([for k, v in var.tags : length(k) <= 128 && length(v) <= 256])
    error_message = "At most 40 tags; keys up to 128 characters, values up to 256."
  }
}

variable "kms_key_arn" {
  description = "ARN of a customer managed KMS key used for the buckets (SSE-KMS), both queues, the ECR repository and the log group. null (default) = AWS managed encryption: SSE-S3 for S3, SQS-managed SSE, AES256 for ECR, CloudWatch Logs' own encryption. The key policy must allow s3.amazonaws.com (to publish to the queue) and logs.<region>.amazonaws.com; see README."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$", var.kms_key_arn))
    error_message = "kms_key_arn must be null or a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID); aliases are not accepted."
  }
}

# ---------------------------------------------------------------------------------------------------------
# Buckets
# ---------------------------------------------------------------------------------------------------------

variable "source_bucket_name" {
  description = "Name of the bucket that receives uploaded photos (3-63 characters, S3 naming rules). null (default) = <name_prefix>-source-<account id>-<region>."
  type        = string
  default     = null

  validation {
    condition = var.source_bucket_name == null || (
      can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.source_bucket_name)) &&
      !can(regex("\\.\\.|^[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+$|^xn--|^sthree-|-s3alias$|--ol-s3$", var.source_bucket_name))
    )
    error_message = "source_bucket_name must be null or a valid S3 bucket name: 3-63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit, no '..', not an IP address, no xn--/sthree- prefix, no -s3alias/--ol-s3 suffix (the worker refuses such names)."
  }
}

variable "output_bucket_name" {
  description = "Name of the bucket the worker writes blurred photos to (3-63 characters, S3 naming rules). Must differ from the source bucket, so that outputs never trigger new jobs. null (default) = <name_prefix>-output-<account id>-<region>."
  type        = string
  default     = null

  validation {
    condition = var.output_bucket_name == null || (
      can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.output_bucket_name)) &&
      !can(regex("\\.\\.|^[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+$|^xn--|^sthree-|-s3alias$|--ol-s3$", var.output_bucket_name))
    )
    error_message = "output_bucket_name must be null or a valid S3 bucket name: 3-63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit, no '..', not an IP address, no xn--/sthree- prefix, no -s3alias/--ol-s3 suffix (the worker refuses such names)."
  }
}

variable "enable_versioning" {
  description = "Enable S3 object versioning on both buckets (true/false). Noncurrent versions then expire after noncurrent_version_expiration_days."
  type        = bool
  default     = false
}

variable "noncurrent_version_expiration_days" {
  description = "Days (1-3650) after which noncurrent object versions are deleted when versioning is enabled."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_expiration_days >= 1 && var.noncurrent_version_expiration_days <= 3650 && floor(var.noncurrent_version_expiration_days) == var.noncurrent_version_expiration_days
    error_message = "noncurrent_version_expiration_days must be a whole number of days between 1 and 3650."
  }
}

variable "original_expiration_days" {
  description = "Days (0-3650) after upload at which original photos in the source bucket expire. 0 = never expire."
  type        = number
  default     = 30

  validation {
    condition     = var.original_expiration_days >= 0 && var.original_expiration_days <= 3650 && floor(var.original_expiration_days) == var.original_expiration_days
    error_message = "original_expiration_days must be a whole number of days between 0 (off) and 3650."
  }
}

variable "output_expiration_days" {
  description = "Days (0-3650) after which blurred photos in the output bucket expire. 0 (default) = keep forever."
  type        = number
  default     = 0

  validation {
    condition     = var.output_expiration_days >= 0 && var.output_expiration_days <= 3650 && floor(var.output_expiration_days) == var.output_expiration_days
    error_message = "output_expiration_days must be a whole number of days between 0 (off) and 3650."
  }
}

variable "access_log_bucket" {
  description = "Name of an existing bucket that receives S3 server access logs of both buckets (S3 naming rules). null (default) = no access logging."
  type        = string
  default     = null

  validation {
    condition     = var.access_log_bucket == null || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.access_log_bucket))
    error_message = "access_log_bucket must be null or a valid S3 bucket name."
  }
}

variable "upload_prefix_filter" {
  description = "Only objects whose key starts with this prefix create jobs (0-1024 characters, e.g. \"uploads/\"). \"\" (default) = every key."
  type        = string
  default     = ""

  validation {
    condition     = length(var.upload_prefix_filter) <= 1024
    error_message = "upload_prefix_filter must be at most 1024 characters."
  }
}

variable "upload_suffix_filter" {
  description = "Only objects whose key ends with this suffix create jobs (0-1024 characters, e.g. \".jpg\"; case sensitive). \"\" (default) = every key."
  type        = string
  default     = ""

  validation {
    condition     = length(var.upload_suffix_filter) <= 1024
    error_message = "upload_suffix_filter must be at most 1024 characters."
  }
}

variable "output_prefix" {
  description = "Key prefix (0-512 characters) the worker puts in front of each output key (OUTPUT_PREFIX). \"\" (default) = same key as the upload. The task role may only write below this prefix."
  type        = string
  default     = ""

  validation {
    condition     = length(var.output_prefix) <= 512 && !startswith(var.output_prefix, "/")
    error_message = "output_prefix must be at most 512 characters and must not start with '/'."
  }
}

# ---------------------------------------------------------------------------------------------------------
# Queue
# ---------------------------------------------------------------------------------------------------------

variable "max_processing_seconds" {
  description = "Worst-case seconds (60-7200) one photo may take from receive to delete (MAX_PROCESSING_SECONDS). The queue's visibility timeout is 6 times this value, capped at the SQS maximum of 43200 s. At least 60: the worker refuses less than its visibility extension (HEARTBEAT_VISIBILITY_SECONDS, 60 s)."
  type        = number
  default     = 120

  validation {
    condition     = var.max_processing_seconds >= 60 && var.max_processing_seconds <= 7200 && floor(var.max_processing_seconds) == var.max_processing_seconds
    error_message = "max_processing_seconds must be a whole number of seconds between 60 (the worker's HEARTBEAT_VISIBILITY_SECONDS) and 7200 (6 x 7200 = 43200, the SQS maximum visibility timeout)."
  }
}

variable "message_retention_seconds" {
  description = "Seconds (60-1209600, i.e. 1 minute to 14 days) an unprocessed job stays in the main queue. The DLQ always keeps messages 14 days."
  type        = number
  default     = 345600

  validation {
    condition     = var.message_retention_seconds >= 60 && var.message_retention_seconds <= 1209600 && floor(var.message_retention_seconds) == var.message_retention_seconds
    error_message = "message_retention_seconds must be a whole number between 60 and 1209600."
  }
}

# ---------------------------------------------------------------------------------------------------------
# Container image and task
# ---------------------------------------------------------------------------------------------------------

variable "image_tag" {
  description = "Tag of the worker image in the ECR repository (1-128 characters [A-Za-z0-9_.-], not \"latest\": tags are immutable, use a git SHA or a version)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag)) && var.image_tag != "latest"
    error_message = "image_tag must be 1-128 characters of letters, digits, '_', '.', '-' (not starting with '.' or '-') and must not be \"latest\"."
  }
}

variable "ecr_keep_images" {
  description = "Number of most recent images (1-1000) the ECR lifecycle policy keeps; older ones are expired."
  type        = number
  default     = 30

  validation {
    condition     = var.ecr_keep_images >= 1 && var.ecr_keep_images <= 1000 && floor(var.ecr_keep_images) == var.ecr_keep_images
    error_message = "ecr_keep_images must be a whole number between 1 and 1000."
  }
}

variable "ecr_protected_tags" {
  description = "Image tags (0-20, same form as image_tag) the ECR lifecycle policy never expires, besides image_tag itself: e.g. the previous release you may roll back to, or a copy of the collector image (adot-v0.40.0). [] (default) = image_tag only."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.ecr_protected_tags) <= 20 && alltrue([for t in var.ecr_protected_tags : can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", t))])
    error_message = "ecr_protected_tags must hold at most 20 tags of 1-128 characters [A-Za-z0-9_.-], not starting with '.' or '-'."
  }
}

variable "ecr_force_delete" {
  description = "Allow terraform destroy to delete the ECR repository while it still holds images (true/false)."
  type        = bool
  default     = false
}

variable "task_cpu" {
  description = "Fargate task CPU units (1024 = 1 vCPU): one of 256, 512, 1024, 2048, 4096, 8192, 16384. task_memory must be a valid pair for it."
  type        = number
  default     = 1024

  validation {
    condition     = contains([256, 512, 1024, 2048, 4096, 8192, 16384], var.task_cpu)
    error_message = "task_cpu must be one of 256, 512, 1024, 2048, 4096, 8192, 16384."
  }
}

variable "task_memory" {
  description = "Fargate task memory in MiB (512-122880; the valid values depend on task_cpu, e.g. 2048-8192 in 1024 steps for 1024 CPU units). The worker container gets it (less the metrics collector's share) as a hard limit, and its memory admission needs (MiB of worker memory - 512) x 0.8 >= max_pixels x 20 + 3 x max_object_bytes + 48 MiB (precondition): 2048 MiB for the defaults, 3072 MiB with metrics_collector = amp."
  type        = number
  default     = 2048

  validation {
    condition     = var.task_memory >= 512 && var.task_memory <= 122880 && floor(var.task_memory) == var.task_memory
    error_message = "task_memory must be a whole number of MiB between 512 and 122880."
  }
}

variable "cpu_architecture" {
  description = "CPU architecture of the Fargate task: X86_64 or ARM64 (Graviton). The image must be built for it (docker buildx --platform linux/amd64 or linux/arm64)."
  type        = string
  default     = "X86_64"

  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "cpu_architecture must be X86_64 or ARM64."
  }
}

variable "ephemeral_storage_gib" {
  description = "Task ephemeral storage in GiB (20-200; 20 is the Fargate default and adds nothing). Holds /tmp, where ImageMagick writes its pixel cache for large photos."
  type        = number
  default     = 20

  validation {
    condition     = var.ephemeral_storage_gib >= 20 && var.ephemeral_storage_gib <= 200 && floor(var.ephemeral_storage_gib) == var.ephemeral_storage_gib
    error_message = "ephemeral_storage_gib must be a whole number between 20 and 200."
  }
}

variable "log_retention_days" {
  description = "Days the worker's CloudWatch log group keeps events: one of 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be one of the values CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653)."
  }
}

# ---------------------------------------------------------------------------------------------------------
# Worker settings (container environment)
# ---------------------------------------------------------------------------------------------------------

variable "worker_concurrency" {
  description = "Photos one task processes in parallel (WORKER_CONCURRENCY), 1-64."
  type        = number
  default     = 4

  validation {
    condition     = var.worker_concurrency >= 1 && var.worker_concurrency <= 64 && floor(var.worker_concurrency) == var.worker_concurrency
    error_message = "worker_concurrency must be a whole number between 1 and 64."
  }
}

variable "metrics_port" {
  description = "TCP port (1024-65535) of the worker's Prometheus /metrics and /healthz endpoint (METRICS_PORT). The only port open for ingress."
  type        = number
  default     = 9102

  validation {
    condition     = var.metrics_port >= 1024 && var.metrics_port <= 65535 && floor(var.metrics_port) == var.metrics_port
    error_message = "metrics_port must be a whole number between 1024 and 65535."
  }
}

variable "detector" {
  description = "Face detector the worker uses (DETECTOR): local (bundled CenterFace model), rekognition (Amazon Rekognition DetectFaces) or both (union of the two). rekognition:DetectFaces is granted only for rekognition and both."
  type        = string
  default     = "local"

  validation {
    condition     = contains(["local", "rekognition", "both"], var.detector)
    error_message = "detector must be local, rekognition or both."
  }
}

variable "max_pixels" {
  description = "Largest image, in pixels (width x height), the worker accepts (MAX_PIXELS), 1000000-268435456; larger images are rejected permanently (sent to the DLQ). Each pixel needs 20 bytes of worker memory: task_memory must hold one photo of this size (precondition), e.g. 268435456 needs about 7 GiB."
  type        = number
  default     = 50000000

  validation {
    condition     = var.max_pixels >= 1000000 && var.max_pixels <= 268435456 && floor(var.max_pixels) == var.max_pixels
    error_message = "max_pixels must be a whole number between 1000000 and 268435456."
  }
}

variable "max_object_bytes" {
  description = "Largest upload, in bytes, the worker downloads (MAX_OBJECT_BYTES), 1024-5368709120 (5 GiB); larger objects are rejected permanently. The worker's memory admission counts it 3 times (precondition on task_memory)."
  type        = number
  default     = 52428800

  validation {
    condition     = var.max_object_bytes >= 1024 && var.max_object_bytes <= 5368709120 && floor(var.max_object_bytes) == var.max_object_bytes
    error_message = "max_object_bytes must be a whole number between 1024 and 5368709120."
  }
}

variable "shutdown_grace_seconds" {
  description = "Seconds (1-95) the worker keeps finishing in-flight photos after SIGTERM (SHUTDOWN_GRACE_SECONDS). A long poll in progress (20 s, not interrupted) + this + 5 s to settle must fit in the container stopTimeout of 120 s, after which ECS sends SIGKILL: 20 + 95 + 5 = 120."
  type        = number
  default     = 90

  validation {
    condition     = var.shutdown_grace_seconds >= 1 && var.shutdown_grace_seconds <= 95 && floor(var.shutdown_grace_seconds) == var.shutdown_grace_seconds
    error_message = "shutdown_grace_seconds must be a whole number between 1 and 95: the 20 s long poll, the grace period and 5 s to settle must fit in the 120 s stopTimeout."
  }
}

variable "rekognition_tps" {
  description = "Rekognition DetectFaces calls per second one task may make (REKOGNITION_TPS), 0.1-100. Keep tasks x this below the account's DetectFaces quota (5 TPS in many regions by default)."
  type        = number
  default     = 5

  validation {
    condition     = var.rekognition_tps >= 0.1 && var.rekognition_tps <= 100
    error_message = "rekognition_tps must be between 0.1 and 100."
  }
}

variable "extra_environment" {
  description = "Additional container environment variables (map of NAME to value; names [A-Za-z_][A-Za-z0-9_]*, at most 50). May not override the variables this module sets (QUEUE_URL, OUTPUT_BUCKET, ...), nor the settings its preconditions reason about (HEARTBEAT_VISIBILITY_SECONDS, MEMORY_BUDGET), nor set SOURCE_BUCKET, which SOURCE_BUCKETS replaced. Other worker settings given here are checked by the worker only, when the task starts (a refused one stops the task: see the task-stopped event rule)."
  type        = map(string)
  default     = {}

  validation {
    condition = length(var.extra_environment) <= 50 && alltrue([
      for k in keys(var.extra_environment) : can(regex("^[A-Za-z_][A-Za-z0-9_]*$", k)) && !contains([
        "AWS_REGION", "QUEUE_URL", "DLQ_URL", "SOURCE_BUCKETS", "SOURCE_BUCKET", "OUTPUT_BUCKET", "OUTPUT_PREFIX",
        "WORKER_CONCURRENCY", "METRICS_PORT", "DETECTOR", "MAX_PIXELS", "MAX_OBJECT_BYTES", "SSE_KMS_KEY_ID",
        "MAX_PROCESSING_SECONDS", "SHUTDOWN_GRACE_SECONDS", "LOG_FORMAT", "REKOGNITION_TPS", "MAGICK_TEMPORARY_PATH",
        "SQS_WAIT_SECONDS", "HEARTBEAT_VISIBILITY_SECONDS", "MEMORY_BUDGET",
      ], k)
    ])
    error_message = "extra_environment: at most 50 entries, names must match [A-Za-z_][A-Za-z0-9_]* and must not be one of the variables set by this module."
  }
}

# ---------------------------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------------------------

variable "vpc_id" {
  description = "ID of the VPC the tasks run in (vpc-...)."
  type        = string

  validation {
    condition     = can(regex("^vpc-[0-9a-f]{8,17}$", var.vpc_id))
    error_message = "vpc_id must look like vpc-0123456789abcdef0."
  }
}

variable "private_subnet_ids" {
  description = "Private subnet IDs (1-16, subnet-...) for the tasks. They need a route to S3, SQS, ECR, CloudWatch Logs (and Rekognition) through a NAT gateway or VPC endpoints: tasks get no public IP."
  type        = list(string)

  validation {
    condition     = length(var.private_subnet_ids) >= 1 && length(var.private_subnet_ids) <= 16 && alltrue([for s in var.private_subnet_ids : can(regex("^subnet-[0-9a-f]{8,17}$", s))])
    error_message = "private_subnet_ids must hold 1-16 subnet IDs such as subnet-0123456789abcdef0."
  }
}

variable "metrics_ingress_cidr_blocks" {
  description = "IPv4 CIDR blocks (0-50) allowed to reach metrics_port, e.g. the Prometheus subnets. [] (default) = none."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.metrics_ingress_cidr_blocks) <= 50 && alltrue([for c in var.metrics_ingress_cidr_blocks : can(cidrhost(c, 0)) && can(regex("^[0-9.]+/[0-9]+$", c)) && c != "0.0.0.0/0"])
    error_message = "metrics_ingress_cidr_blocks must hold at most 50 IPv4 CIDR blocks, and not 0.0.0.0/0."
  }
}

variable "metrics_ingress_security_group_ids" {
  description = "Security group IDs (0-50, sg-...) whose members may reach metrics_port, e.g. the Prometheus server's group. [] (default) = none."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.metrics_ingress_security_group_ids) <= 50 && alltrue([for s in var.metrics_ingress_security_group_ids : can(regex("^sg-[0-9a-f]{8,17}$", s))])
    error_message = "metrics_ingress_security_group_ids must hold at most 50 security group IDs such as sg-0123456789abcdef0."
  }
}

variable "egress_https_cidr_blocks" {
  description = "IPv4 CIDR blocks (0-50) the tasks may reach on TCP 443 (AWS APIs through a NAT gateway). null (default) = 0.0.0.0/0 without VPC endpoints, none with vpc_endpoints = true (the tasks then reach only the endpoints and the S3 prefix list). Give CIDRs to allow more, e.g. a NAT path for public.ecr.aws."
  type        = list(string)
  default     = null

  validation {
    condition     = var.egress_https_cidr_blocks == null || (length(coalesce(var.egress_https_cidr_blocks, [])) <= 50 && alltrue([for c in coalesce(var.egress_https_cidr_blocks, []) : can(cidrhost(c, 0)) && can(regex("^[0-9.]+/[0-9]+$", c))]))
    error_message = "egress_https_cidr_blocks must be null or hold at most 50 IPv4 CIDR blocks."
  }
}

variable "egress_https_prefix_list_ids" {
  description = "Managed prefix list IDs (0-10, pl-...) the tasks may reach on TCP 443, e.g. the S3 gateway endpoint's prefix list. [] (default) = none."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.egress_https_prefix_list_ids) <= 10 && alltrue([for p in var.egress_https_prefix_list_ids : can(regex("^pl-[0-9a-f]{8,17}$", p))])
    error_message = "egress_https_prefix_list_ids must hold at most 10 prefix list IDs such as pl-63a5400a."
  }
}

variable "vpc_endpoints" {
  description = "Create the VPC endpoints the tasks need (true/false, default false = reach AWS through a NAT gateway): S3 (gateway, on vpc_endpoint_route_table_ids), and interface endpoints for SQS, ECR (api, dkr), CloudWatch Logs, STS, Rekognition (detector = rekognition/both) and AMP (metrics_collector = amp), with private DNS. Set it false if the VPC already has them (a second interface endpoint with private DNS for the same service is refused by AWS)."
  type        = bool
  default     = false
}

variable "vpc_endpoint_subnet_ids" {
  description = "Subnet IDs (1-16, subnet-..., one per availability zone) for the interface endpoints' network interfaces. null (default) = private_subnet_ids. Ignored unless vpc_endpoints = true."
  type        = list(string)
  default     = null

  validation {
    condition     = var.vpc_endpoint_subnet_ids == null || (length(coalesce(var.vpc_endpoint_subnet_ids, [])) >= 1 && length(coalesce(var.vpc_endpoint_subnet_ids, [])) <= 16 && alltrue([for s in coalesce(var.vpc_endpoint_subnet_ids, []) : can(regex("^subnet-[0-9a-f]{8,17}$", s))]))
    error_message = "vpc_endpoint_subnet_ids must be null or hold 1-16 subnet IDs such as subnet-0123456789abcdef0."
  }
}

variable "vpc_endpoint_route_table_ids" {
  description = "Route table IDs (0-50, rtb-...) of the private subnets, for the S3 gateway endpoint's routes. Required (at least one) when vpc_endpoints = true: without the route, S3 traffic has no path."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.vpc_endpoint_route_table_ids) <= 50 && alltrue([for r in var.vpc_endpoint_route_table_ids : can(regex("^rtb-[0-9a-f]{8,17}$", r))])
    error_message = "vpc_endpoint_route_table_ids must hold at most 50 route table IDs such as rtb-0123456789abcdef0."
  }
}

# ---------------------------------------------------------------------------------------------------------
# Capacity (Fargate and Fargate Spot)
# ---------------------------------------------------------------------------------------------------------

variable "fargate_base" {
  description = "Tasks (0-1000) always placed on regular FARGATE before the weights apply, so that Spot interruptions never take the last task. Default 1."
  type        = number
  default     = 1

  validation {
    condition     = var.fargate_base >= 0 && var.fargate_base <= 1000 && floor(var.fargate_base) == var.fargate_base
    error_message = "fargate_base must be a whole number between 0 and 1000."
  }
}

variable "fargate_weight" {
  description = "Relative share (0-1000) of the tasks beyond fargate_base placed on regular FARGATE. Default 1. fargate_weight + fargate_spot_weight must be at least 1."
  type        = number
  default     = 1

  validation {
    condition     = var.fargate_weight >= 0 && var.fargate_weight <= 1000 && floor(var.fargate_weight) == var.fargate_weight
    error_message = "fargate_weight must be a whole number between 0 and 1000."
  }
}

variable "fargate_spot_weight" {
  description = "Relative share (0-1000) of the tasks beyond fargate_base placed on FARGATE_SPOT (up to ~70% cheaper, interrupted with a SIGTERM and 2 minutes' notice, which the worker's drain fits in; outputs are idempotent, so an interrupted photo is simply redone). 0 (default) = no Spot; e.g. 3 with fargate_weight 1 puts 3 of 4 extra tasks on Spot."
  type        = number
  default     = 0

  validation {
    condition     = var.fargate_spot_weight >= 0 && var.fargate_spot_weight <= 1000 && floor(var.fargate_spot_weight) == var.fargate_spot_weight
    error_message = "fargate_spot_weight must be a whole number between 0 and 1000."
  }
}

# ---------------------------------------------------------------------------------------------------------
# Scaling
# ---------------------------------------------------------------------------------------------------------

variable "desired_count" {
  description = "Number of tasks (0-1000) the service starts with. Terraform sets it at creation only (ignore_changes): afterwards Application Auto Scaling or `aws ecs update-service --desired-count` owns it."
  type        = number
  default     = 1

  validation {
    condition     = var.desired_count >= 0 && var.desired_count <= 1000 && floor(var.desired_count) == var.desired_count
    error_message = "desired_count must be a whole number between 0 and 1000."
  }
}

variable "min_capacity" {
  description = "Fewest tasks (0-1000) Application Auto Scaling keeps. 1 (default): a task is always there to take the first photo. 0 is an opt-in: scale to zero when the queue is idle, and a wake-up alarm on SQS metrics alone starts a task when messages wait and none is in flight (1-3 minutes, up to ~15 after hours of an idle queue; unproven without an AWS account, see README)."
  type        = number
  default     = 1

  validation {
    condition     = var.min_capacity >= 0 && var.min_capacity <= 1000 && floor(var.min_capacity) == var.min_capacity
    error_message = "min_capacity must be a whole number between 0 and 1000."
  }
}

variable "max_capacity" {
  description = "Most tasks (1-1000) Application Auto Scaling may run. Must be >= min_capacity. With detector = rekognition/both, max_capacity x rekognition_tps should fit the account's DetectFaces quota."
  type        = number
  default     = 10

  validation {
    condition     = var.max_capacity >= 1 && var.max_capacity <= 1000 && floor(var.max_capacity) == var.max_capacity
    error_message = "max_capacity must be a whole number between 1 and 1000."
  }
}

variable "target_backlog_per_task" {
  description = "Target tracking set point: queued plus in-flight messages per running task (1-10000). A good value is worker_concurrency x (acceptable queueing latency / average seconds per photo)."
  type        = number
  default     = 20

  validation {
    condition     = var.target_backlog_per_task >= 1 && var.target_backlog_per_task <= 10000
    error_message = "target_backlog_per_task must be between 1 and 10000."
  }
}

variable "scale_in_cooldown_seconds" {
  description = "Seconds (0-3600) after a scale-in before target tracking may scale in again."
  type        = number
  default     = 300

  validation {
    condition     = var.scale_in_cooldown_seconds >= 0 && var.scale_in_cooldown_seconds <= 3600 && floor(var.scale_in_cooldown_seconds) == var.scale_in_cooldown_seconds
    error_message = "scale_in_cooldown_seconds must be a whole number between 0 and 3600."
  }
}

variable "scale_out_cooldown_seconds" {
  description = "Seconds (0-3600) after a scale-out before target tracking or the scale-from-zero policy may scale out again."
  type        = number
  default     = 60

  validation {
    condition     = var.scale_out_cooldown_seconds >= 0 && var.scale_out_cooldown_seconds <= 3600 && floor(var.scale_out_cooldown_seconds) == var.scale_out_cooldown_seconds
    error_message = "scale_out_cooldown_seconds must be a whole number between 0 and 3600."
  }
}

# ---------------------------------------------------------------------------------------------------------
# Alarms
# ---------------------------------------------------------------------------------------------------------

variable "oldest_message_age_alarm_seconds" {
  description = "Alarm when the oldest job in the main queue is older than this many seconds (60-1209600). Default 900 s (15 minutes)."
  type        = number
  default     = 900

  validation {
    condition     = var.oldest_message_age_alarm_seconds >= 60 && var.oldest_message_age_alarm_seconds <= 1209600
    error_message = "oldest_message_age_alarm_seconds must be between 60 and 1209600."
  }
}

variable "alarm_sns_topic_arn" {
  description = "ARN of an SNS topic (arn:aws:sns:...) notified when an alarm fires and recovers, and of failed deployments and crashed tasks (EventBridge rules, events.tf). Required: set it, or set it to null explicitly to accept alarms that tell nobody (a check warns on every plan). Its topic policy must let events.amazonaws.com publish (README)."
  type        = string

  validation {
    condition     = var.alarm_sns_topic_arn == null || can(regex("^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}(\\.fifo)?$", var.alarm_sns_topic_arn))
    error_message = "alarm_sns_topic_arn must be null or an SNS topic ARN."
  }
}

# ---------------------------------------------------------------------------------------------------------
# Metrics collection on ECS (metrics.tf)
# ---------------------------------------------------------------------------------------------------------

variable "metrics_collector" {
  description = "Where the worker's Prometheus metrics go from ECS: none (default; scrape the tasks yourself on metrics_port) or amp (an AWS Distro for OpenTelemetry collector sidecar scrapes 127.0.0.1:metrics_port and remote-writes to Amazon Managed Service for Prometheus)."
  type        = string
  default     = "none"

  validation {
    condition     = contains(["none", "amp"], var.metrics_collector)
    error_message = "metrics_collector must be none or amp."
  }
}

variable "amp_workspace_id" {
  description = "ID of an existing Amazon Managed Service for Prometheus workspace (ws-...) to write to when metrics_collector = amp. null (default) = create one named <name_prefix>-worker. Ignored when metrics_collector = none."
  type        = string
  default     = null

  validation {
    condition     = var.amp_workspace_id == null || can(regex("^ws-[A-Za-z0-9-]{1,64}$", var.amp_workspace_id))
    error_message = "amp_workspace_id must be null or a workspace ID such as ws-12345678-abcd-1234-abcd-123456789012."
  }
}

variable "metrics_collector_image" {
  description = "Image of the ADOT collector sidecar (repository:tag, a pinned tag, not latest). public.ecr.aws needs a NAT gateway; with VPC endpoints only, copy the image into the worker's ECR repository and name it here (the execution role may pull from that repository)."
  type        = string
  default     = "public.ecr.aws/aws-observability/aws-otel-collector:v0.40.0"

  validation {
    condition     = can(regex("^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)+:[A-Za-z0-9._-]{1,128}$", var.metrics_collector_image)) && !endswith(var.metrics_collector_image, ":latest")
    error_message = "metrics_collector_image must be repository:tag with a pinned tag (not latest)."
  }
}

variable "metrics_collector_cpu" {
  description = "CPU units (64-1024, 1024 = 1 vCPU) reserved for the collector sidecar out of task_cpu when metrics_collector = amp; the worker container gets the rest. At most half of task_cpu (precondition)."
  type        = number
  default     = 128

  validation {
    condition     = var.metrics_collector_cpu >= 64 && var.metrics_collector_cpu <= 1024 && floor(var.metrics_collector_cpu) == var.metrics_collector_cpu
    error_message = "metrics_collector_cpu must be a whole number between 64 and 1024."
  }
}

variable "metrics_collector_memory" {
  description = "Hard memory limit in MiB (64-2048) of the collector sidecar, out of task_memory, when metrics_collector = amp; the worker container reserves the rest, which must stay >= 512 MiB (precondition)."
  type        = number
  default     = 256

  validation {
    condition     = var.metrics_collector_memory >= 64 && var.metrics_collector_memory <= 2048 && floor(var.metrics_collector_memory) == var.metrics_collector_memory
    error_message = "metrics_collector_memory must be a whole number of MiB between 64 and 2048."
  }
}

variable "metrics_scrape_interval_seconds" {
  description = "Seconds (10-300) between two scrapes of the worker's /metrics by the collector sidecar. Each scrape is one sample per series in AMP, which is what AMP bills."
  type        = number
  default     = 30

  validation {
    condition     = var.metrics_scrape_interval_seconds >= 10 && var.metrics_scrape_interval_seconds <= 300 && floor(var.metrics_scrape_interval_seconds) == var.metrics_scrape_interval_seconds
    error_message = "metrics_scrape_interval_seconds must be a whole number between 10 and 300."
  }
}
