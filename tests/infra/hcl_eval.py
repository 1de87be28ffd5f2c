"""A small evaluator of Terraform expressions, enough to run this module's validations, preconditions and locals.

No tool here evaluates Terraform (no terraform binary can init offline), yet the rules that keep Terraform from
accepting what the worker refuses are expressions: tests/infra/test_worker_contract.py evaluates them with this
and compares the verdicts with the worker's own rules. Supported: literals, string templates, lists, objects,
`[for ...]`/`{for ...}`, references (var., local., data., resources through a resolver), the operators with
Terraform's precedence and the functions listed in FUNCTIONS. `&&` and `||` evaluate both sides, as Terraform
before 1.12 does (so `x == null || x > 1` is an error here as there). Anything else raises Unsupported, never
guesses.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Callable
from typing import Any


class Unsupported(Exception):
    """The expression uses something this evaluator does not implement."""


class EvalError(Exception):
    """Terraform would report an error evaluating this (what can() and try() catch)."""


class Unknown(EvalError):
    """A value only known after apply (a resource attribute the resolver does not give)."""


_NUMBER = re.compile(r"\d+(\.\d+)?([eE][+-]?\d+)?")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_BINARY = [("||",), ("&&",), ("==", "!="), ("<=", ">=", "<", ">"), ("+", "-"), ("*", "/", "%")]


def _number(value: Any) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EvalError(f"a number is required, not {value!r}")
    return value


def _tf_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float | str):
        return str(value)
    raise EvalError(f"cannot convert {value!r} to a string")


def _tonumber(value: Any) -> float | int:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _NUMBER.fullmatch(value.lstrip("-")):
        number = float(value)
        return int(number) if number.is_integer() and "." not in value else number
    raise EvalError(f"cannot convert {value!r} to a number")


def _regex(pattern: str, text: str) -> Any:
    match = re.search(pattern, text)
    if match is None:
        raise EvalError(f"pattern {pattern!r} does not match {text!r}")
    if match.groupdict():
        return match.groupdict()
    return list(match.groups()) if match.groups() else match.group(0)


def _range(*args: Any) -> list[Any]:
    start, limit, step = (0, args[0], 1) if len(args) == 1 else (args[0], args[1], args[2] if len(args) > 2 else 1)
    return list(range(int(start), int(limit), int(step)))


def _cidrhost(prefix: str, host: int) -> str:
    network = ipaddress.ip_network(prefix, strict=False)
    return str(network[host])


def _coalesce(*values: Any) -> Any:
    for value in values:
        if value is not None and value != "":
            return value
    raise EvalError("coalesce: no non-null, non-empty argument")


def _merge(*maps: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for m in maps:
        if not isinstance(m, dict):
            raise EvalError(f"merge: {m!r} is not a map")
        out.update(m)
    return out


def _min(*values: Any) -> Any:
    return min(_number(v) for v in values)


def _max(*values: Any) -> Any:
    return max(_number(v) for v in values)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": lambda x: abs(_number(x)),
    "alltrue": lambda xs: all(x is True for x in xs),
    "anytrue": lambda xs: any(x is True for x in xs),
    "ceil": lambda x: math.ceil(_number(x)),
    "cidrhost": _cidrhost,
    "coalesce": _coalesce,
    "compact": lambda xs: [x for x in xs if x is not None and x != ""],
    "concat": lambda *ls: [x for lst in ls for x in lst],
    "distinct": lambda xs: [x for i, x in enumerate(xs) if x not in xs[:i]],
    "contains": lambda xs, v: v in xs,
    "endswith": lambda s, suffix: str(s).endswith(suffix) if isinstance(s, str) else _tf_str(None),
    "floor": lambda x: math.floor(_number(x)),
    "join": lambda sep, xs: sep.join(_tf_str(x) for x in xs),
    "jsonencode": lambda v: json.dumps(v, separators=(",", ":")),
    "keys": lambda m: sorted(m),
    "length": lambda v: len(v) if isinstance(v, str | list | dict) else _tf_str(None),
    "lower": lambda s: s.lower(),
    "max": _max,
    "merge": _merge,
    "min": _min,
    "range": _range,
    "regex": _regex,
    "sort": lambda xs: sorted(_tf_str(x) for x in xs),
    "startswith": lambda s, prefix: s.startswith(prefix) if isinstance(s, str) else _tf_str(None),
    "sum": lambda xs: sum(_number(x) for x in xs),
    "tonumber": _tonumber,
    "toset": lambda xs: sorted(set(xs), key=_tf_str),
    "tostring": _tf_str,
    "trimsuffix": lambda s, suffix: s[: -len(suffix)] if suffix and s.endswith(suffix) else s,
    "values": lambda m: [m[k] for k in sorted(m)],
}


class Scope:
    """Values of `var.`, `local.` and everything else a reference can start with."""

    def __init__(
        self,
        variables: dict[str, Any],
        local_expressions: dict[str, Any],
        resolve: Callable[[list[Any]], Any] | None = None,
    ) -> None:
        self.variables = variables
        self.local_expressions = local_expressions
        self.resolve = resolve
        self._locals: dict[str, Any] = {}
        self._evaluating: set[str] = set()

    def local(self, name: str) -> Any:
        if name not in self._locals:
            if name not in self.local_expressions:
                raise EvalError(f"local.{name} is not declared")
            if name in self._evaluating:
                raise EvalError(f"local.{name} refers to itself")
            self._evaluating.add(name)
            try:
                self._locals[name] = evaluate_value(self.local_expressions[name], self)
            finally:
                self._evaluating.discard(name)
        return self._locals[name]


def evaluate_value(value: Any, scope: Scope) -> Any:
    """A value as python-hcl2 gives it (strings hold `${...}` expressions and templates) -> its Terraform value."""
    if isinstance(value, str):
        return evaluate_template(value, scope)
    if isinstance(value, list):
        return [evaluate_value(v, scope) for v in value]
    if isinstance(value, dict):
        return {k: evaluate_value(v, scope) for k, v in value.items()}
    return value


def evaluate_template(text: str, scope: Scope) -> Any:
    parser = _Parser(text, scope)
    result = parser.template(end=None)
    return result


def evaluate(expression: str, scope: Scope) -> Any:
    """A bare expression (no surrounding ${})."""
    parser = _Parser(expression, scope)
    value = parser.expression()
    parser.skip()
    if parser.i != len(parser.s):
        raise Unsupported(f"cannot parse {expression[parser.i : parser.i + 30]!r} in {expression!r}")
    return value


class _Lazy:
    """An argument of can()/try(): evaluated inside the function, so its error can be caught."""

    def __init__(self, parser: _Parser, start: int, end: int) -> None:
        self.parser, self.start, self.end = parser, start, end

    def value(self) -> Any:
        sub = _Parser(self.parser.s[: self.end], self.parser.scope, self.parser.bound)
        sub.i = self.start
        return sub.expression()


class _Parser:
    """Recursive descent straight over the text; evaluates as it parses. Skipped branches (the untaken side of
    `?:`, a for body for an empty collection) are parsed with evaluation off."""

    def __init__(self, s: str, scope: Scope, bound: dict[str, Any] | None = None) -> None:
        self.s, self.i, self.scope = s, 0, scope
        self.bound = dict(bound or {})  # for-expression variables
        self.live = True

    # -- lexing
    def skip(self) -> None:
        while self.i < len(self.s):
            if self.s[self.i].isspace():
                self.i += 1
            elif self.s.startswith("#", self.i) or self.s.startswith("//", self.i):
                end = self.s.find("\n", self.i)
                self.i = len(self.s) if end < 0 else end
            else:
                return

    def peek(self, token: str) -> bool:
        self.skip()
        if not self.s.startswith(token, self.i):
            return False
        if token[-1].isalpha():  # keywords end at a word boundary
            after = self.s[self.i + len(token) : self.i + len(token) + 1]
            return not (after.isalnum() or after in "_-")
        # "=" must not be the start of "==" or "=>", "!" of "!=", "<"/">" of "<="/">="
        nxt = self.s[self.i + len(token) : self.i + len(token) + 1]
        return not (token in ("=", "!", "<", ">") and nxt == "=") and not (token == "=" and nxt == ">")

    def take(self, token: str) -> bool:
        if self.peek(token):
            self.i += len(token)
            return True
        return False

    def expect(self, token: str) -> None:
        if not self.take(token):
            raise Unsupported(f"expected {token!r} at {self.s[self.i : self.i + 30]!r}")

    # -- grammar
    def expression(self) -> Any:
        condition = self.binary(0)
        if not self.take("?"):
            return condition
        if self.live:
            condition = _resolved(condition)
        if self.live and not isinstance(condition, bool):
            raise EvalError(f"condition is {condition!r}, not a bool")
        live = self.live
        self.live = live and condition is True
        yes = self.expression()
        self.expect(":")
        self.live = live and condition is False
        no = self.expression()
        self.live = live
        if not live:
            return None
        return yes if condition else no

    def binary(self, level: int) -> Any:
        if level == len(_BINARY):
            return self.unary()
        left = self.binary(level + 1)
        while True:
            op = next((o for o in _BINARY[level] if self.take(o)), None)
            if op is None:
                return left
            right = self.binary(level + 1)
            if self.live:
                left = self._apply(op, _resolved(left), _resolved(right))

    def _apply(self, op: str, a: Any, b: Any) -> Any:
        if op in ("&&", "||"):
            if not isinstance(a, bool) or not isinstance(b, bool):
                raise EvalError(f"{op} needs bools, got {a!r} and {b!r}")
            return (a and b) if op == "&&" else (a or b)
        if op == "==":
            return (a == b and type(a) is type(b)) or (_is_num(a) and _is_num(b) and a == b)
        if op == "!=":
            return not self._apply("==", a, b)
        x, y = _number(a), _number(b)
        if op == "/" and y == 0:
            raise EvalError("division by zero")
        result = {
            "<": lambda: x < y,
            ">": lambda: x > y,
            "<=": lambda: x <= y,
            ">=": lambda: x >= y,
            "+": lambda: x + y,
            "-": lambda: x - y,
            "*": lambda: x * y,
            "/": lambda: x / y,
            "%": lambda: x % y,
        }[op]()
        if isinstance(result, float) and result.is_integer() and op in "+-*/%":
            return int(result) if abs(result) < 2**53 else result
        return result

    def unary(self) -> Any:
        if self.take("!"):
            value = self.unary()
            value = _resolved(value) if self.live else None
            if self.live and not isinstance(value, bool):
                raise EvalError(f"! needs a bool, got {value!r}")
            return (not value) if self.live else None
        if self.take("-"):
            value = self.unary()
            return -_number(_resolved(value)) if self.live else None
        return self.postfix(self.primary())

    def postfix(self, value: Any) -> Any:
        while True:
            if self.peek(".") and not self.s.startswith("..", self.i):
                self.i += 1
                self.skip()
                name = _IDENT.match(self.s, self.i)
                if not name:
                    raise Unsupported(f"attribute expected at {self.s[self.i : self.i + 20]!r}")
                self.i = name.end()
                value = self._index(value, name.group(0)) if self.live else None
            elif self.take("["):
                key = self.expression()
                self.expect("]")
                value = self._index(value, key) if self.live else None
            else:
                return value

    @staticmethod
    def _index(value: Any, key: Any) -> Any:
        if isinstance(value, _Reference):
            return value.extend(key)
        if isinstance(value, dict) and key in value:
            return value[key]
        if isinstance(value, list) and isinstance(key, int) and 0 <= key < len(value):
            return value[key]
        raise EvalError(f"{value!r} has no element {key!r}")

    def primary(self) -> Any:
        self.skip()
        if self.i >= len(self.s):
            raise Unsupported("unexpected end of expression")
        ch = self.s[self.i]
        if ch == "(":
            self.i += 1
            value = self.expression()
            self.expect(")")
            return value
        if ch == '"':
            self.i += 1
            return self.template(end='"')
        if ch == "[":
            self.i += 1
            return self.sequence()
        if ch == "{":
            self.i += 1
            return self.mapping()
        number = _NUMBER.match(self.s, self.i)
        if number:
            self.i = number.end()
            text = number.group(0)
            return float(text) if ("." in text or "e" in text.lower()) else int(text)
        name = _IDENT.match(self.s, self.i)
        if not name:
            raise Unsupported(f"cannot parse {self.s[self.i : self.i + 30]!r}")
        self.i = name.end()
        word = name.group(0)
        if word in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[word]
        if self.peek("("):
            return self.call(word)
        return self.reference(word)

    def reference(self, root: str) -> Any:
        if not self.live:
            return None
        if root in self.bound:
            return self.bound[root]
        if root == "var":
            return _Reference(["var"], self)
        if root == "local":
            return _Reference(["local"], self)
        return _Reference([root], self)

    def call(self, name: str) -> Any:
        self.expect("(")
        if name in ("can", "try"):
            spans = []
            while not self.take(")"):
                self.skip()
                start = self.i
                live = self.live
                self.live = False
                self.expression()
                self.live = live
                spans.append(_Lazy(self, start, self.i))
                self.take(",")
            if not self.live:
                return None
            return self._can(spans) if name == "can" else self._try(spans)
        args = []
        while not self.take(")"):
            args.append(_resolved(self.expression()))
            self.take(",")
        if not self.live:
            return None
        if name not in FUNCTIONS:
            raise Unsupported(f"function {name}() is not implemented")
        try:
            return FUNCTIONS[name](*args)
        except (TypeError, AttributeError, ValueError, re.error) as exc:
            raise EvalError(f"{name}({args!r}): {exc}") from exc

    @staticmethod
    def _can(spans: list[_Lazy]) -> bool:
        (span,) = spans
        try:
            _resolved(span.value())
        except Unknown:
            raise
        except EvalError:
            return False
        return True

    @staticmethod
    def _try(spans: list[_Lazy]) -> Any:
        for span in spans:
            try:
                return _resolved(span.value())
            except Unknown:
                raise
            except EvalError:
                continue
        raise EvalError("try: no argument could be evaluated")

    def template(self, end: str | None) -> Any:
        """String text up to `end` (a quote, or the end of the text), with ${...} interpolations. A text that is
        only one interpolation yields that value unconverted, as Terraform does."""
        parts: list[Any] = []
        text: list[str] = []
        while True:
            if self.i >= len(self.s):
                if end is not None:
                    raise Unsupported("unterminated string")
                break
            ch = self.s[self.i]
            if end is not None and ch == end:
                self.i += 1
                break
            if self.s.startswith("$${", self.i) or self.s.startswith("%%{", self.i):
                text.append(self.s[self.i + 1 : self.i + 3])
                self.i += 3
            elif self.s.startswith("${", self.i):
                self.i += 2
                if text:
                    parts.append("".join(text))
                    text = []
                parts.append(_Interpolation(_resolved(self.expression())))
                self.expect("}")
            elif self.s.startswith("%{", self.i):
                raise Unsupported("template directives are not implemented")
            elif ch == "\\" and end is not None:
                escaped = self.s[self.i + 1 : self.i + 2]
                text.append({"n": "\n", "t": "\t", '"': '"', "\\": "\\"}.get(escaped, "\\" + escaped))
                self.i += 2
            else:
                text.append(ch)
                self.i += 1
        if text:
            parts.append("".join(text))
        if not self.live:
            return None
        if len(parts) == 1 and isinstance(parts[0], _Interpolation):
            return parts[0].value
        return "".join(p if isinstance(p, str) else _tf_str(p.value) for p in parts)

    def sequence(self) -> Any:
        if self.peek("for"):
            return self.for_expression("]")
        items = []
        while not self.take("]"):
            items.append(_resolved(self.expression()))
            self.take(",")
        return items if self.live else None

    def mapping(self) -> Any:
        if self.peek("for"):
            return self.for_expression("}")
        out: dict[str, Any] = {}
        while not self.take("}"):
            self.skip()
            key_match = _IDENT.match(self.s, self.i)
            if key_match and not self.s.startswith("(", key_match.end()):
                self.i = key_match.end()
                key: Any = key_match.group(0)
            else:
                key = self.expression()
            if not (self.take("=") or self.take(":")):
                raise Unsupported(f"expected = in an object at {self.s[self.i : self.i + 30]!r}")
            value = _resolved(self.expression())
            if self.live:
                out[_tf_str(key)] = value
            self.take(",")
        return out if self.live else None

    def for_expression(self, close: str) -> Any:
        self.expect("for")
        names = []
        while True:
            self.skip()
            name = _IDENT.match(self.s, self.i)
            if not name:
                raise Unsupported("for: variable name expected")
            names.append(name.group(0))
            self.i = name.end()
            if not self.take(","):
                break
        self.expect("in")
        collection = _resolved(self.expression())
        self.expect(":")
        body_start = self.i
        if isinstance(collection, dict):
            pairs = list(collection.items())
        elif isinstance(collection, list):
            pairs = list(enumerate(collection))
        elif not self.live:
            pairs = []
        else:
            raise EvalError(f"for: cannot iterate {collection!r}")
        results: list[Any] = []
        # One parse with evaluation off finds the end of the body; then the body is evaluated per element.
        live = self.live
        self.live = False
        self._for_body(close)
        body_end = self.i
        self.live = live
        if live:
            for key, value in pairs:
                bound = dict(self.bound)
                if len(names) == 2:
                    bound[names[0]], bound[names[1]] = key, value
                else:
                    bound[names[0]] = value
                sub = _Parser(self.s[:body_end], self.scope, bound)
                sub.i = body_start
                item = sub._for_body(close)
                if item is not _SKIP:
                    results.append(item)
        if not live:
            return None
        if close == "]":
            return results
        return {k: v for k, v in results}

    def _for_body(self, close: str) -> Any:
        first = _resolved(self.expression())
        second = None
        if close == "}":
            self.expect("=>")
            second = _resolved(self.expression())
        keep = True
        if self.take("if"):
            condition = self.expression()
            if self.live and not isinstance(condition, bool):
                raise EvalError(f"for: if needs a bool, got {condition!r}")
            keep = condition is True
        self.expect(close)
        if not self.live or not keep:
            return _SKIP
        return (first, second) if close == "}" else first


_SKIP = object()


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


class _Interpolation:
    def __init__(self, value: Any) -> None:
        self.value = value


class _Reference:
    """A reference being built (`var`, `var.x`, `aws_sqs_queue.jobs.url`); resolved once it names a value."""

    def __init__(self, path: list[Any], parser: _Parser) -> None:
        self.path, self.parser = path, parser

    def extend(self, key: Any) -> Any:
        path = [*self.path, key]
        scope = self.parser.scope
        if path[0] == "var" and len(path) == 2:
            if key not in scope.variables:
                raise EvalError(f"var.{key} is not declared")
            return scope.variables[key]
        if path[0] == "local" and len(path) == 2:
            return scope.local(key)
        if path[0] == "path" and path == ["path", "module"]:
            return "."
        if scope.resolve is not None:
            found = scope.resolve(path)
            if found is not _PARTIAL:
                return found
        return _Reference(path, self.parser)


_PARTIAL = object()
PARTIAL = _PARTIAL  # a resolver returns this while the path does not name a value yet


def _resolved(value: Any) -> Any:
    if isinstance(value, _Reference):
        raise Unknown(f"{'.'.join(map(str, value.path))} is not known to the evaluator")
    return value
