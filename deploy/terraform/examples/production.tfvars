# Example inputs: copy, adjust, then `terraform apply -var-file=examples/production.tfvars`.
aws_region  = "eu-west-1"
name_prefix = "faceblur"
image_tag   = "3f2c1a9" # git SHA of the pushed image; tags are immutable

vpc_id             = "vpc-0123456789abcdef0"
private_subnet_ids = ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"]

# Network path: a NAT gateway (default), or VPC endpoints for every AWS API the tasks call; with endpoints the
# tasks' HTTPS egress is narrowed to the endpoints and the S3 prefix list.
vpc_endpoints = false
# vpc_endpoint_route_table_ids = ["rtb-0123456789abcdef0"] # the private subnets' route tables (S3 gateway)

# Prometheus lives in the monitoring subnet / security group.
metrics_ingress_cidr_blocks        = ["10.20.0.0/24"]
metrics_ingress_security_group_ids = ["sg-0123456789abcdef0"]

# Optional customer managed key for S3, SQS, ECR and logs (see README for its key policy).
# kms_key_arn = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"

enable_versioning        = false
original_expiration_days = 30
upload_prefix_filter     = "uploads/"
upload_suffix_filter     = ""
output_prefix            = ""

cpu_architecture   = "ARM64"
task_cpu           = 1024
task_memory        = 2048
log_retention_days = 30

detector               = "local"
worker_concurrency     = 4
max_processing_seconds = 120
max_pixels             = 50000000
max_object_bytes       = 52428800
shutdown_grace_seconds = 90 # + the 20 s poll + 5 s to settle = 115 <= the 120 s stopTimeout
rekognition_tps        = 5

# Capacity: the first task on regular Fargate, then 3 of every 4 extra tasks on Fargate Spot.
fargate_base        = 1
fargate_weight      = 1
fargate_spot_weight = 3

extra_environment = {
  LOG_LEVEL = "info"
}

desired_count           = 1
min_capacity            = 1 # 0 = scale to zero when idle (opt-in; the wake-up takes minutes)
max_capacity            = 10
target_backlog_per_task = 20

# Worker metrics from ECS: "none", or "amp" for the ADOT collector sidecar writing to Amazon Managed Service
# for Prometheus (a new workspace, or an existing one with amp_workspace_id). The sidecar's share comes out
# of task_cpu/task_memory.
metrics_collector               = "none"
metrics_scrape_interval_seconds = 30
# amp_workspace_id              = "ws-12345678-abcd-1234-abcd-123456789012"

oldest_message_age_alarm_seconds = 900
alarm_sns_topic_arn              = "arn:aws:sns:eu-west-1:123456789012:faceblur-alarms"

tags = {
  Team = "media"
}
