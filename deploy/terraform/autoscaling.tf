# Application Auto Scaling of the service's desired count:
#  * target tracking keeps (queued + in-flight messages) / running tasks near var.target_backlog_per_task,
#    and scales in to min_capacity (1 by default) when the queue is idle;
#  * with min_capacity = 0 (opt-in), target tracking cannot leave 0 (it multiplies the current count): a
#    step policy, fired by the SQS-only alarm "messages waiting and none in flight" (alarms.tf), sets the
#    count to 1, and target tracking takes over.

resource "aws_appautoscaling_target" "worker" {
  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.this.name}/${aws_ecs_service.worker.name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = var.min_capacity
  max_capacity       = var.max_capacity

  lifecycle {
    precondition {
      condition     = var.min_capacity <= var.max_capacity
      error_message = "min_capacity (${var.min_capacity}) must not exceed max_capacity (${var.max_capacity})."
    }
  }
}

resource "aws_appautoscaling_policy" "backlog_per_task" {
  name               = "${local.name}-backlog-per-task"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.worker.service_namespace
  resource_id        = aws_appautoscaling_target.worker.resource_id
  scalable_dimension = aws_appautoscaling_target.worker.scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = var.target_backlog_per_task
    scale_in_cooldown  = var.scale_in_cooldown_seconds
    scale_out_cooldown = var.scale_out_cooldown_seconds

    customized_metric_specification {
      metrics {
        id          = "visible"
        label       = "Messages waiting in the job queue"
        return_data = false

        metric_stat {
          stat = "Sum"

          metric {
            namespace   = "AWS/SQS"
            metric_name = "ApproximateNumberOfMessagesVisible"

            dimensions {
              name  = "QueueName"
              value = aws_sqs_queue.jobs.name
            }
          }
        }
      }

      # Messages being processed count as load too; without them the service would scale in while busy.
      metrics {
        id          = "inflight"
        label       = "Messages being processed"
        return_data = false

        metric_stat {
          stat = "Sum"

          metric {
            namespace   = "AWS/SQS"
            metric_name = "ApproximateNumberOfMessagesNotVisible"

            dimensions {
              name  = "QueueName"
              value = aws_sqs_queue.jobs.name
            }
          }
        }
      }

      metrics {
        id          = "tasks"
        label       = "Running worker tasks"
        return_data = false

        metric_stat {
          stat = "Average"

          metric {
            namespace   = "ECS/ContainerInsights"
            metric_name = "RunningTaskCount"

            dimensions {
              name  = "ClusterName"
              value = aws_ecs_cluster.this.name
            }

            dimensions {
              name  = "ServiceName"
              value = aws_ecs_service.worker.name
            }
          }
        }
      }

      # With no running task the backlog itself is returned (no division by zero); the step policy below
      # is what starts the first task.
      metrics {
        id          = "backlog_per_task"
        label       = "Backlog per running task"
        expression  = "IF(tasks > 0, (visible + inflight) / tasks, visible + inflight)"
        return_data = true
      }
    }
  }
}

resource "aws_appautoscaling_policy" "scale_from_zero" {
  count = var.min_capacity == 0 ? 1 : 0

  name               = "${local.name}-scale-from-zero"
  policy_type        = "StepScaling"
  service_namespace  = aws_appautoscaling_target.worker.service_namespace
  resource_id        = aws_appautoscaling_target.worker.resource_id
  scalable_dimension = aws_appautoscaling_target.worker.scalable_dimension

  step_scaling_policy_configuration {
    # ExactCapacity 1 is idempotent while the alarm stays in ALARM (and re-invokes the policy). It fires only
    # when no message is in flight, i.e. no worker consumes: at zero tasks that starts one; a fleet that
    # runs but consumes nothing is broken, and is cut to one task (the tasks-below-desired alarm and the
    # crashed-task events say why) instead of being grown.
    adjustment_type         = "ExactCapacity"
    cooldown                = var.scale_out_cooldown_seconds
    metric_aggregation_type = "Maximum"

    step_adjustment {
      metric_interval_lower_bound = 0
      scaling_adjustment          = 1
    }
  }
}
