"""Definition validation: everything the Flows service would reject, one line per problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ptychoflow.flowengine.definition import load_definition, load_schema, validate_definition
from ptychoflow.errors import FlowDefinitionError
from ptychoflow.resources import flows_dir

OK_ACTION = {"Type": "Action", "ActionUrl": "https://transfer.actions.globus.org/transfer", "Parameters": {}}


def problems(definition: object) -> str:
    with pytest.raises(FlowDefinitionError) as caught:
        validate_definition(definition, source="flow.json")
    return str(caught.value)


def flow(**states: dict) -> dict:
    return {"StartAt": next(iter(states)), "States": states}


@pytest.mark.parametrize("definition, expected", [
    ({"States": {"A": {"Type": "Pass", "End": True}}}, "flow.json: (root): StartAt is missing"),
    ({"StartAt": "Z", "States": {"A": {"Type": "Pass", "End": True}}}, "StartAt names 'Z', which is not a state"),
    ({"StartAt": "A"}, "States is missing or empty"),
    (flow(A={"Type": "Parallel", "End": True}), "flow.json: state A: unknown state Type 'Parallel'"),
    (flow(A={"Type": "Pass", "End": True, "OutputPath": "$.x"}), "state A: OutputPath is not supported"),
    (flow(A={"Type": "Pass", "End": True, "Resource": "arn:x"}), "state A: unknown field 'Resource' for a Pass state"),
    (flow(A={"Type": "Pass"}), "state A: needs Next or End"),
    (flow(A={"Type": "Pass", "Next": "A", "End": True}), "state A: has both Next and End"),
    (flow(A={"Type": "Pass", "End": False}), "state A: End must be true"),
    (flow(A={"Type": "Pass", "Next": "Nowhere"}), "state A: Next names 'Nowhere', which is not a state"),
    (flow(A={"Type": "Pass", "End": True}, B={"Type": "Pass", "End": True}), "state B: unreachable from StartAt 'A'"),
    (flow(A={"Type": "Pass", "InputPath": "x.y", "End": True}), "state A: InputPath: 'x.y' is not a JSONPath"),
    (flow(A={"Type": "Pass", "ResultPath": "$.a[", "End": True}), "state A: ResultPath:"),
    (flow(A={"Type": "Pass", "ResultPath": "$.a[*]", "End": True}), "is not a reference path"),
    (flow(A={"Type": "Pass", "Parameters": {"x": {"y.$": "nope"}}, "End": True}), "state A: Parameters.x.y.$: 'nope' is not a JSONPath"),
    (flow(A={"Type": "Pass", "Parameters": {"y.=": "1 +"}, "End": True}), "state A: Parameters.y.=: cannot parse expression"),
    (flow(A={"Type": "Action", "Parameters": {}, "End": True}), "state A: Action needs an ActionUrl"),
    (flow(A={"Type": "Action", "ActionUrl": "https://x.org/a", "End": True}), "state A: Action needs Parameters or InputPath"),
    (flow(A={"Type": "Pass", "ResultPath": "$._context.x", "End": True}), "state A: ResultPath: $._context is read-only"),
    (flow(A={**OK_ACTION, "WaitTime": 0, "End": True}), "WaitTime must be a positive integer"),
    (flow(A={**OK_ACTION, "ExceptionOnActionFailure": "no", "End": True}), "ExceptionOnActionFailure must be true or false"),
    (flow(A={**OK_ACTION, "InputPath": "$", "End": True}), "Parameters and InputPath are mutually exclusive"),
    (flow(A={**OK_ACTION, "Catch": [{"ErrorEquals": [], "Next": "A"}], "End": True}), "Catch[0].ErrorEquals must be a non-empty list"),
    (flow(A={**OK_ACTION, "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "B"}], "End": True}), "Catch[0].Next names 'B'"),
    (flow(A={"Type": "Wait", "End": True}), "Wait needs exactly one of Seconds"),
    (flow(A={"Type": "Wait", "Seconds": 1, "Timestamp": "2020-01-01T00:00:00Z", "End": True}), "Wait needs exactly one of"),
    (flow(A={"Type": "Wait", "Timestamp": "tomorrow", "End": True}), "is not an ISO 8601 timestamp"),
    (flow(A={"Type": "ExpressionEval", "End": True}), "needs Parameters (required in ExpressionEval states)"),
    (flow(A={"Type": "Choice", "Choices": []}), "Choice needs a non-empty Choices list"),
    (flow(A={"Type": "Choice", "Choices": [{"Variable": "$.x", "Next": "A"}]}), "Choices[0]: needs exactly one comparison operator"),
    (flow(A={"Type": "Choice", "Choices": [{"Variable": "$.x", "StringEquals": "a", "Next": "A"}], "Next": "A"}),
     "unknown field 'Next' for a Choice state"),
    (flow(A={"Type": "Choice", "Choices": [{"Variable": "x", "StringEquals": "a", "Next": "A"}]}), "Choices[0].Variable: 'x' is not a JSONPath"),
    (flow(A={"Type": "Choice", "Choices": [{"Variable": "$.x", "StringEqualsPath": "bad", "Next": "A"}]}), "Choices[0].StringEqualsPath"),
    (flow(A={"Type": "Choice", "Choices": [{"StringEquals": "a", "Next": "A"}]}), "Choices[0]: needs a Variable"),
    (flow(A={"Type": "Choice", "Choices": [{"Variable": "$.x", "BooleanEquals": True, "Next": "Q"}], "Default": "R"}),
     "Default names 'R'"),
    (flow(A={"Type": "Choice", "Choices": [{"And": [{"Variable": "$.x", "IsPresent": True, "Next": "A"}], "Next": "A"}]}),
     "a nested rule cannot have Next"),
    (flow(A={"Type": "Fail", "Error": "X", "End": True}), "unknown field 'End' for a Fail state"),
])
def test_rejections(definition: dict, expected: str) -> None:
    assert expected in problems(definition)


def test_retired_action_urls_name_the_states() -> None:
    message = problems(flow(
        Old1={"Type": "Action", "ActionUrl": "https://actions.automate.globus.org/transfer/transfer", "Parameters": {}, "Next": "Old2"},
        Old2={"Type": "Action", "ActionUrl": "https://actions.globus.org/transfer/transfer", "Parameters": {}, "Next": "New"},
        New={**OK_ACTION, "End": True},
    ))
    assert "retired ActionUrl used by state(s) Old1, Old2" in message
    assert "New" not in message.split("state(s)")[1].split(";")[0]


def test_all_problems_are_reported_one_per_line() -> None:
    message = problems(flow(A={"Type": "Pass", "OutputPath": "$"}, B={"Type": "Nope"}))
    lines = message.splitlines()
    assert len(lines) == 4 and all(line.startswith("flow.json: ") for line in lines)


def test_a_good_definition_passes() -> None:
    validate_definition(flow(
        A={**OK_ACTION, "WaitTime": 60, "ResultPath": "$.a", "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "F"}],
           "Next": "C"},
        C={"Type": "Choice", "Choices": [{"Not": {"Variable": "$.a.status", "StringEquals": "x"}, "Next": "W"}],
           "Default": "F"},
        W={"Type": "Wait", "SecondsPath": "$.n", "Next": "E"},
        E={"Type": "ExpressionEval", "Parameters": {"x.=": "a.status + 'y'"}, "ResultPath": "$.e", "End": True},
        F={"Type": "Fail", "Error": "E", "Cause": "c"},
    ))


def test_bad_json_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"StartAt": "A",\n "States": }')
    with pytest.raises(FlowDefinitionError, match=r"broken.json: \(json\): line 2"):
        load_definition(path)


BUNDLED = sorted(p for p in flows_dir().glob("*.json") if not p.name.endswith(".schema.json"))


def test_the_expected_flows_are_bundled() -> None:
    assert {p.stem for p in BUNDLED} >= {"reconstruct_and_train", "reconstruct", "deploy_model"}


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.stem)
def test_bundled_flows_validate_and_have_schemas(path: Path) -> None:
    definition = load_definition(path)
    schema = load_schema(path)
    assert schema["type"] == "object" and schema["required"]
    urls = {s.get("ActionUrl") for s in definition["States"].values()} - {None}
    assert urls <= {"https://transfer.actions.globus.org/transfer", "https://compute.actions.globus.org/v3"}
    for name, state in definition["States"].items():
        if state["Type"] == "Action":
            assert state["Catch"][0]["ErrorEquals"] == ["States.ALL"], name
            assert state["WaitTime"] >= 600, name


def test_nothing_site_specific_is_hard_coded() -> None:
    text = (flows_dir() / "reconstruct_and_train.json").read_text()
    for forbidden in ("local-hpc", "local-edge", "/home/", "beamline\"", "uuid"):
        assert forbidden not in text


def test_cli_validate_reports_problems_in_one_line_each(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from ptychoflow.cli.main import cli

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(flow(A={"Type": "Pass", "OutputPath": "$", "Next": "Z"})))
    result = CliRunner().invoke(cli, ["flows", "validate", str(bad)])
    assert result.exit_code != 0
    assert isinstance(result.exception, FlowDefinitionError)
    assert str(result.exception).splitlines() == [
        f"{bad}: state A: OutputPath is not supported by Globus Flows (use ResultPath)",
        f"{bad}: state A: Next names 'Z', which is not a state",
    ]
    ok = CliRunner().invoke(cli, ["flows", "validate"])
    assert ok.exit_code == 0 and ok.output.count("ok  ") == len(BUNDLED)


def test_flows_deploy_is_idempotent_on_the_local_backend(tmp_path):
    """`flows deploy` stores every bundled flow; a second deploy changes nothing."""
    import json as _json

    from click.testing import CliRunner

    from ptychoflow.cli.flows import flows
    from ptychoflow.profile import write_local_profile

    write_local_profile(tmp_path)
    runner = CliRunner()
    first = runner.invoke(flows, ["deploy", "--json", "--profile", str(tmp_path)])
    assert first.exit_code == 0, first.output
    deployed = _json.loads(first.output)
    assert {d["title"] for d in deployed} == {"reconstruct_and_train", "reconstruct", "deploy_model"}
    second = _json.loads(runner.invoke(flows, ["deploy", "--json", "--profile", str(tmp_path)]).output)
    assert second == deployed
