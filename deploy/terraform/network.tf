# The tasks' security group: the only way in is the metrics port, from the listed CIDRs and/or security
# groups (Prometheus); the only way out is HTTPS (S3, SQS, ECR, CloudWatch Logs, Rekognition).
# Image pulls (ECR + S3 layers) and awslogs delivery also leave through the task ENI and use the HTTPS rule.
# Security groups do not filter the Amazon-provided DNS resolver or the ECS task metadata endpoint, so no
# other egress rule is needed.

resource "aws_security_group" "worker" {
  name_prefix = "${local.name}-worker-"
  description = "faceblur worker tasks: ingress only to the metrics port, egress only HTTPS"
  vpc_id      = var.vpc_id

  tags = {
    Name = "${local.name}-worker"
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "metrics_from_cidr" {
  for_each = toset(var.metrics_ingress_cidr_blocks)

  security_group_id = aws_security_group.worker.id
  description       = "Prometheus scrape of the worker metrics port from ${each.value}"
  ip_protocol       = "tcp"
  from_port         = var.metrics_port
  to_port           = var.metrics_port
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_ingress_rule" "metrics_from_security_group" {
  for_each = toset(var.metrics_ingress_security_group_ids)

  security_group_id            = aws_security_group.worker.id
  description                  = "Prometheus scrape of the worker metrics port from ${each.value}"
  ip_protocol                  = "tcp"
  from_port                    = var.metrics_port
  to_port                      = var.metrics_port
  referenced_security_group_id = each.value
}

resource "aws_vpc_security_group_egress_rule" "https_to_cidr" {
  for_each = toset(var.egress_https_cidr_blocks)

  security_group_id = aws_security_group.worker.id
  description       = "HTTPS to AWS APIs (S3, SQS, ECR, CloudWatch Logs, Rekognition)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "https_to_prefix_list" {
  for_each = toset(var.egress_https_prefix_list_ids)

  security_group_id = aws_security_group.worker.id
  description       = "HTTPS to a managed prefix list (e.g. the S3 gateway endpoint)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  prefix_list_id    = each.value
}
