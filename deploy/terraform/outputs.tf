output "source_bucket_name" {
  description = "Bucket to upload photos to (each new object becomes a job)."
  value       = aws_s3_bucket.this["source"].bucket
}

output "output_bucket_name" {
  description = "Bucket the worker writes blurred photos to, under the same key (after output_prefix)."
  value       = aws_s3_bucket.this["output"].bucket
}

output "queue_url" {
  description = "URL of the job queue (the worker's QUEUE_URL)."
  value       = aws_sqs_queue.jobs.url
}

output "queue_arn" {
  description = "ARN of the job queue."
  value       = aws_sqs_queue.jobs.arn
}

output "dlq_url" {
  description = "URL of the dead-letter queue holding permanently failed jobs."
  value       = aws_sqs_queue.dlq.url
}

output "dlq_arn" {
  description = "ARN of the dead-letter queue."
  value       = aws_sqs_queue.dlq.arn
}

output "ecr_repository_url" {
  description = "Repository to push the worker image to (tag it with var.image_tag)."
  value       = aws_ecr_repository.worker.repository_url
}

output "cluster_name" {
  description = "ECS cluster name."
  value       = aws_ecs_cluster.this.name
}

output "service_name" {
  description = "ECS service name (for aws ecs update-service)."
  value       = aws_ecs_service.worker.name
}

output "log_group_name" {
  description = "CloudWatch log group of the worker containers."
  value       = aws_cloudwatch_log_group.worker.name
}

output "task_definition_arn" {
  description = "ARN of the current task definition revision."
  value       = aws_ecs_task_definition.worker.arn
}

output "task_role_arn" {
  description = "IAM role the worker runs as (grant it in a customer KMS key policy if you use one)."
  value       = aws_iam_role.task.arn
}

output "security_group_id" {
  description = "Security group of the worker tasks (allow it as a source where Prometheus needs it)."
  value       = aws_security_group.worker.id
}

output "amp_workspace_arn" {
  description = "ARN of the Amazon Managed Service for Prometheus workspace the collector sidecar writes to (null when metrics_collector = none)."
  value       = local.amp_workspace_arn
}

output "amp_query_url" {
  description = "Prometheus-compatible query endpoint of that workspace (SigV4-signed requests, e.g. awscurl or Amazon Managed Grafana); null when metrics_collector = none."
  value       = local.amp_enabled ? "${trimsuffix(local.amp_workspace_endpoint, "/")}/api/v1/query" : null
}
