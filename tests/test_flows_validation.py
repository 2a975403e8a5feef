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
    (flow(A={"Type": "Fail", "Error": "X", "ErrorPath": "$.e"}), "state A: Error and ErrorPath are mutually exclusive"),
    (flow(A={"Type": "Fail", "CausePath": "cause"}), "state A: CausePath: 'cause' is not a JSONPath"),
    (flow(A={**OK_ACTION, "Handler": "https://x.org/a", "End": True}), "ActionUrl and Handler are mutually exclusive"),
    (flow(A={"Type": "Action", "Handler": "ftp://x", "Parameters": {}, "End": True}), "must be an https:// URL"),
    (flow(A={"Type": "Action", "Handler": {"Type": "Lambda"}, "Parameters": {}, "End": True}),
     "Handler.Type must be 'ActionProvider' or 'RegisteredAPI'"),
    (flow(A={"Type": "Pass", "Parameters": {"x.=": "[i for i in y if i] + foo(y)"}, "End": True}),
     "unknown function 'foo'"),
    (flow(A={"Type": "Pass", "Parameters": {"x.=": "y.append(1)"}, "End": True}), "method 'append' is not available"),
    (flow(A={"Type": "Choice", "Choices": [{"Variable": "$.x", "StringEquals": "a", "NumericEquals": 1, "Next": "A"}]}),
     "needs exactly one comparison operator"),
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


@pytest.mark.parametrize("url", [
    "https://api.funcx.org/automate", "https://api.dev.funcx.org/automate", "https://automate.funcx.org",
])
def test_retired_funcx_urls_name_every_state(url: str) -> None:
    message = problems(flow(
        Tar={"Type": "Action", "ActionUrl": url, "Parameters": {"tasks": []}, "Next": "Untar"},
        Untar={"Type": "Action", "Handler": {"Type": "ActionProvider", "Url": url}, "Parameters": {}, "Next": "Ok"},
        Ok={**OK_ACTION, "End": True},
    ))
    assert "retired ActionUrl used by state(s) Tar, Untar;" in message
    assert "https://compute.actions.globus.org/v3" in message


@pytest.mark.parametrize("parameters, twin", [
    ({"path": "/a", "path.$": "$.p"}, "'path' is also given as a literal"),
    ({"DATA": [{"path.=": "p + '/x'", "path": "/b"}]}, "Parameters.DATA[0].path.=: 'path' is also given as a literal"),
    ({"n.$": "$.n", "n.=": "n + 1"}, "'n' is also given as an expression"),
])
def test_a_key_given_twice_is_refused(parameters: dict, twin: str) -> None:
    assert twin in problems(flow(A={**OK_ACTION, "Parameters": parameters, "End": True}))


def test_valid_definitions_the_service_accepts_are_accepted() -> None:
    """Fail with ErrorPath/CausePath, Handler objects and strings, web-input states (valid, service-only)."""
    validate_definition(flow(
        A={"Type": "Action", "Handler": {"Type": "ActionProvider", "Url": "https://compute.actions.globus.org/v3",
                                         "Scope": "https://auth.globus.org/scopes/x/all"},
           "Parameters": {"endpoint_id": "e", "tasks": []}, "ResultPath": "$.a", "Next": "B"},
        B={"Type": "Action", "Handler": "https://transfer.actions.globus.org/ls", "Parameters": {}, "Next": "R"},
        R={"Type": "Action", "Handler": {"Type": "RegisteredAPI", "Id": "6c54cade-bde5-45c1-bdea-f4bd71dba2cc"},
           "InputPath": "$.a", "Next": "Ask"},
        Ask={"Type": "CreateWebInput", "Parameters": {"InputType": "Selection"}, "ResultPath": "$.w", "Next": "Wait"},
        Wait={"Type": "AwaitWebInput", "Parameters": {"web_input_id.$": "$.w.id"}, "ResultPath": "$.r",
              "Catch": [{"ErrorEquals": ["Flows.WebInputExpired"], "Next": "F"}], "Next": "F"},
        F={"Type": "Fail", "ErrorPath": "$.r.error", "CausePath": "$.r.cause"},
    ))


def test_web_input_states_are_valid_but_not_run_locally() -> None:
    from ptychoflow.flowengine.definition import check_runs_locally

    definition = flow(Ask={"Type": "CreateWebInput", "Parameters": {}, "End": True})
    validate_definition(definition)
    with pytest.raises(FlowDefinitionError, match=r"flow.json: state\(s\) Ask: web-input states need the Globus"):
        check_runs_locally(definition, "flow.json")


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
