"""Choice rules: every comparison operator of the Flows language, and And/Or/Not.

A rule compares the value at ``Variable`` with a literal operand, or (``...Path``
variants) with the value at another path. Type mismatches compare as false, as in the
service; a missing ``Variable`` is false for every operator except ``IsPresent``.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, Callable

from ptychoflow.flowengine.errors import runtime_error
from ptychoflow.flowengine.paths import get_path, has_path


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_timestamp(value: Any) -> datetime | None:
    """An aware ISO 8601 timestamp (``Z`` allowed; naive means UTC), or None if not one."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _typed(check: Callable[[Any], Any], compare: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    """Apply ``compare`` only when both sides pass ``check`` (converted by it if it converts)."""

    def run(left: Any, right: Any) -> bool:
        a, b = check(left), check(right)
        if a is None or a is False or b is None or b is False:
            return False
        a = left if a is True else a
        b = right if b is True else b
        try:
            return compare(a, b)
        except TypeError:
            return False

    return run


_string = lambda v: isinstance(v, str)  # noqa: E731
_number = _is_number
_boolean = lambda v: isinstance(v, bool)  # noqa: E731


@lru_cache(maxsize=512)
def _glob(pattern: str) -> re.Pattern[str]:
    """StringMatches: ``*`` is a wildcard, ``\\*`` a literal star."""
    parts = re.split(r"(\\\*|\*)", pattern)
    regex = "".join(".*" if p == "*" else re.escape("*") if p == "\\*" else re.escape(p) for p in parts)
    return re.compile(f"^{regex}$", re.DOTALL)


_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "StringEquals": _typed(_string, lambda a, b: a == b),
    "StringLessThan": _typed(_string, lambda a, b: a < b),
    "StringGreaterThan": _typed(_string, lambda a, b: a > b),
    "StringLessThanEquals": _typed(_string, lambda a, b: a <= b),
    "StringGreaterThanEquals": _typed(_string, lambda a, b: a >= b),
    "StringMatches": _typed(_string, lambda a, b: bool(_glob(b).match(a))),
    "NumericEquals": _typed(_number, lambda a, b: a == b),
    "NumericLessThan": _typed(_number, lambda a, b: a < b),
    "NumericGreaterThan": _typed(_number, lambda a, b: a > b),
    "NumericLessThanEquals": _typed(_number, lambda a, b: a <= b),
    "NumericGreaterThanEquals": _typed(_number, lambda a, b: a >= b),
    "BooleanEquals": _typed(_boolean, lambda a, b: a == b),
    "TimestampEquals": _typed(parse_timestamp, lambda a, b: a == b),
    "TimestampLessThan": _typed(parse_timestamp, lambda a, b: a < b),
    "TimestampGreaterThan": _typed(parse_timestamp, lambda a, b: a > b),
    "TimestampLessThanEquals": _typed(parse_timestamp, lambda a, b: a <= b),
    "TimestampGreaterThanEquals": _typed(parse_timestamp, lambda a, b: a >= b),
}
_TYPE_TESTS: dict[str, Callable[[Any], bool]] = {
    "IsNull": lambda v: v is None,
    "IsNumeric": _is_number,
    "IsString": _string,
    "IsBoolean": _boolean,
    "IsTimestamp": lambda v: parse_timestamp(v) is not None,
}
COMPARISON_OPERATORS = frozenset(_COMPARISONS) | {f"{k}Path" for k in _COMPARISONS}
STRING_OPERATORS = frozenset(k for k in _COMPARISONS if k.startswith("String"))
NUMERIC_OPERATORS = frozenset(k for k in _COMPARISONS if k.startswith("Numeric"))
TIMESTAMP_OPERATORS = frozenset(k for k in _COMPARISONS if k.startswith("Timestamp"))
BOOLEAN_OPERATORS = frozenset({"BooleanEquals"}) | frozenset(_TYPE_TESTS) | {"IsPresent"}  # operand: true|false
TYPE_OPERATORS = frozenset(_TYPE_TESTS) | {"IsPresent"}
ALL_OPERATORS = COMPARISON_OPERATORS | TYPE_OPERATORS


def rule_operator(rule: dict[str, Any]) -> str | None:
    """The one comparison operator key of a rule (None for And/Or/Not)."""
    found = [key for key in rule if key in ALL_OPERATORS]
    return found[0] if len(found) == 1 else None


def evaluate_rule(rule: dict[str, Any], document: Any) -> bool:
    """True when ``rule`` matches ``document``."""
    if "And" in rule:
        return all(evaluate_rule(sub, document) for sub in rule["And"])
    if "Or" in rule:
        return any(evaluate_rule(sub, document) for sub in rule["Or"])
    if "Not" in rule:
        return not evaluate_rule(rule["Not"], document)
    op = rule_operator(rule)
    if op is None:
        raise runtime_error(f"Choice rule {rule!r} has no single comparison operator")
    variable = rule.get("Variable")
    present = has_path(document, variable)
    if op == "IsPresent":
        return present == bool(rule[op])
    if not present:
        return False
    value = get_path(document, variable)
    if op in _TYPE_TESTS:
        return _TYPE_TESTS[op](value) == bool(rule[op])
    operand = rule[op]
    if op.endswith("Path"):
        if not has_path(document, operand):
            return False
        operand = get_path(document, operand)
        op = op[: -len("Path")]
    return _COMPARISONS[op](value, operand)


def choose(state: dict[str, Any], document: Any) -> str:
    """Name of the next state for a Choice state; no match and no Default is an error."""
    for rule in state.get("Choices", []):
        if evaluate_rule(rule, document):
            return rule["Next"]
    if "Default" in state:
        return state["Default"]
    from ptychoflow.flowengine.errors import StateError

    raise StateError("States.NoChoiceMatched", "no Choice rule matched and there is no Default")
