# CloudWatch alarms. Actions go to var.alarm_sns_topic_arn when it is set (local.alarm_actions); events.tf
# sends failed deployments and crashed tasks to the same topic.

# The wake-up, only with min_capacity = 0 (opt-in scale to zero): 1 while messages have waited a whole minute
# and none was in flight, else 0. SQS metrics only: they exist whether or not a task runs, unlike Container
# Insights' task counts, which may publish nothing for a service at zero tasks. A running worker takes
# visible messages within one long poll, so "waiting and none in flight" means no worker is consuming.
resource "aws_cloudwatch_metric_alarm" "scale_from_zero" {
  count = var.min_capacity == 0 ? 1 : 0

  alarm_name          = "${local.name}-scale-from-zero"
  alarm_description   = "Messages have waited in ${aws_sqs_queue.jobs.name} for a minute with none in flight: no worker is consuming, start one."
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  evaluation_periods  = 1
  datapoints_to_alarm = 1
  # No SQS data (a queue idle for hours may publish none until it is active again): no wake-up yet.
  treat_missing_data = "notBreaching"
  alarm_actions      = [aws_appautoscaling_policy.scale_from_zero[0].arn]

  metric_query {
    id          = "visible"
    return_data = false

    metric {
      namespace   = "AWS/SQS"
      metric_name = "ApproximateNumberOfMessagesVisible"
      period      = 60
      stat        = "Minimum"
      dimensions = {
        QueueName = aws_sqs_queue.jobs.name
      }
    }
  }

  metric_query {
    id          = "inflight"
    return_data = false

    metric {
      namespace   = "AWS/SQS"
      metric_name = "ApproximateNumberOfMessagesNotVisible"
      period      = 60
      stat        = "Maximum"
      dimensions = {
        QueueName = aws_sqs_queue.jobs.name
      }
    }
  }

  metric_query {
    id          = "start_needed"
    label       = "Messages waiting with none in flight"
    expression  = "IF(visible > 0 AND FILL(inflight, 0) == 0, 1, 0)"
    return_data = true
  }
}

# Tasks the service wants but does not run, for 5 minutes: image pull, role, subnet or capacity problems, or
# tasks that die soon after starting. Container Insights' counts; at zero desired there is nothing to miss.
resource "aws_cloudwatch_metric_alarm" "tasks_below_desired" {
  alarm_name          = "${local.name}-tasks-below-desired"
  alarm_description   = "${aws_ecs_service.worker.name} has run fewer tasks than it wants for 5 minutes: look at the service's events and the stopped tasks' reasons."
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  evaluation_periods  = 5
  datapoints_to_alarm = 5
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  metric_query {
    id          = "desired"
    return_data = false

    metric {
      namespace   = "ECS/ContainerInsights"
      metric_name = "DesiredTaskCount"
      period      = 60
      stat        = "Minimum"
      dimensions = {
        ClusterName = aws_ecs_cluster.this.name
        ServiceName = aws_ecs_service.worker.name
      }
    }
  }

  metric_query {
    id          = "running"
    return_data = false

    metric {
      namespace   = "ECS/ContainerInsights"
      metric_name = "RunningTaskCount"
      period      = 60
      stat        = "Maximum"
      dimensions = {
        ClusterName = aws_ecs_cluster.this.name
        ServiceName = aws_ecs_service.worker.name
      }
    }
  }

  metric_query {
    id          = "missing"
    label       = "Tasks wanted but not running"
    expression  = "desired - FILL(running, 0)"
    return_data = true
  }
}

# Alarms and event rules that notify nobody are how a broken deployment goes unseen: the variable is
# required, and choosing null is warned about on every plan.
check "alarms_notify_someone" {
  assert {
    condition     = var.alarm_sns_topic_arn != null
    error_message = "alarm_sns_topic_arn is null: no alarm and no failed-deployment or crashed-task event notifies anyone (they show in the console only). Set it to an SNS topic that pages or mails the team."
  }
}

resource "aws_cloudwatch_metric_alarm" "dlq_not_empty" {
  alarm_name          = "${local.name}-dlq-not-empty"
  alarm_description   = "Photos failed permanently and are waiting in ${aws_sqs_queue.dlq.name}: inspect the worker logs, fix, then redrive."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  dimensions = {
    QueueName = aws_sqs_queue.dlq.name
  }
}

resource "aws_cloudwatch_metric_alarm" "oldest_message_age" {
  alarm_name          = "${local.name}-oldest-job-age"
  alarm_description   = "The oldest job in ${aws_sqs_queue.jobs.name} is older than ${var.oldest_message_age_alarm_seconds} s: workers are down, stuck or too few (max_capacity)."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.oldest_message_age_alarm_seconds
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  dimensions = {
    QueueName = aws_sqs_queue.jobs.name
  }
}
