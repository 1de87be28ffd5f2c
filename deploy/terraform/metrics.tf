# Optional metrics collection on ECS (var.metrics_collector = "amp"): an AWS Distro for OpenTelemetry (ADOT)
# collector runs as a sidecar in every task, scrapes the worker's /metrics on 127.0.0.1:metrics_port and
# remote-writes the series to an Amazon Managed Service for Prometheus (AMP) workspace, signed with SigV4 by
# the task role (aps:RemoteWrite on that workspace only, iam.tf). With "none" nothing here is created and
# the task definition holds the worker container alone. See README ("Metrics on ECS") for the why and cost.

locals {
  amp_enabled = var.metrics_collector == "amp"

  # The workspace this stack created, or the existing one named by var.amp_workspace_id (null when off).
  amp_workspace_arn      = try(aws_prometheus_workspace.worker[0].arn, data.aws_prometheus_workspace.existing[0].arn, null)
  amp_workspace_endpoint = try(aws_prometheus_workspace.worker[0].prometheus_endpoint, data.aws_prometheus_workspace.existing[0].prometheus_endpoint, null)
  amp_workspace_id       = try(aws_prometheus_workspace.worker[0].id, data.aws_prometheus_workspace.existing[0].workspace_id, null)
  # prometheus_endpoint is https://aps-workspaces.REGION.amazonaws.com/workspaces/WS_ID/ (trailing slash).
  amp_remote_write_url = local.amp_enabled ? "${trimsuffix(local.amp_workspace_endpoint, "/")}/api/v1/remote_write" : null

  collector_container_name = "metrics-collector"

  # The collector's share of the task (Fargate sizes the task, not the containers): the worker container
  # gets task_cpu/task_memory minus this (locals.tf), so the two add up to the task size.
  collector_cpu    = local.amp_enabled ? var.metrics_collector_cpu : 0
  collector_memory = local.amp_enabled ? var.metrics_collector_memory : 0

  # The collector configuration (YAML) handed over in AOT_CONFIG_CONTENT. Only rendered when enabled: the
  # remote-write URL does not exist otherwise.
  collector_config = local.amp_enabled ? templatefile("${path.module}/templates/adot-config.yaml", {
    job_name                = "faceblur-worker"
    metrics_port            = var.metrics_port
    scrape_interval_seconds = var.metrics_scrape_interval_seconds
    remote_write_endpoint   = local.amp_remote_write_url
    region                  = var.aws_region
  }) : null

  collector_container = {
    name  = local.collector_container_name
    image = var.metrics_collector_image
    # Losing metrics must not stop photo processing: if the collector exits, the worker keeps running.
    essential = false
    cpu       = var.metrics_collector_cpu
    memory    = var.metrics_collector_memory

    environment = [{ name = "AOT_CONFIG_CONTENT", value = local.collector_config }]

    # The collector keeps nothing on disk (no persistent queue is configured).
    readonlyRootFilesystem = true

    # /healthcheck ships in the ADOT image and asks the health_check extension of the configuration.
    healthCheck = {
      command     = ["CMD", "/healthcheck"]
      interval    = 30
      timeout     = 5
      retries     = 3
      startPeriod = 15
    }

    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.worker.name
        awslogs-region        = var.aws_region
        awslogs-stream-prefix = local.collector_container_name
        mode                  = "non-blocking"
        max-buffer-size       = "4m"
      }
    }
  }

  # The sidecar, or nothing. (A for expression: `cond ? [a, b] : [a]` fails, the two tuple types differ.)
  collector_containers = [for container in [local.collector_container] : container if local.amp_enabled]
}

# Created only when metrics_collector = amp and no existing workspace is named. Encrypted with an AWS owned
# key: to use a customer managed key, create the workspace yourself and pass amp_workspace_id.
resource "aws_prometheus_workspace" "worker" {
  count = local.amp_enabled && var.amp_workspace_id == null ? 1 : 0

  alias = "${local.name}-worker"
}

data "aws_prometheus_workspace" "existing" {
  count = local.amp_enabled && var.amp_workspace_id != null ? 1 : 0

  workspace_id = var.amp_workspace_id
}

# The alert rules the compose Prometheus evaluates (deploy/prometheus/alerts.yml, checked by promtool in
# tests/monitoring), evaluated by the workspace's ruler: the same alerts on ECS, over every task's series.
resource "aws_prometheus_rule_group_namespace" "worker" {
  count = local.amp_enabled ? 1 : 0

  name         = "${local.name}-worker"
  workspace_id = local.amp_workspace_id
  data         = file("${path.module}/../prometheus/alerts.yml")
}

# Where the ruler's alerts go: the alarm topic, through the workspace's Alertmanager. Only for a workspace
# this stack created (a workspace has one Alertmanager definition, and an existing one is not ours to
# replace). The topic's policy must let aps.amazonaws.com publish (README: "Alarm topic").
resource "aws_prometheus_alert_manager_definition" "worker" {
  count = local.amp_enabled && var.amp_workspace_id == null && var.alarm_sns_topic_arn != null ? 1 : 0

  workspace_id = aws_prometheus_workspace.worker[0].id
  definition = yamlencode({
    alertmanager_config = yamlencode({
      route = { receiver = "alarm-topic", group_by = ["alertname"] }
      receivers = [{
        name = "alarm-topic"
        sns_configs = [{
          topic_arn = var.alarm_sns_topic_arn
          sigv4     = { region = var.aws_region }
        }]
      }]
    })
  })
}
