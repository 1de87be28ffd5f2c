# CloudWatch dashboard of the pipeline: the job queue, the DLQ and the ECS service. Every metric names its
# queue, cluster or service by reference, so the dashboard follows name_prefix.
#
# The worker's own Prometheus series (faceblur_*) are not on it: with metrics_collector = "amp" they are in
# Amazon Managed Service for Prometheus, which CloudWatch dashboards cannot query (use Amazon Managed
# Grafana or the workspace's query API); the text widget says where they are.

locals {
  dashboard_period = 60

  # Where the worker's own metrics are, for the text widget.
  dashboard_worker_metrics_amp  = <<-EOT
    ## Worker metrics (faceblur_*)
    Collected by the ADOT collector sidecar of each task into **Amazon Managed Service for Prometheus**.
    CloudWatch dashboards cannot query AMP, so they are **not shown here**: query the workspace (Terraform
    outputs `amp_workspace_arn` and `amp_query_url`) from Amazon Managed Grafana or with SigV4-signed requests.
  EOT
  dashboard_worker_metrics_none = <<-EOT
    ## Worker metrics (faceblur_*)
    Not collected on ECS (`metrics_collector = "none"`): each task serves them on port ${var.metrics_port}
    (`/metrics`) for a Prometheus inside the VPC. With `metrics_collector = "amp"` they go to Amazon Managed
    Service for Prometheus (not to CloudWatch either).
  EOT

  dashboard_widgets = [
    {
      type   = "metric"
      x      = 0
      y      = 0
      width  = 8
      height = 6
      properties = {
        title  = "Job queue: visible messages"
        region = var.aws_region
        view   = "timeSeries"
        stat   = "Maximum"
        period = local.dashboard_period
        metrics = [
          ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", aws_sqs_queue.jobs.name, { label = "visible" }],
        ]
      }
    },
    {
      type   = "metric"
      x      = 8
      y      = 0
      width  = 8
      height = 6
      properties = {
        title  = "Job queue: age of the oldest message (s)"
        region = var.aws_region
        view   = "timeSeries"
        stat   = "Maximum"
        period = local.dashboard_period
        metrics = [
          ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", aws_sqs_queue.jobs.name, { label = "oldest message age" }],
        ]
        annotations = {
          horizontal = [{ label = "alarm threshold", value = var.oldest_message_age_alarm_seconds }]
        }
      }
    },
    {
      type   = "metric"
      x      = 16
      y      = 0
      width  = 8
      height = 6
      properties = {
        title  = "Dead-letter queue: visible messages"
        region = var.aws_region
        view   = "timeSeries"
        stat   = "Maximum"
        period = local.dashboard_period
        metrics = [
          ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", aws_sqs_queue.dlq.name, { label = "failed jobs" }],
        ]
      }
    },
    {
      type   = "metric"
      x      = 0
      y      = 6
      width  = 8
      height = 6
      properties = {
        title  = "Worker service: CPU and memory utilisation (%)"
        region = var.aws_region
        view   = "timeSeries"
        stat   = "Average"
        period = local.dashboard_period
        metrics = [
          ["AWS/ECS", "CPUUtilization", "ClusterName", aws_ecs_cluster.this.name, "ServiceName", aws_ecs_service.worker.name, { label = "CPU" }],
          ["AWS/ECS", "MemoryUtilization", "ClusterName", aws_ecs_cluster.this.name, "ServiceName", aws_ecs_service.worker.name, { label = "memory" }],
        ]
        yAxis = { left = { min = 0, max = 100 } }
      }
    },
    {
      type   = "metric"
      x      = 8
      y      = 6
      width  = 8
      height = 6
      properties = {
        title  = "Worker service: tasks"
        region = var.aws_region
        view   = "timeSeries"
        stat   = "Maximum"
        period = local.dashboard_period
        metrics = [
          ["ECS/ContainerInsights", "RunningTaskCount", "ClusterName", aws_ecs_cluster.this.name, "ServiceName", aws_ecs_service.worker.name, { label = "running" }],
          ["ECS/ContainerInsights", "DesiredTaskCount", "ClusterName", aws_ecs_cluster.this.name, "ServiceName", aws_ecs_service.worker.name, { label = "desired" }],
        ]
        yAxis = { left = { min = 0 } }
      }
    },
    {
      type   = "text"
      x      = 16
      y      = 6
      width  = 8
      height = 6
      properties = {
        markdown = local.amp_enabled ? local.dashboard_worker_metrics_amp : local.dashboard_worker_metrics_none
      }
    },
  ]
}

resource "aws_cloudwatch_dashboard" "worker" {
  dashboard_name = "${local.name}-worker"
  dashboard_body = jsonencode({ widgets = local.dashboard_widgets })
}
