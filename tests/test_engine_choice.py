"""Choice rules: every operator, the ...Path variants, And/Or/Not, Default."""

from __future__ import annotations

import pytest

from engine_helpers import chain, run_flow
from ptychoflow.flowengine.choice import COMPARISON_OPERATORS, choose, evaluate_rule
from ptychoflow.flowengine.errors import StateError

DOC = {"s": "scan_0001.h5", "n": 5, "f": 2.5, "b": True, "z": None, "t": "2026-01-02T03:04:05Z",
       "other": {"s": "scan_0001.h5", "n": 5, "b": True, "t": "2026-01-02T03:04:05+00:00", "m": "scan_*.h5"}}


@pytest.mark.parametrize("operator, variable, operand, expected", [
    ("StringEquals", "$.s", "scan_0001.h5", True),
    ("StringEquals", "$.n", "5", False),  # type mismatch is false
    ("StringLessThan", "$.s", "scan_0002.h5", True),
    ("StringGreaterThan", "$.s", "scan_0000.h5", True),
    ("StringLessThanEquals", "$.s", "scan_0001.h5", True),
    ("StringGreaterThanEquals", "$.s", "scan_0002.h5", False),
    ("StringMatches", "$.s", "scan_*.h5", True),
    ("StringMatches", "$.s", "scan_\\*.h5", False),
    ("NumericEquals", "$.n", 5, True),
    ("NumericEquals", "$.b", 1, False),  # booleans are not numbers
    ("NumericLessThan", "$.f", 3, True),
    ("NumericGreaterThan", "$.f", 3, False),
    ("NumericLessThanEquals", "$.n", 5, True),
    ("NumericGreaterThanEquals", "$.n", 6, False),
    ("BooleanEquals", "$.b", True, True),
    ("BooleanEquals", "$.n", True, False),
    ("TimestampEquals", "$.t", "2026-01-02T03:04:05+00:00", True),
    ("TimestampLessThan", "$.t", "2026-01-03T00:00:00Z", True),
    ("TimestampGreaterThan", "$.t", "2026-01-03T00:00:00Z", False),
    ("TimestampLessThanEquals", "$.t", "2026-01-02T03:04:05Z", True),
    ("TimestampGreaterThanEquals", "$.t", "2027-01-01T00:00:00Z", False),
    ("TimestampEquals", "$.s", "2026-01-02T03:04:05Z", False),
])
def test_comparisons(operator: str, variable: str, operand: object, expected: bool) -> None:
    assert evaluate_rule({"Variable": variable, operator: operand}, DOC) is expected


@pytest.mark.parametrize("operator, variable, operand, expected", [
    ("StringEqualsPath", "$.s", "$.other.s", True),
    ("StringMatchesPath", "$.s", "$.other.m", True),
    ("NumericEqualsPath", "$.n", "$.other.n", True),
    ("NumericLessThanPath", "$.f", "$.other.n", True),
    ("BooleanEqualsPath", "$.b", "$.other.b", True),
    ("TimestampEqualsPath", "$.t", "$.other.t", True),
    ("NumericGreaterThanPath", "$.n", "$.missing", False),
])
def test_path_variants(operator: str, variable: str, operand: str, expected: bool) -> None:
    assert evaluate_rule({"Variable": variable, operator: operand}, DOC) is expected


def test_every_comparison_operator_has_a_path_variant() -> None:
    plain = {op for op in COMPARISON_OPERATORS if not op.endswith("Path")}
    assert len(plain) == 17 and all(f"{op}Path" in COMPARISON_OPERATORS for op in plain)


@pytest.mark.parametrize("operator, variable, flag, expected", [
    ("IsPresent", "$.s", True, True), ("IsPresent", "$.nope", True, False), ("IsPresent", "$.nope", False, True),
    ("IsNull", "$.z", True, True), ("IsNull", "$.s", True, False), ("IsNull", "$.nope", True, False),
    ("IsNumeric", "$.f", True, True), ("IsNumeric", "$.b", True, False),
    ("IsString", "$.s", True, True), ("IsString", "$.n", False, True),
    ("IsBoolean", "$.b", True, True), ("IsBoolean", "$.s", True, False),
    ("IsTimestamp", "$.t", True, True), ("IsTimestamp", "$.s", True, False),
])
def test_type_tests(operator: str, variable: str, flag: bool, expected: bool) -> None:
    assert evaluate_rule({"Variable": variable, operator: flag}, DOC) is expected


def test_missing_variable_is_false_for_comparisons() -> None:
    assert evaluate_rule({"Variable": "$.nope", "StringEquals": "x"}, DOC) is False


def test_and_or_not() -> None:
    yes = {"Variable": "$.n", "NumericEquals": 5}
    no = {"Variable": "$.b", "BooleanEquals": False}
    assert evaluate_rule({"And": [yes, {"Not": no}]}, DOC)
    assert not evaluate_rule({"And": [yes, no]}, DOC)
    assert evaluate_rule({"Or": [no, yes]}, DOC)
    assert not evaluate_rule({"Or": [no, {"Not": yes}]}, DOC)


def test_default_and_no_match() -> None:
    state = {"Choices": [{"Variable": "$.n", "NumericGreaterThan": 10, "Next": "Big"}], "Default": "Small"}
    assert choose(state, DOC) == "Small"
    with pytest.raises(StateError, match="States.NoChoiceMatched"):
        choose({"Choices": state["Choices"]}, DOC)


def test_choice_in_a_run(tmp_path) -> None:
    flow = chain(
        ("Pick", {"Type": "Choice", "Choices": [
            {"And": [{"Variable": "$.n", "NumericGreaterThanEquals": 5}, {"Variable": "$.s", "StringMatches": "*.h5"}],
             "Next": "Yes"}], "Default": "No"}),
        ("Yes", {"Type": "Pass", "Parameters": {"took": "yes"}, "ResultPath": "$.r", "End": True}),
        ("No", {"Type": "Pass", "Parameters": {"took": "no"}, "ResultPath": "$.r", "End": True}),
    )
    run, _ = run_flow(tmp_path, flow, {"n": 5, "s": "a.h5"})
    assert run.output["r"] == {"took": "yes"}
    assert [s.name for s in run.timeline] == ["Pick", "Yes"]
