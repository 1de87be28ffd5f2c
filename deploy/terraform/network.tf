# The tasks' security group: the only way in is the metrics port, from the listed CIDRs and/or security
# groups (Prometheus); the only way out is HTTPS (S3, SQS, ECR, CloudWatch Logs, STS, Rekognition, AMP).
# Image pulls (ECR + S3 layers) and awslogs delivery also leave through the task ENI and use the HTTPS rules.
# Security groups do not filter the Amazon-provided DNS resolver or the ECS task metadata endpoint, so no
# other egress rule is needed.
#
# Two network paths (var.vpc_endpoints):
#  * false (default): HTTPS to egress_https_cidr_blocks (0.0.0.0/0 unless narrowed) through a NAT gateway;
#  * true: the VPC endpoints below, and HTTPS only to them (their security group) and to the S3 gateway's
#    prefix list, plus whatever egress_https_cidr_blocks adds.

locals {
  egress_https_cidr_blocks = var.egress_https_cidr_blocks != null ? var.egress_https_cidr_blocks : (var.vpc_endpoints ? [] : ["0.0.0.0/0"])

  # Interface endpoints by service name suffix (com.amazonaws.REGION.<name>): what the worker calls (SQS,
  # Rekognition), what Fargate calls for it (ECR api and dkr for the image, CloudWatch Logs for awslogs),
  # STS (SDK credential and identity calls) and the collector's remote write (AMP).
  interface_endpoint_services = toset(concat(
    ["sqs", "ecr.api", "ecr.dkr", "logs", "sts"],
    var.detector == "local" ? [] : ["rekognition"],
    local.amp_enabled ? ["aps-workspaces"] : [],
  ))
  vpc_endpoint_subnet_ids = var.vpc_endpoint_subnet_ids != null ? var.vpc_endpoint_subnet_ids : var.private_subnet_ids
}

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
  for_each = toset(local.egress_https_cidr_blocks)

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

resource "aws_vpc_security_group_egress_rule" "https_to_endpoints" {
  count = var.vpc_endpoints ? 1 : 0

  security_group_id            = aws_security_group.worker.id
  description                  = "HTTPS to the interface VPC endpoints (SQS, ECR, CloudWatch Logs, STS, Rekognition, AMP)"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = aws_security_group.endpoints[0].id
}

resource "aws_vpc_security_group_egress_rule" "https_to_s3_gateway" {
  count = var.vpc_endpoints ? 1 : 0

  security_group_id = aws_security_group.worker.id
  description       = "HTTPS to S3 through the gateway endpoint (uploads, outputs, ECR image layers)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  prefix_list_id    = aws_vpc_endpoint.s3[0].prefix_list_id
}

# ---------------------------------------------------------------------------------------------------------
# Optional VPC endpoints (var.vpc_endpoints)
# ---------------------------------------------------------------------------------------------------------

resource "aws_security_group" "endpoints" {
  count = var.vpc_endpoints ? 1 : 0

  name_prefix = "${local.name}-endpoints-"
  description = "faceblur VPC interface endpoints: HTTPS from the worker tasks only"
  vpc_id      = var.vpc_id

  tags = {
    Name = "${local.name}-endpoints"
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "endpoints_from_worker" {
  count = var.vpc_endpoints ? 1 : 0

  security_group_id            = aws_security_group.endpoints[0].id
  description                  = "HTTPS from the faceblur worker tasks"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = aws_security_group.worker.id
}

resource "aws_vpc_endpoint" "s3" {
  count = var.vpc_endpoints ? 1 : 0

  vpc_id            = var.vpc_id
  service_name      = "com.amazonaws.${var.aws_region}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = var.vpc_endpoint_route_table_ids

  tags = {
    Name = "${local.name}-s3"
  }

  lifecycle {
    precondition {
      condition     = length(var.vpc_endpoint_route_table_ids) > 0
      error_message = "vpc_endpoints = true needs vpc_endpoint_route_table_ids: the route tables of the private subnets, where the S3 gateway endpoint adds its route."
    }
  }
}

resource "aws_vpc_endpoint" "interface" {
  for_each = var.vpc_endpoints ? local.interface_endpoint_services : toset([])

  vpc_id              = var.vpc_id
  service_name        = "com.amazonaws.${var.aws_region}.${each.key}"
  vpc_endpoint_type   = "Interface"
  subnet_ids          = local.vpc_endpoint_subnet_ids
  security_group_ids  = [aws_security_group.endpoints[0].id]
  private_dns_enabled = true

  tags = {
    Name = "${local.name}-${each.key}"
  }
}

# What the private subnets need, said at plan time (warnings: a check never blocks an apply). Only an AWS
# account can prove the path works; these catch the configurations that cannot.
check "private_subnets_have_a_path_to_aws" {
  # The first private subnet's route table (the others are usually alike; a subnet on the VPC's main route
  # table has no explicit association, and this lookup then warns that it found none).
  data "aws_route_table" "first_private_subnet" {
    subnet_id = var.private_subnet_ids[0]
  }

  assert {
    condition = var.vpc_endpoints || anytrue([
      for route in data.aws_route_table.first_private_subnet.routes :
      route.cidr_block == "0.0.0.0/0" && length(compact([route.nat_gateway_id, route.transit_gateway_id, route.network_interface_id])) > 0
    ])
    error_message = "Subnet ${var.private_subnet_ids[0]} has no default route (0.0.0.0/0) to a NAT gateway, transit gateway or network interface, and vpc_endpoints is false: tasks get no public IP, so they could not pull the image, read the queue or write logs. Add a NAT route, or set vpc_endpoints = true (with vpc_endpoint_route_table_ids)."
  }
}

check "collector_image_is_reachable" {
  assert {
    condition     = !(var.vpc_endpoints && local.amp_enabled && startswith(var.metrics_collector_image, "public.ecr.aws/") && length(local.egress_https_cidr_blocks) == 0)
    error_message = "metrics_collector_image is on public.ecr.aws, which has no VPC endpoint, and the tasks may only reach the endpoints: copy the image into the worker's ECR repository and name it in metrics_collector_image, or allow a NAT path in egress_https_cidr_blocks."
  }
}
