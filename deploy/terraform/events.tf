# Failed deployments and crashing tasks, sent to the alarm topic. wait_for_steady_state is false and, at zero
# tasks, the circuit breaker has nothing to judge: without these rules a deployment that cannot start a task
# goes unseen. The events are ECS's own (EventBridge, default bus); each rule matches this service only.
# The topic's access policy must let events.amazonaws.com publish (README: "Alarm topic").

locals {
  service_arn = "arn:${local.partition}:ecs:${var.aws_region}:${local.account_id}:service/${aws_ecs_cluster.this.name}/${aws_ecs_service.worker.name}"

  ecs_event_patterns = {
    # The circuit breaker gave up on a deployment (and rolled it back).
    deployment-failed = {
      source        = ["aws.ecs"]
      "detail-type" = ["ECS Deployment State Change"]
      resources     = [local.service_arn]
      detail = {
        eventName = ["SERVICE_DEPLOYMENT_FAILED"]
      }
    }
    # The scheduler cannot keep tasks running: tasks stopping in a loop (SERVICE_TASK_START_IMPAIRED), or
    # none can be placed or configured (subnets, security groups, roles, image).
    tasks-failing = {
      source        = ["aws.ecs"]
      "detail-type" = ["ECS Service Action"]
      resources     = [local.service_arn]
      detail = {
        eventName = [
          "SERVICE_TASK_START_IMPAIRED",
          "SERVICE_TASK_PLACEMENT_FAILURE",
          "SERVICE_TASK_CONFIGURATION_FAILURE",
        ]
      }
    }
    # A task of this service stopped because its essential container (the worker) exited by itself: a
    # crash, a refused configuration (exit 2), start-up that never reached AWS (exit 4), or OOM. Tasks that
    # ECS stops (scale-in, deployments, Spot) stop with another stop code and do not match.
    worker-exited = {
      source        = ["aws.ecs"]
      "detail-type" = ["ECS Task State Change"]
      detail = {
        clusterArn = [aws_ecs_cluster.this.arn]
        group      = ["service:${aws_ecs_service.worker.name}"]
        lastStatus = ["STOPPED"]
        stopCode   = ["EssentialContainerExited"]
      }
    }
  }
}

resource "aws_cloudwatch_event_rule" "ecs" {
  for_each = local.ecs_event_patterns

  name          = "${local.name}-${each.key}"
  description   = "faceblur worker ${each.key}: ECS events of ${aws_ecs_service.worker.name} for the alarm topic"
  event_pattern = jsonencode(each.value)
}

resource "aws_cloudwatch_event_target" "ecs_to_alarm_topic" {
  for_each = { for name, pattern in local.ecs_event_patterns : name => pattern if var.alarm_sns_topic_arn != null }

  rule      = aws_cloudwatch_event_rule.ecs[each.key].name
  target_id = "alarm-topic"
  arn       = var.alarm_sns_topic_arn
}
