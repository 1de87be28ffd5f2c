"""Offline checks of deploy/terraform: formatting, HashiCorp's parser, wiring, references and checkov.

No terraform init/validate/plan here: they need the AWS provider, which cannot be downloaded offline.
The tools come from .cache/infra-tools/ (scripts/install-infra-tools.sh, run by `make infra-tools` before
pytest); a missing tool fails the test, it never skips it.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

try:
    import hcl2
    from hcl2.utils import SerializationOptions
except ImportError:  # pragma: no cover - reported by the fixture below
    hcl2 = None

ROOT = Path(__file__).resolve().parents[2]
TF_DIR = ROOT / "deploy" / "terraform"
TOOLS = ROOT / ".cache" / "infra-tools"
INSTALL_HINT = "run `make infra-tools` (bash scripts/install-infra-tools.sh) first"
# CHECKPOINT_DISABLE: terraform must not look for updates. PYTHONDONTWRITEBYTECODE (set on these machines) is
# dropped so that checkov's first run leaves its byte code in its venv (the installer does not precompile).
TOOL_ENV = {
    **{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
    "CHECKPOINT_DISABLE": "1",
    "TF_IN_AUTOMATION": "1",
}


def tool(relative: str) -> Path:
    path = TOOLS / relative
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"{path} is missing: {INSTALL_HINT}", pytrace=False)
    return path


def run(cmd: list[str | Path], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd], cwd=ROOT, env=TOOL_ENV, capture_output=True, text=True, timeout=timeout
    )


# ---------------------------------------------------------------------------------------------------------
# Parsed configuration (python-hcl2)
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Config:
    resources: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    data: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    modules: dict[str, dict[str, Any]] = field(default_factory=dict)
    terraform: list[dict[str, Any]] = field(default_factory=list)
    moved: list[dict[str, Any]] = field(default_factory=list)
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)

    def resource(self, rtype: str, name: str) -> dict[str, Any]:
        assert name in self.resources.get(rtype, {}), f"resource {rtype}.{name} is not declared"
        return self.resources[rtype][name]

    def datasource(self, dtype: str, name: str) -> dict[str, Any]:
        assert name in self.data.get(dtype, {}), f"data source {dtype}.{name} is not declared"
        return self.data[dtype][name]

    def local(self, name: str) -> Any:
        assert name in self.locals, f"local.{name} is not declared"
        return self.locals[name]


def hcl_options() -> Any:
    return SerializationOptions(strip_string_quotes=True, with_comments=False, explicit_blocks=False)


def parse_text(text: str) -> dict[str, Any]:
    if hcl2 is None:
        pytest.fail(
            "python-hcl2 is not importable in the project venv: add python-hcl2 (>=8.1,<9) to the dev extras",
            pytrace=False,
        )
    return hcl2.loads(text, serialization_options=hcl_options())


def build_config(documents: list[dict[str, Any]]) -> Config:
    cfg = Config()
    for doc in documents:
        for item in doc.get("resource", []):
            for rtype, named in item.items():
                cfg.resources.setdefault(rtype, {}).update(named)
        for item in doc.get("data", []):
            for dtype, named in item.items():
                cfg.data.setdefault(dtype, {}).update(named)
        for item in doc.get("variable", []):
            cfg.variables.update(item)
        for item in doc.get("locals", []):
            cfg.locals.update(item)
        for item in doc.get("output", []):
            cfg.outputs.update(item)
        for item in doc.get("module", []):
            cfg.modules.update(item)
        cfg.terraform.extend(doc.get("terraform", []))
        cfg.moved.extend(doc.get("moved", []))
        for item in doc.get("check", []):
            cfg.checks.update(item)
            for body in item.values():  # a check's scoped data source is referenced like any other
                for scoped in blocks(body, "data"):
                    for dtype, named in scoped.items():
                        cfg.data.setdefault(dtype, {}).update(named)
    return cfg


@pytest.fixture(scope="module")
def tf_files() -> dict[str, str]:
    files = {p.name: p.read_text() for p in sorted(TF_DIR.glob("*.tf"))}
    assert files, f"no .tf files in {TF_DIR}"
    return files


@pytest.fixture(scope="module")
def cfg(tf_files: dict[str, str]) -> Config:
    documents = []
    for filename, text in tf_files.items():
        try:
            documents.append(parse_text(text))
        except pytest.fail.Exception:
            raise
        except Exception as exc:  # lark raises several exception types
            pytest.fail(f"python-hcl2 cannot parse deploy/terraform/{filename}: {exc}", pytrace=False)
    return build_config(documents)


def blocks(body: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """Nested blocks of one kind (python-hcl2 gives a list of dicts, or a dict for a single object)."""
    value = body.get(name, [])
    return value if isinstance(value, list) else [value]


def statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Static and dynamic `statement` blocks of an aws_iam_policy_document, dynamic ones marked."""
    found = [dict(s, _dynamic=None) for s in blocks(document, "statement")]
    for dyn in blocks(document, "dynamic"):
        if "statement" in dyn:
            for content in blocks(dyn["statement"], "content"):
                found.append(dict(content, _dynamic=dyn["statement"]["for_each"]))
    return found


def ref(expression: str) -> str:
    """`${aws_x.y.z}` -> `aws_x.y.z` (a bare reference, not a template with text around it)."""
    match = re.fullmatch(r"\$\{([^{}]+)\}", expression) if isinstance(expression, str) else None
    assert match, f"expected a single reference, got {expression!r}"
    return match.group(1).strip()


def condition_upper_bound(cfg: Config, variable: str) -> float:
    conditions = " ".join(v["condition"] for v in blocks(cfg.variables[variable], "validation"))
    match = re.search(rf"var\.{variable}\s*<=?\s*([0-9.]+)", conditions)
    assert match, f"var.{variable} has no upper bound in its validation"
    return float(match.group(1))


def evaluate_arithmetic(expression: str, values: dict[str, float]) -> float:
    """Evaluate a Terraform expression made of numbers, + - * /, min/max and the given var./local. names."""
    inner = ref(expression) if expression.startswith("${") else expression
    for name, value in values.items():
        inner = re.sub(rf"\b{re.escape(name)}\b", repr(value), inner)
    assert re.fullmatch(r"(?:[0-9.\s+\-*/(),]|min|max)+", inner), f"cannot evaluate {expression!r}"
    tree = ast.parse(inner, mode="eval")
    allowed = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Call, ast.Name, ast.Load)
    allowed_ops = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.USub)
    for node in ast.walk(tree):
        assert isinstance(node, allowed + allowed_ops), f"unexpected {type(node).__name__} in {inner!r}"
    return eval(compile(tree, "<hcl>", "eval"), {"__builtins__": {}, "min": min, "max": max})


# ---------------------------------------------------------------------------------------------------------
# Tools: terraform fmt, terraform-config-inspect
# ---------------------------------------------------------------------------------------------------------


def test_terraform_fmt_is_clean() -> None:
    terraform = tool("bin/terraform")
    result = run([terraform, "fmt", "-check", "-diff", "-recursive", TF_DIR.relative_to(ROOT)])
    assert result.returncode == 0, (
        "terraform fmt would change these files (run `.cache/infra-tools/bin/terraform fmt -recursive "
        f"deploy/terraform`):\n{result.stdout}{result.stderr}"
    )


def inspect_module(directory: Path) -> dict[str, Any]:
    result = run([tool("bin/terraform-config-inspect"), "--json", directory])
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"terraform-config-inspect printed no JSON (rc {result.returncode}):\n{result.stderr}")


def test_hashicorp_parser_reports_no_errors() -> None:
    module = inspect_module(TF_DIR)
    # It can exit 0 with errors: the JSON diagnostics are the verdict.
    errors = [d for d in module.get("diagnostics") or [] if d.get("severity") == "error"]
    assert not errors, "terraform-config-inspect found errors:\n" + json.dumps(errors, indent=2)
    assert module["required_core"] == [">= 1.5.0"]
    assert module["required_providers"]["aws"]["source"] == "hashicorp/aws"
    # Bounded to the major the configuration was written against.
    assert module["required_providers"]["aws"]["version_constraints"] == [">= 5.0, < 6.0"]
    assert not module["module_calls"], "plain resources only: no registry modules"
    for name, variable in module["variables"].items():
        assert variable.get("type"), f"variable {name} has no type"
        assert variable.get("description"), f"variable {name} has no description"


def test_hashicorp_parser_check_catches_a_syntax_error(tmp_path: Path) -> None:
    (tmp_path / "main.tf").write_text('resource "aws_sqs_queue" "q" {\n  name = var.x +\n}\n')
    module = inspect_module(tmp_path)
    assert any(d.get("severity") == "error" for d in module.get("diagnostics") or [])


# ---------------------------------------------------------------------------------------------------------
# Reference check: every var./local./data./resource reference points at a declaration.
# ---------------------------------------------------------------------------------------------------------


def code_only(text: str) -> str:
    """Blank out comments and literal string text (same length, newlines kept); keep ${...}/%{...} code."""
    out = list(text)
    stack: list[list[Any]] = []  # ["str"] | ["heredoc", marker] | ["interp", depth]
    i, n = 0, len(text)

    def blank(start: int, end: int) -> None:
        for k in range(start, min(end, n)):
            if out[k] != "\n":
                out[k] = " "

    while i < n:
        top = stack[-1] if stack else None
        ch = text[i]
        if top is None or top[0] == "interp":
            if ch == "#" or text.startswith("//", i):
                end = text.find("\n", i)
                end = n if end < 0 else end
                blank(i, end)
                i = end
            elif text.startswith("/*", i):
                end = text.find("*/", i + 2)
                end = n if end < 0 else end + 2
                blank(i, end)
                i = end
            elif ch == '"':
                stack.append(["str"])
                blank(i, i + 1)
                i += 1
            elif (m := re.match(r"<<-?([A-Za-z_][A-Za-z0-9_-]*)[ \t]*\n", text[i:])) is not None:
                stack.append(["heredoc", m.group(1)])
                blank(i, i + m.end())
                i += m.end()
            elif ch == "{" and top is not None:
                top[1] += 1
                i += 1
            elif ch == "}" and top is not None:
                if top[1] == 0:
                    stack.pop()
                    blank(i, i + 1)
                else:
                    top[1] -= 1
                i += 1
            else:
                i += 1
            continue
        # Inside a string or heredoc: literal text is blanked, template interpolations are code.
        if top[0] == "heredoc" and (i == 0 or text[i - 1] == "\n"):
            line_end = text.find("\n", i)
            line_end = n if line_end < 0 else line_end
            if text[i:line_end].strip() == top[1]:
                blank(i, line_end)
                stack.pop()
                i = line_end
                continue
        if text.startswith(("$${", "%%{"), i):
            blank(i, i + 3)
            i += 3
        elif text.startswith(("${", "%{"), i):
            blank(i, i + 2)
            stack.append(["interp", 0])
            i += 2
        elif top[0] == "str" and ch == "\\":
            blank(i, i + 2)
            i += 2
        elif top[0] == "str" and ch == '"':
            blank(i, i + 1)
            stack.pop()
            i += 1
        else:
            blank(i, i + 1)
            i += 1
    return "".join(out)


REFERENCE_PATTERNS = {
    "var": re.compile(r"(?<![\w.])var\.([A-Za-z_][\w-]*)"),
    "local": re.compile(r"(?<![\w.])local\.([A-Za-z_][\w-]*)"),
    "data": re.compile(r"(?<![\w.])data\.([A-Za-z_][\w-]*)\.([A-Za-z_][\w-]*)"),
    "module": re.compile(r"(?<![\w.])module\.([A-Za-z_][\w-]*)"),
}


MOVED_FROM = re.compile(r"(\bmoved\s*\{[^{}]*?)\bfrom(\s*=\s*)([^\n]*)")


def without_moved_sources(code: str) -> str:
    """Blank the `from` address of each `moved` block: it names what the configuration no longer declares."""
    return MOVED_FROM.sub(lambda m: m.group(1) + " " * len("from") + m.group(2) + " " * len(m.group(3)), code)


def dangling_references(
    files: dict[str, str], declared: Config | None = None, provider_prefixes: tuple[str, ...] = ("aws",)
) -> list[str]:
    """`file:line: kind.name` for each reference whose target is declared in none of the files."""
    if declared is None:
        declared = build_config([parse_text(text) for text in files.values()])
    resource_pattern = re.compile(rf"(?<![\w.])((?:{'|'.join(provider_prefixes)})_[A-Za-z0-9_]+)\.([A-Za-z_][\w-]*)")
    problems = []
    for filename, text in files.items():
        code = without_moved_sources(code_only(text))

        def where(offset: int, fname: str = filename, code: str = code) -> str:
            return f"{fname}:{code.count(chr(10), 0, offset) + 1}"

        for m in REFERENCE_PATTERNS["var"].finditer(code):
            if m.group(1) not in declared.variables:
                problems.append(f"{where(m.start())}: var.{m.group(1)}")
        for m in REFERENCE_PATTERNS["local"].finditer(code):
            if m.group(1) not in declared.locals:
                problems.append(f"{where(m.start())}: local.{m.group(1)}")
        for m in REFERENCE_PATTERNS["data"].finditer(code):
            if m.group(2) not in declared.data.get(m.group(1), {}):
                problems.append(f"{where(m.start())}: data.{m.group(1)}.{m.group(2)}")
        for m in REFERENCE_PATTERNS["module"].finditer(code):
            if m.group(1) not in declared.modules:
                problems.append(f"{where(m.start())}: module.{m.group(1)}")
        for m in resource_pattern.finditer(code):
            if m.group(2) not in declared.resources.get(m.group(1), {}):
                problems.append(f"{where(m.start())}: {m.group(1)}.{m.group(2)}")
    return problems


def test_every_reference_points_at_a_declaration(tf_files: dict[str, str], cfg: Config) -> None:
    assert dangling_references(tf_files, cfg) == []


def test_reference_check_reports_typos() -> None:
    snippet = """
variable "known" {
  description = "mentions var.not_a_reference and aws_s3_bucket.nope in plain text"
  type        = string
}

locals {
  present = 1
}

resource "aws_sqs_queue" "jobs" {
  # var.commented_out and aws_sqs_queue.ghost are only in a comment
  name   = "${var.known}-${var.knwon}"
  policy = data.aws_iam_policy_document.missing.json
  tags   = { a = local.present, b = local.absent }
  /* local.block_comment */
  redrive_policy = jsonencode({ deadLetterTargetArn = aws_sqs_queue.dql.arn })
  delay_seconds  = aws_sqs_queue.jobs.delay_seconds
  description    = <<-EOT
    heredoc text var.in_heredoc_text ${var.in_heredoc_code}
  EOT
}
"""
    assert sorted(dangling_references({"broken.tf": snippet})) == [
        "broken.tf:13: var.knwon",
        "broken.tf:14: data.aws_iam_policy_document.missing",
        "broken.tf:15: local.absent",
        "broken.tf:17: aws_sqs_queue.dql",
        "broken.tf:20: var.in_heredoc_code",
    ]


def test_reference_check_ignores_only_the_source_of_a_move() -> None:
    snippet = """
resource "aws_s3_bucket" "this" {
  for_each = {}
}

moved {
  from = aws_s3_bucket.old
  to   = aws_s3_bucket.this["a"]
}

moved {
  from = aws_s3_bucket.gone
  to   = aws_s3_bucket.thsi["b"]
}

output "x" {
  value = aws_s3_bucket.old.id
}
"""
    assert sorted(dangling_references({"moved.tf": snippet})) == [
        "moved.tf:13: aws_s3_bucket.thsi",
        "moved.tf:17: aws_s3_bucket.old",
    ]


# ---------------------------------------------------------------------------------------------------------
# Variables, outputs, example
# ---------------------------------------------------------------------------------------------------------


def test_every_variable_has_description_type_and_range(cfg: Config) -> None:
    assert len(cfg.variables) >= 30
    for name, variable in cfg.variables.items():
        assert len(variable.get("description", "")) >= 20, f"variable {name} needs a real description"
        assert variable.get("type"), f"variable {name} has no type"
        if variable["type"] == "number":
            assert blocks(variable, "validation"), f"number variable {name} has no validation block"


def test_outputs(cfg: Config) -> None:
    expected = {
        "source_bucket_name",
        "output_bucket_name",
        "queue_url",
        "queue_arn",
        "dlq_url",
        "ecr_repository_url",
        "cluster_name",
        "service_name",
        "log_group_name",
    }
    assert expected <= set(cfg.outputs)
    for name, output in cfg.outputs.items():
        assert output.get("description"), f"output {name} has no description"


def test_example_tfvars_sets_only_declared_and_all_required_variables(cfg: Config) -> None:
    examples = sorted((TF_DIR / "examples").glob("*.tfvars"))
    assert examples, "deploy/terraform/examples/ needs a .tfvars example"
    required = {name for name, v in cfg.variables.items() if "default" not in v}
    for example in examples:
        values = parse_text(example.read_text())
        unknown = set(values) - set(cfg.variables)
        assert not unknown, f"{example.name} sets undeclared variables {sorted(unknown)}"
        assert required <= set(values), f"{example.name} misses required {sorted(required - set(values))}"


# ---------------------------------------------------------------------------------------------------------
# Buckets, notification, queues
# ---------------------------------------------------------------------------------------------------------


BUCKETS = ("source", "output")
BUCKET_HARDENING = (
    "aws_s3_bucket_ownership_controls",
    "aws_s3_bucket_public_access_block",
    "aws_s3_bucket_server_side_encryption_configuration",
    "aws_s3_bucket_lifecycle_configuration",
    "aws_s3_bucket_policy",
)


def for_each_keys(cfg: Config, body: dict[str, Any], flags: dict[str, bool] | None = None) -> set[str]:
    """Instance keys of a resource or data source that iterates local.buckets, optionally filtered by a
    condition whose value is given in flags (e.g. {"var.enable_versioning": True})."""
    expression = body.get("for_each")
    assert expression, "not a for_each"
    keys = set(cfg.local("buckets"))
    if expression == "${local.buckets}":
        return keys
    match = re.fullmatch(r"\$\{\{for (\w+), (\w+) in local\.buckets : \1 => \2 if (.+)\}\}", expression)
    assert match, f"for_each must be local.buckets or a filter of it, not {expression!r}"
    condition = match.group(3).strip()
    assert flags is not None, f"for_each is conditional ({condition!r}): give its value"
    assert condition in flags, f"unexpected for_each condition {condition!r}"
    return keys if flags[condition] else set()


def at(expression: str, key: str) -> str:
    """An expression of a for_each body as it reads for the instance `key` (each.key substituted)."""
    return expression.replace("each.key", f'"{key}"')


def test_bucket_map_has_source_and_output(cfg: Config) -> None:
    buckets = cfg.local("buckets")
    assert set(buckets) == set(BUCKETS)
    assert buckets["source"]["name"] == "${local.source_bucket_name}"
    assert buckets["output"]["name"] == "${local.output_bucket_name}"
    assert buckets["source"]["expiration_days"] == "${var.original_expiration_days}"
    assert buckets["output"]["expiration_days"] == "${var.output_expiration_days}"
    bucket = cfg.resource("aws_s3_bucket", "this")
    assert for_each_keys(cfg, bucket) == set(BUCKETS)
    assert bucket["bucket"] == "${each.value.name}"
    # One bucket resource, nothing declared beside it.
    assert set(cfg.resources["aws_s3_bucket"]) == {"this"}


def test_buckets_are_private_encrypted_tls_only(cfg: Config) -> None:
    for rtype in BUCKET_HARDENING:
        assert set(cfg.resources[rtype]) == {"this"}, f"{rtype}: one for_each resource for both buckets"
        assert for_each_keys(cfg, cfg.resource(rtype, "this")) == set(BUCKETS), f"{rtype} must cover both buckets"
    policy_document = cfg.datasource("aws_iam_policy_document", "bucket")
    assert for_each_keys(cfg, policy_document) == set(BUCKETS)

    for bucket in BUCKETS:
        for rtype in BUCKET_HARDENING:
            body = cfg.resource(rtype, "this")
            assert ref(at(body["bucket"], bucket)) == f'aws_s3_bucket.this["{bucket}"].id', f"{rtype} ({bucket})"

        ownership = cfg.resource("aws_s3_bucket_ownership_controls", "this")
        assert blocks(ownership, "rule") == [{"object_ownership": "BucketOwnerEnforced"}]

        pab = cfg.resource("aws_s3_bucket_public_access_block", "this")
        for flag in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"):
            assert pab[flag] is True, f"{bucket}: {flag}"

        sse = cfg.resource("aws_s3_bucket_server_side_encryption_configuration", "this")
        default = blocks(blocks(sse, "rule")[0], "apply_server_side_encryption_by_default")[0]
        assert re.search(r'local\.use_kms \? "aws:kms" : "AES256"', default["sse_algorithm"])
        assert ref(default["kms_master_key_id"]) == "var.kms_key_arn"

        policy = cfg.resource("aws_s3_bucket_policy", "this")
        assert ref(at(policy["policy"], bucket)) == f'data.aws_iam_policy_document.bucket["{bucket}"].json'
        assert [ref(d) for d in policy["depends_on"]] == ["aws_s3_bucket_public_access_block.this"]
        tls = [
            s
            for s in statements(policy_document)
            if s.get("effect") == "Deny"
            and any(
                c["variable"] == "aws:SecureTransport" and c["values"] == ["false"] and c["test"] == "Bool"
                for c in blocks(s, "condition")
            )
        ]
        assert tls, f"{bucket} bucket policy does not deny aws:SecureTransport = false"
        resources = {at(r, bucket) for r in tls[0]["resources"]}
        assert resources == {f'${{aws_s3_bucket.this["{bucket}"].arn}}', f'${{aws_s3_bucket.this["{bucket}"].arn}}/*'}

    versioning = cfg.resource("aws_s3_bucket_versioning", "this")
    assert for_each_keys(cfg, versioning, {"var.enable_versioning": True}) == set(BUCKETS)
    assert for_each_keys(cfg, versioning, {"var.enable_versioning": False}) == set()
    assert blocks(versioning, "versioning_configuration") == [{"status": "Enabled"}]
    logging = cfg.resource("aws_s3_bucket_logging", "this")
    assert for_each_keys(cfg, logging, {"var.access_log_bucket != null": True}) == set(BUCKETS)
    assert for_each_keys(cfg, logging, {"var.access_log_bucket != null": False}) == set()
    assert ref(logging["target_bucket"]) == "var.access_log_bucket"
    assert logging["target_prefix"] == "s3/${each.value.name}/"
    for optional in (versioning, logging):
        assert ref(at(optional["bucket"], "output")) == 'aws_s3_bucket.this["output"].id'


def test_objects_expire_after_configured_days(cfg: Config) -> None:
    lifecycle = cfg.resource("aws_s3_bucket_lifecycle_configuration", "this")
    rule = blocks(lifecycle, "rule")[0]
    assert blocks(rule, "abort_incomplete_multipart_upload") == [{"days_after_initiation": 7}]
    expiration = next(d["expiration"] for d in blocks(rule, "dynamic") if "expiration" in d)
    assert expiration["for_each"] == "${each.value.expiration_days > 0 ? [each.value.expiration_days] : []}"
    assert expiration["content"][0]["days"] == "${expiration.value}"
    # Originals expire after original_expiration_days, outputs after output_expiration_days.
    buckets = cfg.local("buckets")
    assert ref(buckets["source"]["expiration_days"]) == "var.original_expiration_days"
    assert ref(buckets["output"]["expiration_days"]) == "var.output_expiration_days"
    assert cfg.variables["original_expiration_days"]["default"] >= 0
    assert cfg.variables["output_expiration_days"]["default"] == 0
    noncurrent = next(
        d["noncurrent_version_expiration"] for d in blocks(rule, "dynamic") if "noncurrent_version_expiration" in d
    )
    assert noncurrent["for_each"] == "${var.enable_versioning ? [var.noncurrent_version_expiration_days] : []}"
    assert [ref(d) for d in lifecycle["depends_on"]] == [
        "aws_s3_bucket_versioning.this",
        "aws_s3_bucket_server_side_encryption_configuration.this",
    ]


def test_moved_blocks_keep_the_existing_buckets(cfg: Config) -> None:
    """Each former per-bucket resource moves to its for_each instance, so applying this does not replace them."""
    moves = {}
    for move in cfg.moved:
        source, target = ref(move["from"]), ref(move["to"])
        match = re.fullmatch(r'(aws_s3_\w+)\.this\["(\w+)"\]', target)
        assert match, f"unexpected move target {target}"
        rtype, key = match.groups()
        assert key in cfg.local("buckets")
        assert "this" in cfg.resources.get(rtype, {}), f"{target} is not declared"
        assert re.fullmatch(rf"{rtype}\.{key}(\[0\])?", source), f"{source} -> {target}"
        assert key not in cfg.resources[rtype], f"{rtype}.{key} is still declared: the move would conflict"
        moves[target] = source
    counted = ("aws_s3_bucket_versioning", "aws_s3_bucket_logging")  # they used count = ... ? 1 : 0
    for rtype in ("aws_s3_bucket", *BUCKET_HARDENING, *counted):
        for bucket in BUCKETS:
            suffix = "[0]" if rtype in counted else ""
            assert moves.get(f'{rtype}.this["{bucket}"]') == f"{rtype}.{bucket}{suffix}", f"{rtype} {bucket}"
    assert len(moves) == len(cfg.moved), "one move per target"


def test_notification_feeds_the_queue_and_waits_for_its_policy(cfg: Config) -> None:
    notifications = cfg.resources["aws_s3_bucket_notification"]
    assert list(notifications) == ["source"], "only the source bucket may notify (no output->queue loop)"
    notification = notifications["source"]
    assert ref(notification["bucket"]) == 'aws_s3_bucket.this["source"].id'
    queue = blocks(notification, "queue")
    assert len(queue) == 1
    assert ref(queue[0]["queue_arn"]) == "aws_sqs_queue.jobs.arn"
    assert queue[0]["events"] == ["s3:ObjectCreated:*"]
    assert "var.upload_prefix_filter" in queue[0]["filter_prefix"]
    assert "var.upload_suffix_filter" in queue[0]["filter_suffix"]
    assert "aws_sqs_queue_policy.jobs" in [ref(d) for d in notification["depends_on"]]
    # The worker writes to the other bucket.
    assert ref(cfg.local("base_environment")["OUTPUT_BUCKET"]) == 'aws_s3_bucket.this["output"].bucket'


def test_queue_policy_allows_only_s3_for_the_source_bucket(cfg: Config) -> None:
    queue_policy = cfg.resource("aws_sqs_queue_policy", "jobs")
    assert ref(queue_policy["queue_url"]) == "aws_sqs_queue.jobs.id"
    document = cfg.datasource("aws_iam_policy_document", ref(queue_policy["policy"]).split(".")[2])
    allows = [s for s in statements(document) if s.get("effect", "Allow") == "Allow"]
    assert len(allows) == 1
    statement = allows[0]
    assert statement["actions"] == ["sqs:SendMessage"]
    assert statement["resources"] == ["${aws_sqs_queue.jobs.arn}"]
    principals = blocks(statement, "principals")
    assert principals == [{"type": "Service", "identifiers": ["s3.amazonaws.com"]}]
    conditions = {c["variable"]: c for c in blocks(statement, "condition")}
    assert conditions["aws:SourceArn"]["test"] in ("ArnEquals", "ArnLike")
    assert conditions["aws:SourceArn"]["values"] == ['${aws_s3_bucket.this["source"].arn}']
    assert conditions["aws:SourceAccount"]["test"] == "StringEquals"
    assert conditions["aws:SourceAccount"]["values"] == ["${local.account_id}"]
    assert ref(cfg.local("account_id")) == "data.aws_caller_identity.current.account_id"


def test_queue_long_polls_and_redrives_to_the_dlq(cfg: Config) -> None:
    jobs = cfg.resource("aws_sqs_queue", "jobs")
    dlq = cfg.resource("aws_sqs_queue", "dlq")
    assert resolved(cfg, jobs["receive_wait_time_seconds"]) == 20
    redrive = re.sub(r"\s+", " ", jobs["redrive_policy"])
    assert re.search(r"deadLetterTargetArn = aws_sqs_queue\.dlq\.arn\b", redrive), redrive
    assert re.search(r"maxReceiveCount = 5\b", redrive), redrive
    assert dlq["message_retention_seconds"] == 14 * 24 * 3600

    allow = cfg.resource("aws_sqs_queue_redrive_allow_policy", "dlq")
    assert ref(allow["queue_url"]) == "aws_sqs_queue.dlq.id"
    text = re.sub(r"\s+", " ", allow["redrive_allow_policy"])
    assert 'redrivePermission = "byQueue"' in text
    assert "sourceQueueArns = [aws_sqs_queue.jobs.arn]" in text

    for queue in (jobs, dlq):  # SQS-managed SSE by default, the customer key when given
        assert queue["sqs_managed_sse_enabled"] == "${local.use_kms ? null : true}"
        assert ref(queue["kms_master_key_id"]) == "var.kms_key_arn"


def test_visibility_timeout_is_at_least_six_times_processing_time(cfg: Config) -> None:
    jobs = cfg.resource("aws_sqs_queue", "jobs")
    assert ref(jobs["visibility_timeout_seconds"]) == "local.visibility_timeout_seconds"
    expression = cfg.local("visibility_timeout_seconds")
    upper = condition_upper_bound(cfg, "max_processing_seconds")
    default = cfg.variables["max_processing_seconds"]["default"]
    for processing in (1, default, upper):
        visibility = evaluate_arithmetic(expression, {"var.max_processing_seconds": processing})
        assert visibility >= 6 * processing, f"{visibility} s < 6 x {processing} s"
        assert visibility <= 43200, "SQS allows at most 12 hours"


# ---------------------------------------------------------------------------------------------------------
# IAM
# ---------------------------------------------------------------------------------------------------------

TASK_ROLE_ACTIONS = {
    "s3:GetObject",
    "s3:GetObjectVersion",
    "s3:PutObject",
    # HEAD on a missing output key answers 403 instead of 404 without it (the worker retries 403s).
    "s3:ListBucket",
    # The worker's start-up recursion guard reads the output bucket's notification configuration.
    "s3:GetBucketNotification",
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueAttributes",
    "sqs:SendMessage",
    "rekognition:DetectFaces",
    "kms:Decrypt",
    "kms:GenerateDataKey",
    # The metrics collector sidecar (metrics_collector = amp) writes to its AMP workspace.
    "aps:RemoteWrite",
}


def test_task_role_has_exactly_the_needed_actions(cfg: Config) -> None:
    role_policy = cfg.resource("aws_iam_role_policy", "task")
    assert ref(role_policy["role"]) == "aws_iam_role.task.id"
    document = cfg.datasource("aws_iam_policy_document", ref(role_policy["policy"]).split(".")[2])
    found = statements(document)
    actions = {a for s in found for a in s["actions"]}
    assert actions == TASK_ROLE_ACTIONS, (
        f"missing {sorted(TASK_ROLE_ACTIONS - actions)}, extra {sorted(actions - TASK_ROLE_ACTIONS)}"
    )
    assert all(s.get("effect", "Allow") == "Allow" and "not_actions" not in s for s in found)

    by_action: dict[str, set[str]] = {}
    for s in found:
        for action in s["actions"]:
            by_action.setdefault(action, set()).update(s["resources"])
    assert by_action["s3:GetObjectVersion"] == {'${aws_s3_bucket.this["source"].arn}/*'}
    assert by_action["s3:GetObject"] == {
        '${aws_s3_bucket.this["source"].arn}/*',
        '${aws_s3_bucket.this["output"].arn}/${var.output_prefix}*',
    }
    assert by_action["s3:PutObject"] == {'${aws_s3_bucket.this["output"].arn}/${var.output_prefix}*'}
    # Both buckets: without it a missing key answers 403, not 404 (a deleted upload would be retried as
    # access_denied instead of dead-lettered as object_missing; a missing output would look forbidden).
    assert by_action["s3:ListBucket"] == {'${aws_s3_bucket.this["source"].arn}', '${aws_s3_bucket.this["output"].arn}'}
    assert by_action["s3:GetBucketNotification"] == {'${aws_s3_bucket.this["output"].arn}'}
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"):
        assert by_action[action] == {"${aws_sqs_queue.jobs.arn}"}
    assert by_action["sqs:GetQueueAttributes"] == {"${aws_sqs_queue.jobs.arn}", "${aws_sqs_queue.dlq.arn}"}
    assert by_action["sqs:SendMessage"] == {"${aws_sqs_queue.dlq.arn}"}
    assert by_action["rekognition:DetectFaces"] == {"*"}  # no resource-level permissions exist

    gates = {a: s["_dynamic"] for s in found for a in s["actions"]}
    assert "var.detector" in (gates["rekognition:DetectFaces"] or "")
    for action in ("kms:Decrypt", "kms:GenerateDataKey"):
        assert gates[action], f"{action} must only be granted when a customer key is configured"
        assert "local.use_kms" in gates[action] or "var.kms_key_arn" in gates[action]
        assert by_action[action] == {"${statement.value}"}
    # aps:RemoteWrite only with the collector sidecar, and only on the one workspace it writes to.
    assert gates["aps:RemoteWrite"] == "${local.amp_enabled ? [local.amp_workspace_arn] : []}"
    assert by_action["aps:RemoteWrite"] == {"${statement.value}"}
    gated = {"rekognition:DetectFaces", "kms:Decrypt", "kms:GenerateDataKey", "aps:RemoteWrite"}
    static = {a for a, gate in gates.items() if gate is None}
    assert static == TASK_ROLE_ACTIONS - gated

    task_definition = cfg.resource("aws_ecs_task_definition", "worker")
    assert ref(task_definition["task_role_arn"]) == "aws_iam_role.task.arn"
    assert ref(task_definition["execution_role_arn"]) == "aws_iam_role.execution.arn"


def test_no_wildcard_actions_and_star_resources_only_where_unavoidable(cfg: Config) -> None:
    for name, document in cfg.data.get("aws_iam_policy_document", {}).items():
        for s in statements(document):
            assert "not_actions" not in s, name
            assert "not_resources" not in s, name
            wildcards = [a for a in s.get("actions", []) if "*" in a]
            if s.get("effect", "Allow") == "Allow":
                assert not wildcards, f"{name}: wildcard actions {wildcards}"
                if "*" in s.get("resources", []):
                    assert set(s["actions"]) <= {"rekognition:DetectFaces", "ecr:GetAuthorizationToken"}, name
            elif wildcards:
                # A Deny on every action is only used to enforce TLS on the buckets.
                variables = {c["variable"] for c in blocks(s, "condition")}
                assert variables, f"{name}: unconditional Deny with wildcard actions"
                assert variables <= {"aws:SecureTransport", "s3:TlsVersion"}, name
    # Inline JSON policies would bypass the check above.
    for rtype, named in cfg.resources.items():
        for rname, body in named.items():
            for key in ("policy", "assume_role_policy", "inline_policy"):
                value = body.get(key)
                inline_json = isinstance(value, str) and ("Action" in value or "jsonencode" in value)
                if inline_json and rtype != "aws_ecr_lifecycle_policy":
                    pytest.fail(f"{rtype}.{rname}.{key} is inline JSON: use aws_iam_policy_document")


def test_execution_role_is_scoped(cfg: Config) -> None:
    document = cfg.datasource("aws_iam_policy_document", "execution")
    by_action = {a: set(s["resources"]) for s in statements(document) for a in s["actions"]}
    assert by_action.pop("ecr:GetAuthorizationToken") == {"*"}
    for action in ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"):
        assert by_action.pop(action) == {"${aws_ecr_repository.worker.arn}"}
    for action in ("logs:CreateLogStream", "logs:PutLogEvents"):
        assert by_action.pop(action) == {"${aws_cloudwatch_log_group.worker.arn}:*"}
    assert not by_action, f"unexpected execution role actions {sorted(by_action)}"
    # The execution role's trust policy as AWS documents it: the ECS tasks service, no conditions.
    role = cfg.resource("aws_iam_role", "execution")
    assert ref(role["assume_role_policy"]) == "data.aws_iam_policy_document.execution_assume.json"
    (statement,) = statements(cfg.datasource("aws_iam_policy_document", "execution_assume"))
    assert statement["actions"] == ["sts:AssumeRole"]
    assert blocks(statement, "principals") == [{"type": "Service", "identifiers": ["ecs-tasks.amazonaws.com"]}]
    assert "condition" not in statement
    # The task role keeps the confused-deputy conditions AWS recommends for task roles.
    task_role = cfg.resource("aws_iam_role", "task")
    assert ref(task_role["assume_role_policy"]) == "data.aws_iam_policy_document.task_assume.json"
    (statement,) = statements(cfg.datasource("aws_iam_policy_document", "task_assume"))
    assert blocks(statement, "principals") == [{"type": "Service", "identifiers": ["ecs-tasks.amazonaws.com"]}]
    assert {c["variable"] for c in blocks(statement, "condition")} == {"aws:SourceAccount", "aws:SourceArn"}


# ---------------------------------------------------------------------------------------------------------
# ECR, ECS, network
# ---------------------------------------------------------------------------------------------------------


def test_ecr_repository(cfg: Config) -> None:
    repo = cfg.resource("aws_ecr_repository", "worker")
    assert repo["image_tag_mutability"] == "IMMUTABLE"
    assert blocks(repo, "image_scanning_configuration") == [{"scan_on_push": True}]
    encryption = blocks(repo, "encryption_configuration")[0]
    assert encryption["encryption_type"] == '${local.use_kms ? "KMS" : "AES256"}'


def test_cluster_has_container_insights(cfg: Config) -> None:
    cluster = cfg.resource("aws_ecs_cluster", "this")
    assert {"name": "containerInsights", "value": "enabled"} in blocks(cluster, "setting")


def resolved(cfg: Config, value: Any) -> Any:
    """Follow `${local.x}` references to their values."""
    while isinstance(value, str) and re.fullmatch(r"\$\{local\.\w+\}", value):
        value = cfg.local(ref(value).split(".", 1)[1])
    return value


def test_task_definition_and_container(cfg: Config) -> None:
    task = cfg.resource("aws_ecs_task_definition", "worker")
    assert task["requires_compatibilities"] == ["FARGATE"]
    assert task["network_mode"] == "awsvpc"
    assert task["cpu"] == "${tostring(var.task_cpu)}"
    assert task["memory"] == "${tostring(var.task_memory)}"
    assert ref(blocks(task, "runtime_platform")[0]["cpu_architecture"]) == "var.cpu_architecture"
    assert "ARM64" in cfg.variables["cpu_architecture"]["validation"][0]["condition"]
    assert "X86_64" in cfg.variables["cpu_architecture"]["validation"][0]["condition"]
    assert {"name": "tmp"} in blocks(task, "volume")
    # The worker container always; the collector sidecar only when metrics_collector = amp.
    assert task["container_definitions"] == (
        "${jsonencode(concat([local.worker_container], local.collector_containers))}"
    )
    assert cfg.local("collector_containers") == (
        "${[for container in [local.collector_container] : container if local.amp_enabled]}"
    )

    container = cfg.local("worker_container")
    assert resolved(cfg, container["stopTimeout"]) == 120
    assert container["readonlyRootFilesystem"] is True
    assert {"sourceVolume": "tmp", "containerPath": "/tmp", "readOnly": False} in container["mountPoints"]
    assert container["image"] == "${aws_ecr_repository.worker.repository_url}:${var.image_tag}"
    assert [p["containerPort"] for p in container["portMappings"]] == ["${var.metrics_port}"]

    command = container["healthCheck"]["command"]
    assert command[0] == "CMD-SHELL"
    assert "http://127.0.0.1:${var.metrics_port}/healthz" in command[1]

    logs = container["logConfiguration"]
    assert logs["logDriver"] == "awslogs"
    assert ref(logs["options"]["awslogs-group"]) == "aws_cloudwatch_log_group.worker.name"
    log_group = cfg.resource("aws_cloudwatch_log_group", "worker")
    assert ref(log_group["retention_in_days"]) == "var.log_retention_days"


def test_container_environment(cfg: Config) -> None:
    base = cfg.local("base_environment")
    assert set(base) == {
        "AWS_REGION",
        "QUEUE_URL",
        "DLQ_URL",
        "SOURCE_BUCKETS",
        "OUTPUT_BUCKET",
        "OUTPUT_PREFIX",
        "WORKER_CONCURRENCY",
        "METRICS_PORT",
        "DETECTOR",
        "MAX_PIXELS",
        "MAX_OBJECT_BYTES",
        "MAX_PROCESSING_SECONDS",
        "SHUTDOWN_GRACE_SECONDS",
        "LOG_FORMAT",
        "REKOGNITION_TPS",
        "MAGICK_TEMPORARY_PATH",
        "SQS_WAIT_SECONDS",
    }
    assert ref(base["QUEUE_URL"]) == "aws_sqs_queue.jobs.url"
    assert ref(base["DLQ_URL"]) == "aws_sqs_queue.dlq.url"
    assert base["LOG_FORMAT"] == "json"
    assert base["MAGICK_TEMPORARY_PATH"] == "/tmp"
    assert ref(base["OUTPUT_PREFIX"]) == "var.output_prefix"
    assert ref(base["AWS_REGION"]) == "var.aws_region"
    kms = cfg.local("kms_environment")
    assert "SSE_KMS_KEY_ID = var.kms_key_arn" in kms, kms
    assert "if local.use_kms" in kms, kms
    assert "local.base_environment" in cfg.local("managed_environment")
    assert "local.kms_environment" in cfg.local("managed_environment")
    assert "var.extra_environment" in cfg.local("environment")
    # extra_environment may not shadow any of the managed names.
    condition = cfg.variables["extra_environment"]["validation"][0]["condition"]
    forbidden = set(re.findall(r'"([A-Z][A-Z0-9_]*)"', re.search(r"contains\(\[(.*?)\]", condition, re.S).group(1)))
    # SOURCE_BUCKET is refused too: SOURCE_BUCKETS replaced it, and a stale value must not sneak back in.
    # So are the settings the preconditions reason about (tests/infra/test_worker_contract.py).
    assert forbidden == set(base) | {"SSE_KMS_KEY_ID", "SOURCE_BUCKET", "HEARTBEAT_VISIBILITY_SECONDS", "MEMORY_BUDGET"}
    assert "local.environment" in cfg.local("worker_container")["environment"]

    defaults = {name: cfg.variables[name].get("default") for name in cfg.variables}
    assert defaults["output_prefix"] == ""
    assert defaults["metrics_port"] == 9102
    assert defaults["shutdown_grace_seconds"] == 90
    assert defaults["detector"] == "local"
    for detector in ("local", "rekognition", "both"):
        assert f'"{detector}"' in cfg.variables["detector"]["validation"][0]["condition"]
    # SIGKILL comes stopTimeout (120 s) after SIGTERM: the grace period must end before it.
    assert condition_upper_bound(cfg, "shutdown_grace_seconds") < resolved(cfg, "${local.stop_timeout_seconds}")


def test_task_definition_sets_the_source_bucket_allow_list(tf_files: dict[str, str], cfg: Config) -> None:
    """The worker takes jobs only from the buckets in SOURCE_BUCKETS (comma-separated): this stack's source bucket."""
    environment = cfg.local("base_environment")
    assert ref(environment["SOURCE_BUCKETS"]) == 'aws_s3_bucket.this["source"].bucket'
    assert "SOURCE_BUCKET" not in environment, "SOURCE_BUCKETS replaced SOURCE_BUCKET"
    # The environment reaches the worker container of the task definition, as NAME/value pairs.
    assert "local.base_environment" in cfg.local("managed_environment")
    assert "local.managed_environment" in cfg.local("environment")
    container = cfg.local("worker_container")
    assert re.search(r"for k in sort\(keys\(local\.environment\)\)", container["environment"])
    assert "local.worker_container" in cfg.resource("aws_ecs_task_definition", "worker")["container_definitions"]
    # No other place sets the old name: only the extra_environment validation mentions it (to refuse it).
    mentions = [f for f, text in tf_files.items() for _ in re.finditer(r'"?\bSOURCE_BUCKET\b"?\s*=', text)]
    assert mentions == [], f"SOURCE_BUCKET is still set in {mentions}"
    for example in (TF_DIR / "examples").glob("*.tfvars"):
        extra = parse_text(example.read_text()).get("extra_environment", {})
        assert not {"SOURCE_BUCKET", "SOURCE_BUCKETS"} & set(extra), example.name


# ---------------------------------------------------------------------------------------------------------
# Metrics on ECS: ADOT collector sidecar -> Amazon Managed Service for Prometheus (metrics.tf)
# ---------------------------------------------------------------------------------------------------------

COLLECTOR_TEMPLATE = TF_DIR / "templates" / "adot-config.yaml"
TEMPLATE_TOKEN = re.compile(r"\$\$\{|%%\{|\$\{\s*([A-Za-z_]\w*)\s*\}|\$\{|%\{")


def render_template(text: str, values: dict[str, Any]) -> str:
    """Terraform's templatefile() for templates made of plain ${name} interpolations ($${ and %%{ escape)."""

    def replace(m: re.Match[str]) -> str:
        token = m.group(0)
        if token in ("$${", "%%{"):
            return token[1:]
        name = m.group(1)
        assert name, f"unsupported template expression at offset {m.start()}: {text[m.start() : m.start() + 30]!r}"
        assert name in values, f"template variable {name} is not given"
        return str(values[name])

    return TEMPLATE_TOKEN.sub(replace, text)


def template_variables(text: str) -> set[str]:
    return {m.group(1) for m in TEMPLATE_TOKEN.finditer(text) if m.group(1)}


def templatefile_call(expression: str) -> tuple[str, dict[str, str]]:
    """Template path (relative to the module) and arguments of the templatefile() call in an expression."""
    match = re.search(r'templatefile\("\$\{path\.module\}/([\w./-]+)", \{(.*?)\}\)', expression)
    assert match, f"no templatefile(path.module/..., {{...}}) in {expression!r}"
    arguments = dict(re.findall(r'(\w+) = ("[^"]*"|[\w.]+)', match.group(2)))
    assert len(arguments) == match.group(2).count(" = "), f"cannot read the arguments {match.group(2)!r}"
    return match.group(1), arguments


SAMPLE_COLLECTOR_VALUES = {
    "job_name": "faceblur-worker",
    "metrics_port": 9102,
    "scrape_interval_seconds": 30,
    "remote_write_endpoint": "https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/ws-0123/api/v1/remote_write",
    "region": "eu-west-1",
}


def test_template_renderer_substitutes_and_refuses_directives() -> None:
    assert render_template("a: ${x}\nb: $${y}\n", {"x": 1}) == "a: 1\nb: ${y}\n"
    with pytest.raises(AssertionError, match="not given"):
        render_template("${missing}", {})
    with pytest.raises(AssertionError, match="unsupported"):
        render_template("%{ if x }y%{ endif }", {"x": True})
    with pytest.raises(AssertionError, match="unsupported"):
        render_template("${upper(x)}", {"x": "a"})


def test_metrics_collector_is_optional(cfg: Config) -> None:
    variable = cfg.variables["metrics_collector"]
    assert variable["default"] == "none"
    assert re.search(r'contains\(\["none", "amp"\], var\.metrics_collector\)', variable["validation"][0]["condition"])
    assert cfg.local("amp_enabled") == '${var.metrics_collector == "amp"}'
    # A new workspace unless an existing one is named; never both, neither when off.
    workspace = cfg.resource("aws_prometheus_workspace", "worker")
    assert workspace["count"] == "${local.amp_enabled && var.amp_workspace_id == null ? 1 : 0}"
    existing = cfg.datasource("aws_prometheus_workspace", "existing")
    assert existing["count"] == "${local.amp_enabled && var.amp_workspace_id != null ? 1 : 0}"
    assert ref(existing["workspace_id"]) == "var.amp_workspace_id"
    assert cfg.variables["amp_workspace_id"]["default"] is None
    for attribute, local_name in (("arn", "amp_workspace_arn"), ("prometheus_endpoint", "amp_workspace_endpoint")):
        assert cfg.local(local_name) == (
            f"${{try(aws_prometheus_workspace.worker[0].{attribute}, "
            f"data.aws_prometheus_workspace.existing[0].{attribute}, null)}}"
        )
    assert cfg.local("amp_remote_write_url") == (
        '${local.amp_enabled ? "${trimsuffix(local.amp_workspace_endpoint, "/")}/api/v1/remote_write" : null}'
    )
    assert "local.amp_workspace_arn" in cfg.outputs["amp_workspace_arn"]["value"]


def test_collector_sidecar_container(cfg: Config) -> None:
    collector = cfg.local("collector_container")
    assert collector["name"] == "${local.collector_container_name}"
    assert cfg.local("collector_container_name") != cfg.local("container_name")
    assert ref(collector["image"]) == "var.metrics_collector_image"
    assert not cfg.variables["metrics_collector_image"]["default"].endswith(":latest")
    assert "aws-otel-collector:v" in cfg.variables["metrics_collector_image"]["default"]
    assert collector["essential"] is False, "losing metrics must not stop photo processing"
    assert collector["readonlyRootFilesystem"] is True
    assert collector["environment"] == [{"name": "AOT_CONFIG_CONTENT", "value": "${local.collector_config}"}]
    assert collector["healthCheck"]["command"] == ["CMD", "/healthcheck"]
    # Logs go to the worker's log group, under their own stream prefix.
    logs = collector["logConfiguration"]
    assert logs["logDriver"] == "awslogs"
    assert ref(logs["options"]["awslogs-group"]) == "aws_cloudwatch_log_group.worker.name"
    worker_logs = cfg.local("worker_container")["logConfiguration"]["options"]
    assert logs["options"]["awslogs-stream-prefix"] != worker_logs["awslogs-stream-prefix"]
    # The worker starts after the collector and (reversed on shutdown) stops before it.
    assert cfg.local("worker_container")["dependsOn"] == (
        '${local.amp_enabled ? [{containerName = local.collector_container_name, condition = "START"}] : null}'
    )


@pytest.mark.parametrize(("task_cpu", "task_memory"), [(256, 1024), (1024, 2048), (4096, 8192)])
@pytest.mark.parametrize("enabled", [False, True])
def test_collector_and_worker_share_the_task_size(cfg: Config, enabled: bool, task_cpu: int, task_memory: int) -> None:
    collector = cfg.local("collector_container")
    assert ref(collector["cpu"]) == "var.metrics_collector_cpu"
    assert ref(collector["memory"]) == "var.metrics_collector_memory"  # a hard limit
    assert cfg.local("collector_cpu") == "${local.amp_enabled ? var.metrics_collector_cpu : 0}"
    assert cfg.local("collector_memory") == "${local.amp_enabled ? var.metrics_collector_memory : 0}"
    collector_cpu = cfg.variables["metrics_collector_cpu"]["default"] if enabled else 0
    collector_memory = cfg.variables["metrics_collector_memory"]["default"] if enabled else 0
    worker = cfg.local("worker_container")
    values = {
        "var.task_cpu": task_cpu,
        "var.task_memory": task_memory,
        "local.collector_cpu": collector_cpu,
        "local.collector_memory": collector_memory,
    }
    worker_cpu = evaluate_arithmetic(worker["cpu"], values)
    assert worker["memory"] == "${local.worker_memory_mib}"  # a hard limit (the worker's budget is sized from it)
    worker_memory = evaluate_arithmetic(cfg.local("worker_memory_mib"), values)
    assert worker_cpu + collector_cpu == task_cpu
    assert worker_memory + collector_memory == task_memory
    # The precondition keeps the worker at least half the CPU and 512 MiB.
    task = cfg.resource("aws_ecs_task_definition", "worker")
    conditions = [p["condition"] for p in blocks(blocks(task, "lifecycle")[0], "precondition")]
    assert "${local.collector_cpu * 2 <= var.task_cpu && var.task_memory - local.collector_memory >= 512}" in conditions
    assert worker_cpu >= task_cpu / 2
    assert worker_memory >= 512


def test_collector_template_gets_exactly_its_variables(cfg: Config) -> None:
    expression = cfg.local("collector_config")
    assert expression.startswith("${local.amp_enabled ? templatefile(")
    assert expression.endswith(") : null}")
    path, arguments = templatefile_call(expression)
    assert TF_DIR / path == COLLECTOR_TEMPLATE
    assert set(arguments) == template_variables(COLLECTOR_TEMPLATE.read_text()) == set(SAMPLE_COLLECTOR_VALUES)
    assert arguments["metrics_port"] == "var.metrics_port"
    assert arguments["scrape_interval_seconds"] == "var.metrics_scrape_interval_seconds"
    assert arguments["remote_write_endpoint"] == "local.amp_remote_write_url"
    assert arguments["region"] == "var.aws_region"
    assert arguments["job_name"] == '"faceblur-worker"'


def test_collector_config_scrapes_the_worker_and_remote_writes_to_amp() -> None:
    rendered = render_template(COLLECTOR_TEMPLATE.read_text(), SAMPLE_COLLECTOR_VALUES)
    config = yaml.safe_load(rendered)

    (scrape,) = config["receivers"]["prometheus"]["config"]["scrape_configs"]
    assert scrape["job_name"] == "faceblur-worker"
    assert scrape["metrics_path"] == "/metrics"
    assert scrape["static_configs"] == [{"targets": ["127.0.0.1:9102"]}]
    assert scrape["scrape_interval"] == "30s"

    exporter = config["exporters"]["prometheusremotewrite"]
    assert exporter["endpoint"] == SAMPLE_COLLECTOR_VALUES["remote_write_endpoint"]
    assert exporter["auth"] == {"authenticator": "sigv4auth"}
    # Every task scrapes 127.0.0.1: the ECS metadata labels keep the tasks' series apart.
    assert exporter["resource_to_telemetry_conversion"] == {"enabled": True}
    assert "ecs" in config["processors"]["resourcedetection"]["detectors"]
    assert config["extensions"]["sigv4auth"] == {"region": "eu-west-1", "service": "aps"}

    service = config["service"]
    metrics = service["pipelines"]["metrics"]
    assert metrics["receivers"] == ["prometheus"]
    assert metrics["exporters"] == ["prometheusremotewrite"]
    assert metrics["processors"][0] == "memory_limiter", "the memory limiter comes first"
    assert metrics["processors"][-1] == "batch"
    assert set(service["pipelines"]) == {"metrics"}
    # What the pipeline names is defined, and what is defined is used (the collector refuses the former).
    for kind in ("receivers", "processors", "exporters"):
        assert set(metrics[kind]) == set(config[kind]), kind
    assert set(service["extensions"]) == set(config["extensions"]) == {"health_check", "sigv4auth"}
    assert "${" not in rendered


def test_service(cfg: Config) -> None:
    service = cfg.resource("aws_ecs_service", "worker")
    assert ref(service["desired_count"]) == "var.desired_count"
    assert "desired_count" in blocks(service, "lifecycle")[0]["ignore_changes"]
    assert blocks(service, "deployment_circuit_breaker") == [{"enable": True, "rollback": True}]
    assert "launch_type" not in service, "the capacity provider strategy places the tasks"
    network = blocks(service, "network_configuration")[0]
    assert network["assign_public_ip"] is False
    assert ref(network["subnets"]) == "var.private_subnet_ids"
    assert network["security_groups"] == ["${aws_security_group.worker.id}"]


def test_security_group_ingress_is_only_the_metrics_port(cfg: Config) -> None:
    group = cfg.resource("aws_security_group", "worker")
    assert "ingress" not in group, "rules live in separate resources"
    assert "egress" not in group, "rules live in separate resources"
    assert "aws_security_group_rule" not in cfg.resources
    ingress = {
        name: rule
        for name, rule in cfg.resources["aws_vpc_security_group_ingress_rule"].items()
        if ref(rule["security_group_id"]) == "aws_security_group.worker.id"
    }
    assert set(ingress) == {"metrics_from_cidr", "metrics_from_security_group"}
    for rule in ingress.values():
        assert ref(rule["security_group_id"]) == "aws_security_group.worker.id"
        assert rule["ip_protocol"] == "tcp"
        assert ref(rule["from_port"]) == ref(rule["to_port"]) == "var.metrics_port"
    assert ref(ingress["metrics_from_cidr"]["for_each"]) == "toset(var.metrics_ingress_cidr_blocks)"
    assert ref(ingress["metrics_from_security_group"]["for_each"]) == "toset(var.metrics_ingress_security_group_ids)"
    egress = cfg.resources["aws_vpc_security_group_egress_rule"]
    assert egress
    for rule in egress.values():
        assert ref(rule["security_group_id"]) == "aws_security_group.worker.id"
        assert (rule["ip_protocol"], rule["from_port"], rule["to_port"]) == ("tcp", 443, 443)


# ---------------------------------------------------------------------------------------------------------
# Autoscaling and alarms
# ---------------------------------------------------------------------------------------------------------


def policies_of_type(cfg: Config, policy_type: str) -> list[dict[str, Any]]:
    return [p for p in cfg.resources["aws_appautoscaling_policy"].values() if p["policy_type"] == policy_type]


def test_scalable_target(cfg: Config) -> None:
    target = cfg.resource("aws_appautoscaling_target", "worker")
    assert target["service_namespace"] == "ecs"
    assert target["scalable_dimension"] == "ecs:service:DesiredCount"
    assert target["resource_id"] == "service/${aws_ecs_cluster.this.name}/${aws_ecs_service.worker.name}"
    assert ref(target["min_capacity"]) == "var.min_capacity"
    assert ref(target["max_capacity"]) == "var.max_capacity"


def test_target_tracking_on_backlog_per_task_uses_metric_math(cfg: Config) -> None:
    (policy,) = policies_of_type(cfg, "TargetTrackingScaling")
    assert ref(policy["resource_id"]) == "aws_appautoscaling_target.worker.resource_id"
    config = blocks(policy, "target_tracking_scaling_policy_configuration")[0]
    assert ref(config["target_value"]) == "var.target_backlog_per_task"
    metrics = blocks(blocks(config, "customized_metric_specification")[0], "metrics")
    by_name = {}
    for m in metrics:
        for stat in blocks(m, "metric_stat"):
            metric = blocks(stat, "metric")[0]
            dims = {d["name"]: d["value"] for d in blocks(metric, "dimensions")}
            by_name[metric["metric_name"]] = (m["id"], metric["namespace"], dims, m.get("return_data"))
    visible_id, namespace, dims, returned = by_name["ApproximateNumberOfMessagesVisible"]
    assert namespace == "AWS/SQS"
    assert dims == {"QueueName": "${aws_sqs_queue.jobs.name}"}
    assert returned is False
    tasks_id, namespace, dims, returned = by_name["RunningTaskCount"]
    assert namespace == "ECS/ContainerInsights"
    assert returned is False
    assert dims == {"ClusterName": "${aws_ecs_cluster.this.name}", "ServiceName": "${aws_ecs_service.worker.name}"}
    (expression,) = [m for m in metrics if m.get("return_data") is True]
    assert re.search(rf"\b{visible_id}\b", expression["expression"])
    assert re.search(rf"/\s*{tasks_id}\b", expression["expression"]), expression["expression"]


def test_waking_from_zero_is_opt_in_and_uses_sqs_metrics_only(cfg: Config) -> None:
    # The default keeps a task: nothing has to wake up.
    assert cfg.variables["min_capacity"]["default"] == 1
    assert cfg.variables["desired_count"]["default"] >= cfg.variables["min_capacity"]["default"]
    (policy,) = policies_of_type(cfg, "StepScaling")
    assert policy["count"] == "${var.min_capacity == 0 ? 1 : 0}"
    config = blocks(policy, "step_scaling_policy_configuration")[0]
    assert config["adjustment_type"] == "ExactCapacity"
    (step,) = blocks(config, "step_adjustment")
    assert step["metric_interval_lower_bound"] == 0
    assert step["scaling_adjustment"] == 1
    alarms = [
        a
        for a in cfg.resources["aws_cloudwatch_metric_alarm"].values()
        if "${aws_appautoscaling_policy.scale_from_zero[0].arn}" in a.get("alarm_actions", [])
    ]
    assert len(alarms) == 1
    (alarm,) = alarms
    assert alarm["count"] == policy["count"]
    queries = blocks(alarm, "metric_query")
    metrics = {blocks(q, "metric")[0]["metric_name"]: q for q in queries if "metric" in q}
    # SQS publishes these whether or not a task runs; no ECS/Container Insights series is involved.
    assert {blocks(q, "metric")[0]["namespace"] for q in metrics.values()} == {"AWS/SQS"}
    assert set(metrics) == {"ApproximateNumberOfMessagesVisible", "ApproximateNumberOfMessagesNotVisible"}
    visible, inflight = metrics["ApproximateNumberOfMessagesVisible"], metrics["ApproximateNumberOfMessagesNotVisible"]
    assert blocks(visible, "metric")[0]["stat"] == "Minimum", "waiting for the whole minute"
    assert blocks(inflight, "metric")[0]["stat"] == "Maximum", "none in flight at any time in the minute"
    for q in (visible, inflight):
        assert blocks(q, "metric")[0]["dimensions"] == {"QueueName": "${aws_sqs_queue.jobs.name}"}
    (expression,) = [q for q in queries if q.get("return_data") is True]
    text = expression["expression"]
    assert re.search(rf"\b{visible['id']}\s*>\s*0", text), text
    assert re.search(rf"FILL\({inflight['id']},\s*0\)\s*==\s*0", text), text
    assert alarm["comparison_operator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["threshold"] == 1
    assert alarm["treat_missing_data"] == "notBreaching"


def test_running_below_desired_alarm(cfg: Config) -> None:
    alarm = cfg.resource("aws_cloudwatch_metric_alarm", "tasks_below_desired")
    queries = {q["id"]: q for q in blocks(alarm, "metric_query")}
    names = {blocks(q, "metric")[0]["metric_name"]: i for i, q in queries.items() if "metric" in q}
    assert set(names) == {"DesiredTaskCount", "RunningTaskCount"}
    for i in names.values():
        metric = blocks(queries[i], "metric")[0]
        assert metric["namespace"] == "ECS/ContainerInsights"
        assert metric["dimensions"] == {
            "ClusterName": "${aws_ecs_cluster.this.name}",
            "ServiceName": "${aws_ecs_service.worker.name}",
        }
    (expression,) = [q for q in queries.values() if q.get("return_data") is True]
    desired, running = names["DesiredTaskCount"], names["RunningTaskCount"]
    assert re.fullmatch(rf"{desired} - FILL\({running}, 0\)", expression["expression"]), expression
    assert (alarm["comparison_operator"], alarm["threshold"]) == ("GreaterThanThreshold", 0)
    assert alarm["evaluation_periods"] == alarm["datapoints_to_alarm"] >= 3
    assert ref(alarm["alarm_actions"]) == ref(alarm["ok_actions"]) == "local.alarm_actions"


def test_alarm_actions_are_required_and_null_is_warned_about(cfg: Config) -> None:
    topic = cfg.variables["alarm_sns_topic_arn"]
    assert "default" not in topic, "required: an operator must choose a topic, or null on purpose"
    assert topic.get("nullable", True) is True
    check = cfg.checks["alarms_notify_someone"]
    (assertion,) = blocks(check, "assert")
    assert assertion["condition"] == "${var.alarm_sns_topic_arn != null}"
    assert "notifies anyone" in assertion["error_message"]
    for name, alarm in cfg.resources["aws_cloudwatch_metric_alarm"].items():
        if name != "scale_from_zero":  # drives autoscaling, not people
            assert ref(alarm["alarm_actions"]) == "local.alarm_actions", name


def test_queue_alarms(cfg: Config) -> None:
    alarms = cfg.resources["aws_cloudwatch_metric_alarm"]
    dlq = alarms["dlq_not_empty"]
    assert (dlq["namespace"], dlq["metric_name"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert dlq["dimensions"] == {"QueueName": "${aws_sqs_queue.dlq.name}"}
    assert (dlq["comparison_operator"], dlq["threshold"]) == ("GreaterThanThreshold", 0)
    age = alarms["oldest_message_age"]
    assert (age["namespace"], age["metric_name"]) == ("AWS/SQS", "ApproximateAgeOfOldestMessage")
    assert age["dimensions"] == {"QueueName": "${aws_sqs_queue.jobs.name}"}
    assert ref(age["threshold"]) == "var.oldest_message_age_alarm_seconds"
    for alarm in (dlq, age):
        assert ref(alarm["alarm_actions"]) == "local.alarm_actions"
    assert "var.alarm_sns_topic_arn" in cfg.local("alarm_actions")


# ---------------------------------------------------------------------------------------------------------
# Dashboard
# ---------------------------------------------------------------------------------------------------------

DIMENSION_REFERENCE = re.compile(r"\$\{(aws_\w+)\.(\w+)\.name\}")


def dashboard_metrics(cfg: Config, widget: dict[str, Any]) -> list[tuple[str, str, dict[str, str]]]:
    """(namespace, metric, dimensions) of each row of a metric widget ([ns, name, dim, value, ..., {options}])."""
    rows = []
    for row in widget["properties"]["metrics"]:
        assert isinstance(row, list), f"metric rows are written out, not computed: {row!r}"
        fields = row[:-1] if isinstance(row[-1], dict) else row
        assert len(fields) >= 2, row
        assert len(fields) % 2 == 0, f"dimension without a value in {row!r}"
        namespace, metric, *pairs = fields
        dimensions = dict(zip(pairs[::2], pairs[1::2], strict=True))
        for value in dimensions.values():
            # A reference to a declared resource's name: the dashboard follows name_prefix.
            match = DIMENSION_REFERENCE.fullmatch(value)
            assert match, f"{metric}: dimension value {value!r} is not a resource name reference"
            assert match.group(2) in cfg.resources.get(match.group(1), {}), f"{value} is not declared"
        rows.append((namespace, metric, dimensions))
    return rows


def test_dashboard_shows_queues_and_service(cfg: Config) -> None:
    dashboard = cfg.resource("aws_cloudwatch_dashboard", "worker")
    assert dashboard["dashboard_name"] == "${local.name}-worker"
    assert dashboard["dashboard_body"] == "${jsonencode({widgets = local.dashboard_widgets})}"
    widgets = cfg.local("dashboard_widgets")

    shown: dict[tuple[str, str], list[dict[str, str]]] = {}
    for widget in widgets:
        if widget["type"] != "metric":
            continue
        properties = widget["properties"]
        assert ref(properties["region"]) == "var.aws_region"
        assert properties["title"]
        assert properties["stat"] in ("Maximum", "Average", "Sum")
        for namespace, metric, dimensions in dashboard_metrics(cfg, widget):
            shown.setdefault((namespace, metric), []).append(dimensions)

    jobs = {"QueueName": "${aws_sqs_queue.jobs.name}"}
    dlq = {"QueueName": "${aws_sqs_queue.dlq.name}"}
    service = {"ClusterName": "${aws_ecs_cluster.this.name}", "ServiceName": "${aws_ecs_service.worker.name}"}
    assert jobs in shown[("AWS/SQS", "ApproximateNumberOfMessagesVisible")], "job queue depth"
    assert dlq in shown[("AWS/SQS", "ApproximateNumberOfMessagesVisible")], "DLQ depth"
    assert shown[("AWS/SQS", "ApproximateAgeOfOldestMessage")] == [jobs]
    assert shown[("AWS/ECS", "CPUUtilization")] == [service]
    assert shown[("AWS/ECS", "MemoryUtilization")] == [service]
    assert shown[("ECS/ContainerInsights", "RunningTaskCount")] == [service]

    # The widgets fit the 24-column grid without overlapping.
    cells: set[tuple[int, int]] = set()
    for widget in widgets:
        assert widget["x"] >= 0, widget
        assert widget["x"] + widget["width"] <= 24, widget
        area = {
            (x, y)
            for x in range(widget["x"], widget["x"] + widget["width"])
            for y in range(widget["y"], widget["y"] + widget["height"])
        }
        assert not cells & area, f"{widget['type']} widget at ({widget['x']}, {widget['y']}) overlaps another"
        cells |= area


def test_dashboard_says_where_the_worker_metrics_are(cfg: Config) -> None:
    (text,) = [w for w in cfg.local("dashboard_widgets") if w["type"] == "text"]
    markdown = text["properties"]["markdown"]
    assert markdown == "${local.amp_enabled ? local.dashboard_worker_metrics_amp : local.dashboard_worker_metrics_none}"
    amp = re.sub(r"\s+", " ", cfg.local("dashboard_worker_metrics_amp"))
    assert "Amazon Managed Service for Prometheus" in amp
    assert "CloudWatch dashboards cannot query AMP" in amp
    assert "amp_query_url" in amp
    assert "amp_query_url" in cfg.outputs
    none = re.sub(r"\s+", " ", cfg.local("dashboard_worker_metrics_none"))
    assert "port ${var.metrics_port}" in none


# ---------------------------------------------------------------------------------------------------------
# Apply ordering, failed deployments, metrics rules, hygiene
# ---------------------------------------------------------------------------------------------------------


def depends_on(body: dict[str, Any]) -> list[str]:
    return [ref(d) for d in body.get("depends_on", [])]


def test_tasks_start_only_after_their_roles_and_network_rules(cfg: Config) -> None:
    task = cfg.resource("aws_ecs_task_definition", "worker")
    assert set(depends_on(task)) == {"aws_iam_role_policy.execution", "aws_iam_role_policy.task"}
    service = depends_on(cfg.resource("aws_ecs_service", "worker"))
    policies = {f"aws_iam_role_policy.{name}" for name in cfg.resources["aws_iam_role_policy"]}
    egress = {
        f"aws_vpc_security_group_egress_rule.{name}" for name in cfg.resources["aws_vpc_security_group_egress_rule"]
    }
    endpoints = {f"aws_vpc_endpoint.{name}" for name in cfg.resources["aws_vpc_endpoint"]}
    assert policies | egress | endpoints | {"aws_ecs_cluster_capacity_providers.this"} <= set(service)


S3_CHAIN = (
    "aws_s3_bucket_public_access_block",
    "aws_s3_bucket_policy",
    "aws_s3_bucket_ownership_controls",
    "aws_s3_bucket_server_side_encryption_configuration",
    "aws_s3_bucket_versioning",
    "aws_s3_bucket_lifecycle_configuration",
    "aws_s3_bucket_logging",
    "aws_s3_bucket_notification",
)


def test_bucket_sub_resources_apply_one_after_another(cfg: Config) -> None:
    """S3 refuses concurrent changes to one bucket's configuration: each sub-resource waits for the one before
    it, and the optional ones (versioning, logging) are never the only link."""
    waits: dict[str, set[str]] = {}
    for rtype in S3_CHAIN:
        name = "source" if rtype == "aws_s3_bucket_notification" else "this"
        waits[rtype] = {d.split(".")[0] for d in depends_on(cfg.resource(rtype, name))}

    def before(rtype: str, mandatory_only: bool) -> set[str]:
        """Everything rtype transitively waits for (through mandatory resources only, if asked)."""
        seen, todo = set(), [rtype]
        optional = {"aws_s3_bucket_versioning", "aws_s3_bucket_logging"}
        while todo:
            for dep in waits.get(todo.pop(), set()):
                if dep not in seen and not (mandatory_only and dep in optional):
                    seen.add(dep)
                    todo.append(dep)
        return seen

    for i, rtype in enumerate(S3_CHAIN[1:], start=1):
        assert set(S3_CHAIN[:i]) <= before(rtype, False), f"{rtype} does not wait for all of {S3_CHAIN[:i]}"
    mandatory = [r for r in S3_CHAIN if r not in ("aws_s3_bucket_versioning", "aws_s3_bucket_logging")]
    for i, rtype in enumerate(mandatory[1:], start=1):
        assert set(mandatory[:i]) <= before(rtype, True), f"{rtype}: the chain breaks without the optional parts"


def test_failed_deployments_and_crashing_tasks_reach_the_alarm_topic(cfg: Config) -> None:
    patterns = cfg.local("ecs_event_patterns")
    assert set(patterns) == {"deployment-failed", "tasks-failing", "worker-exited"}
    for pattern in patterns.values():
        assert pattern["source"] == ["aws.ecs"]
    assert patterns["deployment-failed"]["detail-type"] == ["ECS Deployment State Change"]
    assert patterns["deployment-failed"]["detail"] == {"eventName": ["SERVICE_DEPLOYMENT_FAILED"]}
    assert patterns["tasks-failing"]["detail-type"] == ["ECS Service Action"]
    assert "SERVICE_TASK_START_IMPAIRED" in patterns["tasks-failing"]["detail"]["eventName"]
    for name in ("deployment-failed", "tasks-failing"):
        assert patterns[name]["resources"] == ["${local.service_arn}"], "this service only"
    assert "service/${aws_ecs_cluster.this.name}/${aws_ecs_service.worker.name}" in cfg.local("service_arn")
    exited = patterns["worker-exited"]
    assert exited["detail-type"] == ["ECS Task State Change"]
    assert exited["detail"] == {
        "clusterArn": ["${aws_ecs_cluster.this.arn}"],
        "group": ["service:${aws_ecs_service.worker.name}"],
        "lastStatus": ["STOPPED"],
        "stopCode": ["EssentialContainerExited"],
    }
    rule = cfg.resource("aws_cloudwatch_event_rule", "ecs")
    assert rule["for_each"] == "${local.ecs_event_patterns}"
    assert rule["event_pattern"] == "${jsonencode(each.value)}"
    target = cfg.resource("aws_cloudwatch_event_target", "ecs_to_alarm_topic")
    assert ref(target["arn"]) == "var.alarm_sns_topic_arn"
    assert target["rule"] == "${aws_cloudwatch_event_rule.ecs[each.key].name}"
    assert "if var.alarm_sns_topic_arn != null" in target["for_each"]


def test_amp_evaluates_the_same_alert_rules(cfg: Config) -> None:
    namespace = cfg.resource("aws_prometheus_rule_group_namespace", "worker")
    assert namespace["count"] == "${local.amp_enabled ? 1 : 0}"
    assert ref(namespace["workspace_id"]) == "local.amp_workspace_id"
    match = re.fullmatch(r'\$\{file\("\$\{path\.module\}/([^"]+)"\)\}', namespace["data"])
    assert match, namespace["data"]
    rules_file = (TF_DIR / match.group(1)).resolve()
    assert rules_file == ROOT / "deploy" / "prometheus" / "alerts.yml"
    groups = yaml.safe_load(rules_file.read_text())["groups"]
    assert groups
    assert all(r.get("alert") and r.get("expr") for g in groups for r in g["rules"])
    alertmanager = cfg.resource("aws_prometheus_alert_manager_definition", "worker")
    assert "var.alarm_sns_topic_arn != null" in alertmanager["count"]
    assert "var.amp_workspace_id == null" in alertmanager["count"], "never replace an existing workspace's"
    assert "topic_arn = var.alarm_sns_topic_arn" in alertmanager["definition"]


def test_each_task_series_carries_the_task_identity() -> None:
    config = yaml.safe_load(render_template(COLLECTOR_TEMPLATE.read_text(), SAMPLE_COLLECTOR_VALUES))
    processors = config["service"]["pipelines"]["metrics"]["processors"]
    assert processors.index("resourcedetection") < processors.index("resource") < processors.index("batch")
    assert "ecs" in config["processors"]["resourcedetection"]["detectors"]
    # instance = the task ARN, not the 127.0.0.1:port every task scrapes.
    assert {"key": "service.instance.id", "from_attribute": "aws.ecs.task.arn", "action": "upsert"} in config[
        "processors"
    ]["resource"]["attributes"]


def test_state_and_inputs_stay_out_of_git(tmp_path: Path) -> None:
    paths = {
        "deploy/terraform/.terraform/providers/x": True,
        "deploy/terraform/terraform.tfstate": True,
        "deploy/terraform/terraform.tfstate.backup": True,
        "deploy/terraform/my.tfvars": True,
        "deploy/terraform/examples/production.tfvars": False,
        "deploy/terraform/main.tf": False,
    }
    result = subprocess.run(
        ["git", "check-ignore", "--no-index", "--stdin"],
        cwd=ROOT,
        input="\n".join(paths),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr
    ignored = set(result.stdout.split())
    assert ignored == {p for p, want in paths.items() if want}


def test_backend_example_locks_and_encrypts_the_state() -> None:
    example = parse_text((TF_DIR / "examples" / "backend.tf.example").read_text())
    (block,) = example["terraform"]
    (backend,) = block["backend"]
    s3 = backend["s3"]
    assert s3["encrypt"] is True
    assert s3.get("use_lockfile") is True or s3.get("dynamodb_table")
    assert {"bucket", "key", "region"} <= set(s3)
    assert not list(TF_DIR.glob("backend.tf")), "the example stays an example: the backend is the operator's"


def test_every_variable_states_its_range_or_choices(cfg: Config) -> None:
    """Units and ranges in the description: every bound of a number variable's validation is written there."""
    bound = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])")
    checked = 0
    for name, variable in cfg.variables.items():
        if variable["type"] not in ("${number}", "number"):
            continue
        numbers = {n for v in blocks(variable, "validation") for n in bound.findall(v["condition"])}
        missing = {n for n in numbers if n not in variable["description"]}
        assert not missing, f"{name}: bounds {sorted(missing)} are not in its description"
        checked += 1
    assert checked >= 25


# ---------------------------------------------------------------------------------------------------------
# checkov
# ---------------------------------------------------------------------------------------------------------

SKIP_COMMENT = re.compile(r"#\s*checkov:skip=(CKV2?_[A-Z0-9]+_\d+)(?::(.*))?")


def test_checkov_skips_are_inline_with_reasons(tf_files: dict[str, str]) -> None:
    for filename, text in tf_files.items():
        for m in SKIP_COMMENT.finditer(text):
            reason = (m.group(2) or "").strip()
            assert len(reason) >= 30, f"{filename}: {m.group(1)} needs a real reason, not {reason!r}"
    for config_file in (".checkov.yaml", ".checkov.yml"):
        for directory in (TF_DIR, ROOT):
            assert not (directory / config_file).exists(), "no global checkov configuration: skips are inline"


@pytest.mark.slow
def test_checkov_passes(tf_files: dict[str, str]) -> None:
    checkov = tool("checkov-venv/bin/checkov")
    result = run(
        [
            checkov,
            "--directory",
            TF_DIR.relative_to(ROOT),
            "--framework",
            "terraform",
            "--skip-download",
            "--compact",
            "--quiet",
            "--output",
            "json",
        ],
        timeout=300,
    )
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"checkov failed (rc {result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    reports = report if isinstance(report, list) else [report]
    failed = [c for r in reports for c in r.get("results", {}).get("failed_checks", [])]
    summary = {k: sum(r["summary"][k] for r in reports) for k in ("failed", "skipped", "parsing_errors")}
    listing = "\n".join(
        f"  {c['check_id']} {c['check_name']}: {c['resource']} ({c['file_path']}:{c['file_line_range'][0]})"
        for c in failed
    )
    assert not failed, f"checkov failed checks:\n{listing}"
    assert summary["failed"] == 0
    assert result.returncode == 0, result.stderr[-3000:]
    assert summary["parsing_errors"] == 0
    assert sum(r["summary"]["resource_count"] for r in reports) >= 30
    # Every inline skip suppresses a real finding; a stale skip would hide nothing and mislead.
    inline_skips = sum(len(SKIP_COMMENT.findall(text)) for text in tf_files.values())
    assert summary["skipped"] == inline_skips, f"{inline_skips} inline skips but checkov skipped {summary['skipped']}"
