locals {
  name       = var.name_prefix
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition

  tags = merge(var.tags, {
    Application = "faceblur"
    ManagedBy   = "terraform"
  })

  use_kms = var.kms_key_arn != null

  source_bucket_name = coalesce(var.source_bucket_name, "${local.name}-source-${local.account_id}-${var.aws_region}")
  output_bucket_name = coalesce(var.output_bucket_name, "${local.name}-output-${local.account_id}-${var.aws_region}")

  # A message must stay invisible for longer than the worst case the worker may spend on it, with room for
  # retries inside the worker: 6 x the processing budget (AWS's guidance for Lambda/SQS), capped at the SQS
  # maximum of 12 hours (var.max_processing_seconds <= 7200 keeps it exact).
  visibility_timeout_seconds = min(6 * var.max_processing_seconds, 43200)

  # CloudWatch dimensions and names used by autoscaling.tf and alarms.tf.
  log_group_name = "/ecs/${local.name}-worker"
  container_name = "worker"

  # The stop budget. ECS sends SIGTERM, then SIGKILL stopTimeout seconds later (Fargate allows at most 120).
  # Before it the worker must finish a long poll in progress (SQS_WAIT_SECONDS, which this module sets, not
  # interrupted by the signal), the grace period and the settler's last flush (5 s): the precondition in
  # ecs.tf checks the whole sum. The worker checks the same sum (worker/config.py: STOP_TIMEOUT_SECONDS,
  # SETTLE_SECONDS); tests/infra compares the numbers.
  stop_timeout_seconds    = 120
  sqs_wait_seconds        = 20
  shutdown_settle_seconds = 5

  # The worker's memory admission (worker/admission.py), which refuses to start when its budget cannot hold
  # one photo of MAX_PIXELS and MAX_OBJECT_BYTES. The worker container has a hard memory limit (below), so
  # its budget is (limit - baseline) x share of that, not of the host's memory.
  worker_admission = {
    pixel_bytes    = 20
    encoded_copies = 3
    fixed_bytes    = 48 * 1048576
    baseline_bytes = 512 * 1048576
    budget_share   = 0.8
  }
  worker_memory_mib          = var.task_memory - local.collector_memory
  worker_memory_budget_bytes = floor(max(0, (local.worker_memory_mib * 1048576 - local.worker_admission.baseline_bytes) * local.worker_admission.budget_share))
  largest_photo_bytes        = var.max_pixels * local.worker_admission.pixel_bytes + local.worker_admission.encoded_copies * var.max_object_bytes + local.worker_admission.fixed_bytes

  # Valid Fargate memory sizes (MiB) per CPU value, for the precondition in ecs.tf.
  fargate_memory_options = {
    "256"   = [512, 1024, 2048]
    "512"   = range(1024, 4097, 1024)
    "1024"  = range(2048, 8193, 1024)
    "2048"  = range(4096, 16385, 1024)
    "4096"  = range(8192, 30721, 1024)
    "8192"  = range(16384, 61441, 4096)
    "16384" = range(32768, 122881, 8192)
  }

  # Everything the worker reads from its environment. Values must be strings for the ECS API.
  # DLQ_URL spares the worker a GetQueueUrl call (it would otherwise resolve the RedrivePolicy target);
  # SOURCE_BUCKETS is the worker's allow-list of buckets it takes jobs from (comma-separated; this stack has
  # one) and feeds its start-up recursion guard. It replaced SOURCE_BUCKET, which is no longer set.
  base_environment = {
    AWS_REGION             = var.aws_region
    QUEUE_URL              = aws_sqs_queue.jobs.url
    DLQ_URL                = aws_sqs_queue.dlq.url
    SOURCE_BUCKETS         = aws_s3_bucket.this["source"].bucket
    OUTPUT_BUCKET          = aws_s3_bucket.this["output"].bucket
    OUTPUT_PREFIX          = var.output_prefix
    WORKER_CONCURRENCY     = tostring(var.worker_concurrency)
    METRICS_PORT           = tostring(var.metrics_port)
    DETECTOR               = var.detector
    MAX_PIXELS             = tostring(var.max_pixels)
    MAX_OBJECT_BYTES       = tostring(var.max_object_bytes)
    MAX_PROCESSING_SECONDS = tostring(var.max_processing_seconds)
    SHUTDOWN_GRACE_SECONDS = tostring(var.shutdown_grace_seconds)
    SQS_WAIT_SECONDS       = tostring(local.sqs_wait_seconds)
    LOG_FORMAT             = "json"
    REKOGNITION_TPS        = tostring(var.rekognition_tps)
    MAGICK_TEMPORARY_PATH  = "/tmp"
  }
  # Outputs are written with SSE-KMS under the customer key only when one is configured. (A for expression,
  # because `cond ? { SSE_KMS_KEY_ID = ... } : {}` is an error: the two object types differ.)
  kms_environment = { for k, v in { SSE_KMS_KEY_ID = var.kms_key_arn } : k => v if local.use_kms }

  # Managed entries win over var.extra_environment (whose validation forbids the same names anyway).
  managed_environment = merge(local.base_environment, local.kms_environment)
  environment         = merge(var.extra_environment, local.managed_environment)

  worker_container = {
    name      = local.container_name
    image     = "${aws_ecr_repository.worker.repository_url}:${var.image_tag}"
    essential = true

    # The task's CPU units and memory less the metrics collector's share (0 without it, metrics.tf). The
    # memory is a hard limit: it is the cgroup limit the worker sizes its memory budget from (MEMORY_BUDGET
    # auto), so the budget is this container's, not the host's.
    cpu    = var.task_cpu - local.collector_cpu
    memory = local.worker_memory_mib

    # With the collector sidecar, the worker starts after it and, the order being reversed on shutdown,
    # stops before it: the collector keeps scraping while the worker drains its last photos after SIGTERM.
    dependsOn = local.amp_enabled ? [{ containerName = local.collector_container_name, condition = "START" }] : null

    environment = [for k in sort(keys(local.environment)) : { name = k, value = local.environment[k] }]

    portMappings = [{
      containerPort = var.metrics_port
      protocol      = "tcp"
      name          = "metrics"
    }]

    # The root filesystem is read-only; ImageMagick's temporary files (MAGICK_TEMPORARY_PATH) and any other
    # scratch space go to /tmp, a task-scoped volume on the task's ephemeral storage.
    readonlyRootFilesystem = true
    mountPoints = [{
      sourceVolume  = "tmp"
      containerPath = "/tmp"
      readOnly      = false
    }]

    # tini-style init as PID 1: forwards SIGTERM to the worker and reaps ImageMagick's children.
    linuxParameters = {
      initProcessEnabled = true
    }

    # ECS sends SIGTERM, waits stopTimeout seconds, then SIGKILL. The worker ends its poll, finishes
    # in-flight photos within SHUTDOWN_GRACE_SECONDS and settles (the stop budget above); unfinished
    # messages are returned to the queue.
    stopTimeout = local.stop_timeout_seconds

    healthCheck = {
      command = [
        "CMD-SHELL",
        "python -c \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:${var.metrics_port}/healthz', timeout=3)\" || exit 1",
      ]
      interval    = 30
      timeout     = 5
      retries     = 3
      startPeriod = 60
    }

    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.worker.name
        awslogs-region        = var.aws_region
        awslogs-stream-prefix = "worker"
        mode                  = "non-blocking"
        max-buffer-size       = "25m"
      }
    }
  }

  alarm_actions = var.alarm_sns_topic_arn == null ? [] : [var.alarm_sns_topic_arn]

  # The service's capacity provider strategy (ecs.tf); a provider with base and weight 0 is left out.
  capacity_strategy = {
    FARGATE      = { base = var.fargate_base, weight = var.fargate_weight }
    FARGATE_SPOT = { base = 0, weight = var.fargate_spot_weight }
  }
}
