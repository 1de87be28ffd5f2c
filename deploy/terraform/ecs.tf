# ECS cluster, the worker's task definition and the service that keeps the tasks running.

resource "aws_ecs_cluster" "this" {
  name = local.name

  # Container Insights publishes RunningTaskCount/DesiredTaskCount (ECS/ContainerInsights): target tracking
  # divides the queue backlog by the first, the tasks-below-desired alarm compares the two. The wake-up from
  # zero does not use them (alarms.tf).
  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

# Both Fargate capacity providers are available to the cluster; the service's strategy (below) picks the mix.
resource "aws_ecs_cluster_capacity_providers" "this" {
  cluster_name       = aws_ecs_cluster.this.name
  capacity_providers = ["FARGATE", "FARGATE_SPOT"]
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
      condition     = local.sqs_wait_seconds + var.shutdown_grace_seconds + local.shutdown_settle_seconds <= local.stop_timeout_seconds
      error_message = "The stop budget does not fit: a long poll (${local.sqs_wait_seconds} s) + shutdown_grace_seconds (${var.shutdown_grace_seconds} s) + settling (${local.shutdown_settle_seconds} s) must fit in the container stopTimeout (${local.stop_timeout_seconds} s), or ECS kills the worker mid-drain."
    }

    # The worker refuses to start when its memory budget cannot hold one photo of MAX_PIXELS and
    # MAX_OBJECT_BYTES (worker/admission.py: check_fits); refuse the plan instead.
    precondition {
      condition     = local.largest_photo_bytes <= local.worker_memory_budget_bytes
      error_message = "The worker would refuse to start: one photo of max_pixels (${var.max_pixels}) and max_object_bytes (${var.max_object_bytes}) needs ${ceil(local.largest_photo_bytes / 1048576)} MiB, and the worker container's ${local.worker_memory_mib} MiB give a memory budget of ${floor(local.worker_memory_budget_bytes / 1048576)} MiB ((memory - 512 MiB) x 0.8). Raise task_memory or lower max_pixels/max_object_bytes."
    }

    precondition {
      condition     = local.source_bucket_name != local.output_bucket_name
      error_message = "source_bucket_name and output_bucket_name must differ: outputs written to the source bucket would become new jobs."
    }
  }

  # The roles must carry their policies before the first task starts: ECS assumes the execution role to pull
  # the image and create the log stream, and the worker's first calls use the task role.
  depends_on = [aws_iam_role_policy.execution, aws_iam_role_policy.task]
}

resource "aws_ecs_service" "worker" {
  name             = "${local.name}-worker"
  cluster          = aws_ecs_cluster.this.id
  task_definition  = aws_ecs_task_definition.worker.arn
  desired_count    = var.desired_count
  platform_version = "LATEST"

  # var.fargate_base tasks on regular Fargate, the rest split by weight between FARGATE and FARGATE_SPOT.
  # A Spot interruption is a SIGTERM with 2 minutes' notice: the worker drains within its stop budget, and
  # a photo it had to abandon is redone elsewhere (outputs are idempotent).
  dynamic "capacity_provider_strategy" {
    for_each = { for name, strategy in local.capacity_strategy : name => strategy if strategy.base > 0 || strategy.weight > 0 }

    content {
      capacity_provider = capacity_provider_strategy.key
      base              = capacity_provider_strategy.value.base
      weight            = capacity_provider_strategy.value.weight
    }
  }

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

    precondition {
      condition     = var.fargate_weight + var.fargate_spot_weight >= 1
      error_message = "fargate_weight + fargate_spot_weight must be at least 1: tasks beyond fargate_base need somewhere to run."
    }
  }

  # First tasks must be able to pull (execution role, egress rules) and call AWS (task role, egress) as soon
  # as they start, and the capacity providers must be on the cluster before the strategy names them.
  depends_on = [
    aws_iam_role_policy.execution,
    aws_iam_role_policy.task,
    aws_vpc_security_group_egress_rule.https_to_cidr,
    aws_vpc_security_group_egress_rule.https_to_prefix_list,
    aws_vpc_security_group_egress_rule.https_to_endpoints,
    aws_vpc_security_group_egress_rule.https_to_s3_gateway,
    aws_vpc_endpoint.interface,
    aws_vpc_endpoint.s3,
    aws_ecs_cluster_capacity_providers.this,
  ]
}
