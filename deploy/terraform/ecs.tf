# ECS cluster, the worker's task definition and the service that keeps the tasks running.

resource "aws_ecs_cluster" "this" {
  name = local.name

  # Container Insights publishes RunningTaskCount/DesiredTaskCount (ECS/ContainerInsights), which the
  # autoscaling policies divide the queue backlog by.
  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_cloudwatch_log_group" "worker" {
  #checkov:skip=CKV_AWS_338:Retention is an operator choice (var.log_retention_days, default 30 days): worker logs are operational JSON lines (keys, timings, errors), not an audit trail that must be kept a year.
  name              = local.log_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

resource "aws_ecs_task_definition" "worker" {
  family                   = "${local.name}-worker"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = tostring(var.task_cpu)
  memory                   = tostring(var.task_memory)
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  dynamic "ephemeral_storage" {
    for_each = var.ephemeral_storage_gib > 20 ? [var.ephemeral_storage_gib] : []

    content {
      size_in_gib = ephemeral_storage.value
    }
  }

  # Task-scoped scratch volume on the ephemeral storage, mounted at /tmp (the root filesystem is read-only).
  volume {
    name = "tmp"
  }

  # The worker, plus the metrics collector sidecar when metrics_collector = amp (metrics.tf).
  container_definitions = jsonencode(concat([local.worker_container], local.collector_containers))

  lifecycle {
    precondition {
      condition     = contains(local.fargate_memory_options[tostring(var.task_cpu)], var.task_memory)
      error_message = "task_memory ${var.task_memory} MiB is not a valid Fargate size for task_cpu ${var.task_cpu}: valid sizes are ${join(", ", [for m in local.fargate_memory_options[tostring(var.task_cpu)] : tostring(m)])}."
    }

    precondition {
      condition     = local.collector_cpu * 2 <= var.task_cpu && var.task_memory - local.collector_memory >= 512
      error_message = "The metrics collector may take at most half of task_cpu and must leave the worker at least 512 MiB of task_memory: raise task_cpu/task_memory or lower metrics_collector_cpu/metrics_collector_memory."
    }

    precondition {
      condition     = var.shutdown_grace_seconds < local.stop_timeout_seconds
      error_message = "shutdown_grace_seconds must stay below the container stopTimeout (${local.stop_timeout_seconds} s)."
    }
  }
}

resource "aws_ecs_service" "worker" {
  name             = "${local.name}-worker"
  cluster          = aws_ecs_cluster.this.id
  task_definition  = aws_ecs_task_definition.worker.arn
  desired_count    = var.desired_count
  launch_type      = "FARGATE"
  platform_version = "LATEST"

  # A queue worker has no load balancer: rolling deployments start new tasks before stopping old ones, and a
  # deployment whose tasks keep failing (e.g. the container health check) is rolled back automatically.
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [aws_security_group.worker.id]
    assign_public_ip = false
  }

  enable_ecs_managed_tags = true
  propagate_tags          = "SERVICE"
  wait_for_steady_state   = false

  lifecycle {
    # desired_count belongs to Application Auto Scaling (and to operators' update-service) after creation.
    ignore_changes = [desired_count]
  }
}
