"""Terraform refuses what the worker refuses: one source of the rules, checked by running both.

The worker's rules live in worker/config.py (each setting's declared bound and the rules between settings) and
worker/admission.py (memory admission against the container's memory). deploy/terraform mirrors them in variable
validations and preconditions. Here the Terraform rules are evaluated (tests/infra/hcl_eval.py) on many inputs,
the task definition's environment and memory are evaluated from the same inputs, and the worker's own
`from_env` and `check_fits` judge that environment. Wherever Terraform would accept a plan, the worker must
accept the task it starts; for the memory admission the two must agree exactly.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.infra.hcl_eval import PARTIAL, EvalError, Scope, Unknown, Unsupported, evaluate, evaluate_value
from tests.infra.test_terraform import TF_DIR, Config, blocks, build_config, parse_text
from worker import admission
from worker import config as worker_config

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"
REQUIRED = {
    "image_tag": "3f2c1a9",
    "vpc_id": "vpc-0123456789abcdef0",
    "private_subnet_ids": ["subnet-0123456789abcdef0"],
    "alarm_sns_topic_arn": "arn:aws:sns:eu-west-1:123456789012:faceblur-alarms",
}


@pytest.fixture(scope="module")
def cfg() -> Config:
    return build_config([parse_text(p.read_text()) for p in sorted(TF_DIR.glob("*.tf"))])


# ---------------------------------------------------------------------------------------------------------
# Evaluating the configuration for one set of inputs
# ---------------------------------------------------------------------------------------------------------


class Plan:
    """The inputs of one `terraform plan`, and what Terraform and the worker make of them."""

    def __init__(self, cfg: Config, **overrides: Any) -> None:
        self.cfg = cfg
        unknown = set(overrides) - set(cfg.variables)
        assert not unknown, f"not variables: {sorted(unknown)}"
        self.variables = {name: v.get("default") for name, v in cfg.variables.items()} | REQUIRED | overrides
        self.scope = Scope(self.variables, cfg.locals, self._resolve)

    def value(self, expression: Any) -> Any:
        return evaluate_value(expression, self.scope)

    def _resolve(self, path: list[Any]) -> Any:
        """The few resource attributes the environment and the container need, as AWS would name them."""
        region = self.variables["aws_region"]
        if path[0] == "data":
            known = {
                ("aws_caller_identity", "current", "account_id"): ACCOUNT,
                ("aws_partition", "current", "partition"): "aws",
            }
            return known.get(tuple(path[1:]), PARTIAL)
        if path[:2] == ["aws_s3_bucket", "this"] and len(path) == 4:
            name = self.scope.local("buckets")[path[2]]["name"]
            return {"bucket": name, "id": name, "arn": f"arn:aws:s3:::{name}"}.get(path[3], PARTIAL)
        if len(path) == 3 and path[1] in self.cfg.resources.get(path[0], {}):
            body = self.cfg.resources[path[0]][path[1]]
            if path[0] == "aws_sqs_queue":
                name = self.value(body["name"])
                attributes = {
                    "name": name,
                    "url": f"https://sqs.{region}.amazonaws.com/{ACCOUNT}/{name}",
                    "arn": f"arn:aws:sqs:{region}:{ACCOUNT}:{name}",
                }
                return attributes.get(path[2], PARTIAL)
            if path[0] == "aws_ecr_repository" and path[2] == "repository_url":
                return f"{ACCOUNT}.dkr.ecr.{region}.amazonaws.com/{self.value(body['name'])}"
            if path[0] == "aws_cloudwatch_log_group" and path[2] == "name":
                return self.value(body["name"])
        return PARTIAL

    # -- Terraform's verdict
    def terraform_refusals(self) -> list[str]:
        """What `terraform plan` would refuse: variable validations first (Terraform stops there), then the
        preconditions of every resource instance that exists."""
        refusals = []
        for name, variable in self.cfg.variables.items():
            only_var = Scope({name: self.variables[name]}, {})
            for rule in blocks(variable, "validation"):
                if evaluate_value(rule["condition"], only_var) is not True:
                    refusals.append(f"var.{name}: {rule['error_message']}")
        if refusals:
            return refusals
        for rtype, named in self.cfg.resources.items():
            for rname, body in named.items():
                rules = [rule for lifecycle in blocks(body, "lifecycle") for rule in blocks(lifecycle, "precondition")]
                if not rules or not self._exists(body):
                    continue
                for rule in rules:
                    if self.value(rule["condition"]) is not True:
                        refusals.append(f"{rtype}.{rname}: {rule['error_message']}")
        return refusals

    def _exists(self, body: dict[str, Any]) -> bool:
        if "count" in body:
            return bool(self.value(body["count"]))
        if "for_each" in body:
            return bool(self.value(body["for_each"]))
        return True

    # -- the worker's verdict on the task Terraform would start
    def environment(self) -> dict[str, str]:
        env = self.scope.local("environment")
        assert all(isinstance(v, str) for v in env.values()), env
        return env

    def worker_refusal(self) -> str | None:
        """The worker's own start-up verdict: its settings from the task's environment, then its memory admission
        with the container's hard memory limit as the cgroup limit it reads."""
        try:
            settings = worker_config.from_env(self.environment())
        except worker_config.ConfigError as exc:
            return f"config: {exc}"
        memory_mib = self.scope.local("worker_container")["memory"]
        budget = (
            admission.default_budget(memory_mib * 2**20)
            if settings.image.memory_budget == "auto"
            else worker_config.parse_bytes(settings.image.memory_budget)
        )
        try:
            admission.check_fits(budget, settings.image.max_pixels, settings.service.max_object_bytes)
        except admission.BudgetTooSmall as exc:
            return f"admission: {exc}"
        return None

    def worker_refusal_or_error(self) -> str | None:
        try:
            return self.worker_refusal()
        except EvalError as exc:  # inputs so wrong that Terraform could not even build the task definition
            return f"unbuildable: {exc}"


def disagreements(cfg: Config, cases: list[dict[str, Any]]) -> tuple[list[str], int, int]:
    """Cases Terraform accepts and the worker refuses; and how many cases each side refused."""
    found, terraform_refused, worker_refused = [], 0, 0
    for case in cases:
        plan = Plan(cfg, **case)
        refused_by_terraform = bool(plan.terraform_refusals())
        refusal = None if refused_by_terraform else plan.worker_refusal()
        terraform_refused += refused_by_terraform
        if refused_by_terraform:
            worker_refused += plan.worker_refusal_or_error() is not None
        elif refusal is not None:
            found.append(f"{case}: Terraform accepts, the worker refuses ({refusal})")
    return found, terraform_refused, worker_refused


# ---------------------------------------------------------------------------------------------------------
# The inputs: every bound either side declares, and one step beyond it
# ---------------------------------------------------------------------------------------------------------

# Terraform variable -> the worker setting it becomes (base_environment in locals.tf).
MAPPED = {
    "worker_concurrency": "WORKER_CONCURRENCY",
    "metrics_port": "METRICS_PORT",
    "max_pixels": "MAX_PIXELS",
    "max_object_bytes": "MAX_OBJECT_BYTES",
    "max_processing_seconds": "MAX_PROCESSING_SECONDS",
    "shutdown_grace_seconds": "SHUTDOWN_GRACE_SECONDS",
    "rekognition_tps": "REKOGNITION_TPS",
}


def worker_bounds(env: str) -> set[float]:
    """Numbers the worker's declared rule for a setting names (its `between` bounds)."""
    (f,) = [f for _, f in worker_config.declarations() if f.metadata["env"] == env]
    rule = f.metadata["rule"]
    return {float(n) for n in re.findall(r"-?\d+(?:\.\d+)?(?:e[+-]?\d+)?", rule.text)} if rule else set()


def terraform_bounds(cfg: Config, name: str) -> set[float]:
    text = " ".join(v["condition"] for v in blocks(cfg.variables[name], "validation"))
    return {float(n) for n in re.findall(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])", text)}


def probe_values(bounds: set[float], whole: bool) -> list[float | int]:
    values: set[float] = set()
    step = 1.0 if whole else 0.05
    for b in bounds:
        values |= {b - step, b, b + step}
    return sorted(int(v) if whole and float(v).is_integer() else v for v in values if v > 0 or v == 0)


def test_every_worker_setting_terraform_sets_is_probed(cfg: Config) -> None:
    base = cfg.local("base_environment")
    for name, env in MAPPED.items():
        assert base[env] == f"${{tostring(var.{name})}}", f"{env} is not var.{name}"
    # The stop budget's wait is a local, not a variable: it is probed through shutdown_grace_seconds.
    assert base["SQS_WAIT_SECONDS"] == "${tostring(local.sqs_wait_seconds)}"


def test_terraform_accepts_no_single_value_the_worker_refuses(cfg: Config) -> None:
    cases = []
    for name, env in MAPPED.items():
        whole = "floor(var." in " ".join(v["condition"] for v in blocks(cfg.variables[name], "validation"))
        for value in probe_values(worker_bounds(env) | terraform_bounds(cfg, name), whole):
            cases.append({name: value})
    found, terraform_refused, worker_refused = disagreements(cfg, cases)
    assert found == []
    assert terraform_refused >= len(MAPPED), "the probes never left Terraform's ranges: they prove nothing"
    assert worker_refused >= 3, "the probes never reached the worker's own limits"


def fargate_sizes(cfg: Config) -> list[tuple[int, int]]:
    options = Plan(cfg).scope.local("fargate_memory_options")
    return [(int(cpu), memory) for cpu, sizes in options.items() for memory in (sizes[0], sizes[1], sizes[-1])]


def test_memory_admission_in_terraform_is_the_workers(cfg: Config) -> None:
    """Over Fargate sizes x photo limits x the collector sidecar, the plan passes exactly when the worker's
    memory admission would let it start (and never when it would not)."""
    disagree, accepted, refused = [], 0, 0
    for (cpu, memory), pixels, nbytes, collector in itertools.product(
        fargate_sizes(cfg),
        (1_000_000, 50_000_000, 100_000_000, 268_435_456),
        (1024, 52_428_800, 5_368_709_120),
        ("none", "amp"),
    ):
        case = {
            "task_cpu": cpu,
            "task_memory": memory,
            "max_pixels": pixels,
            "max_object_bytes": nbytes,
            "metrics_collector": collector,
        }
        plan = Plan(cfg, **case)
        terraform = [r for r in plan.terraform_refusals() if "metrics collector may take" not in r]
        if collector == "amp" and len(terraform) != len(plan.terraform_refusals()):
            continue  # the sidecar does not fit this task at all: another rule, not the admission
        worker = plan.worker_refusal()
        if (not terraform) != (worker is None):
            disagree.append(f"{case}: Terraform {terraform or 'accepts'}, worker {worker or 'accepts'}")
        accepted += not terraform
        refused += bool(terraform)
    assert disagree == []
    assert accepted >= 20, accepted
    assert refused >= 20, refused


def test_the_cases_the_review_found(cfg: Config) -> None:
    def refusals(**case: Any) -> str:
        return " | ".join(Plan(cfg, **case).terraform_refusals())

    assert refusals() == "", "the defaults must plan"
    assert Plan(cfg).worker_refusal() is None, "and the worker must start with them"
    assert "max_processing_seconds must be a whole number of seconds between 60" in refusals(max_processing_seconds=59)
    assert "would refuse to start" in refusals(task_cpu=512, task_memory=1024)
    assert "would refuse to start" in refusals(max_pixels=268_435_456)
    assert refusals(max_pixels=268_435_456, task_cpu=2048, task_memory=8192) == ""
    assert "shutdown_grace_seconds must be a whole number between 1 and 95" in refusals(shutdown_grace_seconds=96)
    assert "would refuse to start" in refusals(metrics_collector="amp"), "the sidecar's 256 MiB leave too little"
    assert refusals(metrics_collector="amp", task_memory=3072) == ""
    assert "must differ" in refusals(source_bucket_name="same-bucket", output_bucket_name="same-bucket")


@pytest.mark.parametrize(
    "name",
    ["a..b-bucket", "192.168.1.10", "xn--bucket", "sthree-bucket", "bucket-s3alias", "bucket--ol-s3", "Upper-case"],
)
def test_bucket_names_the_worker_refuses_do_not_plan(cfg: Config, name: str) -> None:
    assert not worker_config.is_bucket_name(name)
    for variable in ("source_bucket_name", "output_bucket_name"):
        assert Plan(cfg, **{variable: name}).terraform_refusals(), f"{variable} = {name!r} plans"
    good = Plan(cfg, source_bucket_name="uploads.example-1", output_bucket_name="outputs.example-1")
    assert good.terraform_refusals() == []
    assert good.worker_refusal() is None


def test_generated_bucket_names_pass_the_workers_rule(cfg: Config) -> None:
    for prefix, region in (
        ("faceblur", "eu-west-1"),
        ("a-20-character-prefx", "ap-southeast-2"),
        ("x1y", "us-gov-west-1"),
    ):
        plan = Plan(cfg, name_prefix=prefix, aws_region=region)
        assert plan.terraform_refusals() == []
        env = plan.environment()
        assert plan.worker_refusal() is None, (prefix, region, env["SOURCE_BUCKETS"], env["OUTPUT_BUCKET"])


# ---------------------------------------------------------------------------------------------------------
# The numbers both sides must share
# ---------------------------------------------------------------------------------------------------------


def test_stop_budget_numbers_are_the_workers(cfg: Config) -> None:
    plan = Plan(cfg)
    assert plan.scope.local("stop_timeout_seconds") == worker_config.STOP_TIMEOUT_SECONDS
    assert plan.scope.local("shutdown_settle_seconds") == worker_config.SETTLE_SECONDS
    wait = plan.scope.local("sqs_wait_seconds")
    assert plan.value(cfg.resource("aws_sqs_queue", "jobs")["receive_wait_time_seconds"]) == wait
    assert plan.scope.local("worker_container")["stopTimeout"] == worker_config.STOP_TIMEOUT_SECONDS
    (grace_rule,) = blocks(cfg.variables["shutdown_grace_seconds"], "validation")
    upper = max(terraform_bounds(cfg, "shutdown_grace_seconds"))
    assert wait + upper + worker_config.SETTLE_SECONDS == worker_config.STOP_TIMEOUT_SECONDS, grace_rule
    # The settling time is the consumer's: its drain waits this long for the settler after the grace period.
    loop = (ROOT / "worker" / "consumer" / "loop.py").read_text()
    flush = re.search(r"deadline\s*\+\s*(\d+(?:\.\d+)?|SETTLE_SECONDS)\b", loop)
    assert flush, "consumer/loop.py no longer waits `deadline + N` for the settler: update SETTLE_SECONDS"
    assert flush.group(1) in ("SETTLE_SECONDS", str(worker_config.SETTLE_SECONDS)), flush.group(0)


def test_admission_numbers_are_the_workers(cfg: Config) -> None:
    numbers = Plan(cfg).scope.local("worker_admission")
    assert numbers == {
        "pixel_bytes": admission.PIXEL_BYTES,
        "encoded_copies": admission.ENCODED_COPIES,
        "fixed_bytes": admission.FIXED_BYTES,
        "baseline_bytes": admission.BASELINE_BYTES,
        "budget_share": admission.BUDGET_SHARE,
    }
    # The container's memory is a hard limit (what the worker reads as its cgroup limit), not a reservation.
    container = cfg.local("worker_container")
    assert container["memory"] == "${local.worker_memory_mib}"
    assert "memoryReservation" not in container
    assert "MEMORY_BUDGET" not in cfg.local("base_environment")


def test_extra_environment_cannot_undo_the_checks(cfg: Config) -> None:
    for name in ("SQS_WAIT_SECONDS", "HEARTBEAT_VISIBILITY_SECONDS", "MEMORY_BUDGET", "SHUTDOWN_GRACE_SECONDS"):
        refusals = Plan(cfg, extra_environment={name: "1"}).terraform_refusals()
        assert any(r.startswith("var.extra_environment") for r in refusals), name
    assert Plan(cfg, extra_environment={"LOG_LEVEL": "debug"}).terraform_refusals() == []


# ---------------------------------------------------------------------------------------------------------
# The check itself can fail
# ---------------------------------------------------------------------------------------------------------


def test_the_contract_check_catches_a_drift(cfg: Config) -> None:
    """The old rule (max_processing_seconds from 1) and the old soft memory reservation are reported."""
    drifted = build_config([parse_text(p.read_text()) for p in sorted(TF_DIR.glob("*.tf"))])
    variable = drifted.variables["max_processing_seconds"]
    variable["validation"][0]["condition"] = variable["validation"][0]["condition"].replace(">= 60", ">= 1")
    found, _, _ = disagreements(drifted, [{"max_processing_seconds": 59}])
    assert len(found) == 1, found
    assert "MAX_PROCESSING_SECONDS must be at least HEARTBEAT_VISIBILITY_SECONDS" in found[0]

    drifted.resources["aws_ecs_task_definition"]["worker"]["lifecycle"][0]["precondition"] = [
        p
        for p in drifted.resources["aws_ecs_task_definition"]["worker"]["lifecycle"][0]["precondition"]
        if "largest_photo_bytes" not in p["condition"]
    ]
    found, _, _ = disagreements(drifted, [{"task_cpu": 512, "task_memory": 1024}])
    assert len(found) == 1, found
    assert "cannot hold one photo of MAX_PIXELS" in found[0]


# ---------------------------------------------------------------------------------------------------------
# The evaluator
# ---------------------------------------------------------------------------------------------------------


def test_evaluator_follows_terraform() -> None:
    scope = Scope({"n": 5, "s": "abc", "m": {"k": 1}, "none": None, "l": ["a", "b"]}, {"twice": "${var.n * 2}"})
    assert evaluate("var.n >= 1 && var.n <= 7200 && floor(var.n) == var.n", scope) is True
    assert evaluate("local.twice + 1", scope) == 11
    assert evaluate('var.none == null ? "off" : "on"', scope) == "off"
    assert evaluate('contains(["a", "b"], var.s) || startswith(var.s, "ab")', scope) is True
    assert evaluate('can(regex("^[a-z]+$", var.s)) && !can(regex("\\\\.", var.s))', scope) is True
    assert evaluate('"${var.s}-${var.n}"', scope) == "abc-5"
    assert evaluate('[for x in var.l : upper if x != "b"]'.replace("upper", "x"), scope) == ["a"]
    assert evaluate("{ for k, v in var.m : k => v + 1 }", scope) == {"k": 2}
    assert evaluate("1 + 2 * 3 - 4 / 2", scope) == 5
    assert evaluate("-var.n < 0 == true", scope) is True
    # Terraform before 1.12 evaluates both sides of || and &&: this is an error there, and here.
    with pytest.raises(EvalError):
        evaluate("var.none == null || var.none > 1", scope)
    with pytest.raises(Unsupported):
        evaluate('templatefile("x", {})', scope)
    with pytest.raises(Unknown):
        evaluate('aws_sqs_queue.jobs.url == "x"', scope)


# ---------------------------------------------------------------------------------------------------------
# Other rules, evaluated for real inputs
# ---------------------------------------------------------------------------------------------------------


def test_ecr_lifecycle_never_expires_the_deployed_tags(cfg: Config) -> None:
    """ECR: an image selected by a rule cannot be expired by a rule of lower priority. Rule 1 selects exactly
    the deployed tags and keeps as many images as there are such tags, so it never expires one of them."""
    for protected in ([], ["v41", "adot-v0.40.0"], ["3f2c1a9"]):
        plan = Plan(cfg, ecr_protected_tags=protected)
        rules = sorted(
            json.loads(plan.value(cfg.resource("aws_ecr_lifecycle_policy", "worker")["policy"]))["rules"],
            key=lambda r: r["rulePriority"],
        )
        first = rules[0]["selection"]
        tags = list(dict.fromkeys(["3f2c1a9", *protected]))
        assert first == {
            "tagStatus": "tagged",
            "tagPatternList": tags,
            "countType": "imageCountMoreThan",
            "countNumber": len(tags),
        }
        assert not any("*" in tag for tag in tags), "a wildcard would select (and could expire) other images"
        # The count rule over every image comes last, as ECR requires of a tagStatus "any" rule.
        assert rules[-1]["selection"]["tagStatus"] == "any"
        assert [r["selection"]["tagStatus"] for r in rules].count("untagged") == 1


def test_egress_is_narrowed_when_endpoints_are_used(cfg: Config) -> None:
    assert Plan(cfg).scope.local("egress_https_cidr_blocks") == ["0.0.0.0/0"]
    with_endpoints = Plan(cfg, vpc_endpoints=True, vpc_endpoint_route_table_ids=["rtb-0123456789abcdef0"])
    assert with_endpoints.scope.local("egress_https_cidr_blocks") == []
    assert with_endpoints.terraform_refusals() == []
    explicit = Plan(cfg, vpc_endpoints=True, egress_https_cidr_blocks=["10.0.0.0/16"])
    assert explicit.scope.local("egress_https_cidr_blocks") == ["10.0.0.0/16"]
    # The S3 gateway endpoint needs the private route tables.
    assert any("vpc_endpoint_route_table_ids" in r for r in Plan(cfg, vpc_endpoints=True).terraform_refusals())
    # The worker's egress with endpoints: their security group and the S3 gateway's prefix list only.
    rules = cfg.resources["aws_vpc_security_group_egress_rule"]
    assert rules["https_to_endpoints"]["referenced_security_group_id"] == "${aws_security_group.endpoints[0].id}"
    assert rules["https_to_s3_gateway"]["prefix_list_id"] == "${aws_vpc_endpoint.s3[0].prefix_list_id}"
    for name in ("https_to_endpoints", "https_to_s3_gateway"):
        assert rules[name]["count"] == "${var.vpc_endpoints ? 1 : 0}"
        assert (rules[name]["from_port"], rules[name]["to_port"]) == (443, 443)
    ingress = cfg.resource("aws_vpc_security_group_ingress_rule", "endpoints_from_worker")
    assert ingress["referenced_security_group_id"] == "${aws_security_group.worker.id}"
    assert (ingress["from_port"], ingress["to_port"]) == (443, 443)


@pytest.mark.parametrize(
    ("detector", "collector", "extra"),
    [
        ("local", "none", set()),
        ("rekognition", "none", {"rekognition"}),
        ("both", "amp", {"rekognition", "aps-workspaces"}),
    ],
)
def test_interface_endpoints_cover_every_api_the_task_calls(
    cfg: Config, detector: str, collector: str, extra: set[str]
) -> None:
    plan = Plan(cfg, vpc_endpoints=True, detector=detector, metrics_collector=collector, task_memory=3072)
    services = set(plan.scope.local("interface_endpoint_services"))
    assert services == {"sqs", "ecr.api", "ecr.dkr", "logs", "sts"} | extra
    endpoint = cfg.resource("aws_vpc_endpoint", "interface")
    assert endpoint["service_name"] == "com.amazonaws.${var.aws_region}.${each.key}"
    assert endpoint["vpc_endpoint_type"] == "Interface"
    assert endpoint["private_dns_enabled"] is True
    assert endpoint["for_each"] == "${var.vpc_endpoints ? local.interface_endpoint_services : toset([])}"
    assert plan.scope.local("vpc_endpoint_subnet_ids") == REQUIRED["private_subnet_ids"]
    s3 = cfg.resource("aws_vpc_endpoint", "s3")
    assert (s3["vpc_endpoint_type"], s3["service_name"]) == ("Gateway", "com.amazonaws.${var.aws_region}.s3")
    assert s3["route_table_ids"] == "${var.vpc_endpoint_route_table_ids}"


def test_checks_say_what_the_subnets_need(cfg: Config) -> None:
    path = cfg.checks["private_subnets_have_a_path_to_aws"]
    (scoped,) = blocks(path, "data")
    assert scoped["aws_route_table"]["first_private_subnet"]["subnet_id"] == "${var.private_subnet_ids[0]}"
    (assertion,) = blocks(path, "assert")
    assert "var.vpc_endpoints ||" in assertion["condition"]
    assert "nat_gateway_id" in assertion["condition"]
    for need in ("NAT", "vpc_endpoints = true", "vpc_endpoint_route_table_ids"):
        assert need in assertion["error_message"], need
    (image,) = blocks(cfg.checks["collector_image_is_reachable"], "assert")
    for endpoints, collector, image_name, reachable in (
        (True, "amp", "public.ecr.aws/aws-observability/aws-otel-collector:v0.40.0", False),
        (True, "amp", "123456789012.dkr.ecr.eu-west-1.amazonaws.com/faceblur-worker:adot-v0.40.0", True),
        (False, "amp", "public.ecr.aws/aws-observability/aws-otel-collector:v0.40.0", True),
    ):
        plan = Plan(cfg, vpc_endpoints=endpoints, metrics_collector=collector, metrics_collector_image=image_name)
        assert plan.value(image["condition"]) is reachable, (endpoints, image_name)


def test_capacity_provider_strategy(cfg: Config) -> None:
    service = cfg.resource("aws_ecs_service", "worker")
    (dynamic,) = [
        d["capacity_provider_strategy"] for d in blocks(service, "dynamic") if "capacity_provider_strategy" in d
    ]
    content = blocks(dynamic, "content")[0]
    assert content == {
        "capacity_provider": "${capacity_provider_strategy.key}",
        "base": "${capacity_provider_strategy.value.base}",
        "weight": "${capacity_provider_strategy.value.weight}",
    }
    on_demand, spot = {"base": 1, "weight": 1}, {"base": 0, "weight": 3}
    for overrides, expected in (
        ({}, {"FARGATE": on_demand}),
        ({"fargate_spot_weight": 3}, {"FARGATE": on_demand, "FARGATE_SPOT": spot}),
        ({"fargate_weight": 0, "fargate_spot_weight": 3}, {"FARGATE": {"base": 1, "weight": 0}, "FARGATE_SPOT": spot}),
    ):
        plan = Plan(cfg, **overrides)
        assert plan.value(dynamic["for_each"]) == expected, overrides
        assert plan.terraform_refusals() == []
    # Spot never holds the base, and some provider must take the tasks beyond it.
    assert "weight must be at least 1" in " ".join(Plan(cfg, fargate_weight=0).terraform_refusals())
    providers = cfg.resource("aws_ecs_cluster_capacity_providers", "this")
    assert providers["capacity_providers"] == ["FARGATE", "FARGATE_SPOT"]
