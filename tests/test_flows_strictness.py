"""Strictness: definitions that the official Flows definition schema rejects are refused too.

Each case is a pair: a valid state, and the same state with one change that the schema
(globus/flows-ide ``public/schemas/flow_definition_schema.json``) rejects, with the schema rule
it breaks. The valid twin must pass, so each refusal is for that one change, and the message
must name the state.
"""

from __future__ import annotations

import pytest

from ptychoflow.errors import FlowDefinitionError
from ptychoflow.flowengine.definition import successors, validate_definition

TRANSFER = "https://transfer.actions.globus.org/transfer"
ACTION = {"Type": "Action", "ActionUrl": TRANSFER, "Parameters": {"x": 1}, "Next": "Done"}
PASS = {"Type": "Pass", "Next": "Done"}
EVAL = {"Type": "ExpressionEval", "Parameters": {"y.=": "1 + 1"}, "ResultPath": "$.y", "Next": "Done"}
WAIT = {"Type": "Wait", "Seconds": 5, "Next": "Done"}
FAIL = {"Type": "Fail", "Error": "Bad", "Cause": "why"}
RULE = {"Variable": "$.n", "NumericEquals": 10, "Next": "Done"}
CHOICE = {"Type": "Choice", "Choices": [RULE], "Default": "Done"}
CATCH = {"ErrorEquals": ["States.ALL"], "Next": "Done"}


def changed(base: dict, **changes: object) -> dict:
    """``base`` with keys set (or removed, for the value ``...``)."""
    state = {**base, **changes}
    return {k: v for k, v in state.items() if v is not ...}


# (schema rule broken, valid state, rejected state, expected words in the refusal)
CASES = [
    ("ExpressionEvalState.required ResultPath", EVAL, changed(EVAL, ResultPath=...), "needs ResultPath"),
    ("ActionState.ActionUrl pattern ^https://", ACTION, changed(ACTION, ActionUrl="http://transfer.actions.globus.org/transfer"),
     "https:// URL"),
    ("VariableChoiceRuleRoot.NumericEquals integer|number", CHOICE,
     changed(CHOICE, Choices=[{**RULE, "NumericEquals": "10"}]), "NumericEquals must be a number"),
    ("PassState.Result type object", changed(PASS, Result={"a": 1}), changed(PASS, Result="done"), "Result must be an object"),
    ("ActionState.Parameters type object", ACTION, changed(ACTION, Parameters=[{"x": 1}]), "Parameters must be an object"),
    ("VariableChoiceRuleRoot.TimestampEquals format date-time", changed(CHOICE, Choices=[
        {"Variable": "$.t", "TimestampEquals": "2024-05-01T12:00:00Z", "Next": "Done"}]),
     changed(CHOICE, Choices=[{"Variable": "$.t", "TimestampEquals": "yesterday", "Next": "Done"}]),
     "TimestampEquals must be an ISO 8601 timestamp"),
    ("Catcher additionalProperties false", changed(ACTION, Catch=[CATCH]),
     changed(ACTION, Catch=[{**CATCH, "Comment": "retry later"}]), "Catch[0]: unknown field 'Comment'"),
    ("Catcher.required Next", changed(ACTION, Catch=[CATCH]), changed(ACTION, Catch=[{"ErrorEquals": ["States.ALL"]}]),
     "Catch[0].Next names None"),
    ("VariableChoiceRuleRoot additionalProperties false", CHOICE, changed(CHOICE, Choices=[{**RULE, "Comment": "ten"}]),
     "unknown field 'Comment' in a rule"),
    ("ChoiceState.required Choices", CHOICE, changed(CHOICE, Choices=...), "needs Choices"),
    ("ChoiceState.Default type string", CHOICE, changed(CHOICE, Default=1), "Default must be a string"),
    ("WaitState.Seconds type integer (a string)", WAIT, changed(WAIT, Seconds="10"), "Seconds must be an integer"),
    ("WaitState.Seconds type integer (a fraction)", WAIT, changed(WAIT, Seconds=1.5), "Seconds must be an integer"),
    ("ActionState.WaitTime type integer", changed(ACTION, WaitTime=60), changed(ACTION, WaitTime="60"),
     "WaitTime must be an integer"),
    ("ActionState.ExceptionOnActionFailure type boolean", changed(ACTION, ExceptionOnActionFailure=False),
     changed(ACTION, ExceptionOnActionFailure="false"), "ExceptionOnActionFailure must be true or false"),
    ("FailState.Cause type string", FAIL, changed(FAIL, Cause={"why": "x"}), "Cause must be a string"),
    ("FailState additionalProperties false", FAIL, changed(FAIL, Next="Done"), "unknown field 'Next' for a Fail state"),
    ("ActionProviderHandler.Url pattern ^https://", changed(ACTION, ActionUrl=..., Handler={"Type": "ActionProvider", "Url": TRANSFER}),
     changed(ACTION, ActionUrl=..., Handler={"Type": "ActionProvider", "Url": "http://example.org/ap"}),
     "Handler.Url must be an https:// URL"),
    ("RegisteredAPIHandler.Id format uuid", changed(ACTION, ActionUrl=..., Handler={
        "Type": "RegisteredAPI", "Id": "6c54cade-bde5-45c1-bdea-f4bd71dba2cc"}),
     changed(ACTION, ActionUrl=..., Handler={"Type": "RegisteredAPI", "Id": "my-api"}), "Handler.Id must be the UUID"),
    ("VariableChoiceRuleRoot.BooleanEquals type boolean", changed(CHOICE, Choices=[
        {"Variable": "$.ok", "BooleanEquals": True, "Next": "Done"}]),
     changed(CHOICE, Choices=[{"Variable": "$.ok", "BooleanEquals": "true", "Next": "Done"}]),
     "BooleanEquals must be true or false"),
    ("AndChoiceRule.And minItems 1", changed(CHOICE, Choices=[{"And": [{"Variable": "$.n", "IsPresent": True}], "Next": "Done"}]),
     changed(CHOICE, Choices=[{"And": [], "Next": "Done"}]), "Choices[0].And must be a non-empty list"),
    ("ExpressionEvalState additionalProperties false (no InputPath)", EVAL, changed(EVAL, InputPath="$.n"),
     "unknown field 'InputPath' for a ExpressionEval state"),
    ("PassState.End type boolean", changed(PASS, Next=..., End=True), changed(PASS, Next=..., End="true"),
     "End must be true or false"),
    ("state oneOf: Type must be one of the state types", PASS, changed(PASS, Type="Parallel"), "unknown state Type 'Parallel'"),
    ("ActionState.Comment type string", ACTION, changed(ACTION, Comment=7), "Comment must be a string"),
]


def definition(state: dict) -> dict:
    """A flow whose start state is ``state``, plus the ``Done`` state it may go to."""
    states = {"Checked": state}
    if "Done" in successors(state):
        states["Done"] = {"Type": "Pass", "End": True}
    return {"StartAt": "Checked", "States": states}


def test_there_are_at_least_twenty_cases() -> None:
    assert len(CASES) >= 20
    assert len({rule for rule, *_ in CASES}) == len(CASES)


@pytest.mark.parametrize("rule, good, bad, expected", CASES, ids=[c[0] for c in CASES])
def test_schema_rejections_are_refused_naming_the_state(rule: str, good: dict, bad: dict, expected: str) -> None:
    validate_definition(definition(good), source="flow.json")  # the valid twin passes
    with pytest.raises(FlowDefinitionError) as caught:
        validate_definition(definition(bad), source="flow.json")
    lines = str(caught.value).splitlines()
    assert any(line.startswith("flow.json: state Checked: ") and expected in line for line in lines), lines
