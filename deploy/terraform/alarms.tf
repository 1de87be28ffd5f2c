# CloudWatch alarms. Actions go to var.alarm_sns_topic_arn when it is set (local.alarm_actions).

# Drives the scale-from-zero step policy: 1 while messages wait and the service wants no task, else 0.
resource "aws_cloudwatch_metric_alarm" "scale_from_zero" {
  alarm_name          = "${local.name}-scale-from-zero"
  alarm_description   = "Messages are waiting in ${aws_sqs_queue.jobs.name} and ${aws_ecs_service.worker.name} has no task: start one."
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  evaluation_periods  = 1
  datapoints_to_alarm = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_appautoscaling_policy.scale_from_zero.arn]

  metric_query {
    id          = "visible"
    return_data = false

    metric {
      namespace   = "AWS/SQS"
      metric_name = "ApproximateNumberOfMessagesVisible"
      period      = 60
      stat        = "Maximum"
      dimensions = {
        QueueName = aws_sqs_queue.jobs.name
      }
    }
  }

  metric_query {
    id          = "tasks"
    return_data = false

    metric {
      namespace   = "ECS/ContainerInsights"
      metric_name = "DesiredTaskCount"
      period      = 60
      stat        = "Maximum"
      dimensions = {
        ClusterName = aws_ecs_cluster.this.name
        ServiceName = aws_ecs_service.worker.name
      }
    }
  }

  # Container Insights may publish nothing for a service scaled to zero: a missing task count means 0.
  metric_query {
    id          = "start_needed"
    label       = "Messages waiting while no task is wanted"
    expression  = "IF(visible > 0 AND FILL(tasks, 0) == 0, 1, 0)"
    return_data = true
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
