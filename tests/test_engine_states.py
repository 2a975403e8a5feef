"""State execution: Pass, ExpressionEval, Wait, Fail, Action (ResultPath, InputPath,
WaitTime, ExceptionOnActionFailure, Catch), `$._context`, and runtime errors."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pytest

from engine_helpers import FAIL_URL, TEST_URL, chain, make_env, run_flow
from ptychoflow.flowengine.providers.base import FunctionProvider
from ptychoflow.flowengine.providers.registry import register_provider, unregister_provider

SLOW_URL = "https://test.example.org/slow"


def test_pass_result_path_defaults_to_replacing_the_whole_state(tmp_path) -> None:
    run, _ = run_flow(tmp_path, chain(("P", {"Type": "Pass", "Parameters": {"only": 1}})), {"keep": "me"})
    assert run.status.value == "SUCCEEDED"
    assert run.output == {"only": 1}


def test_pass_without_parameters_keeps_state_and_input_path_selects(tmp_path) -> None:
    flow = chain(
        ("Same", {"Type": "Pass"}),
        ("Copy", {"Type": "Pass", "InputPath": "$.a.b", "ResultPath": "$.copied"}),
    )
    run, _ = run_flow(tmp_path, flow, {"a": {"b": [1, 2]}})
    assert run.output == {"a": {"b": [1, 2]}, "copied": [1, 2]}


def test_pass_result_is_a_literal(tmp_path) -> None:
    run, _ = run_flow(tmp_path, chain(("P", {"Type": "Pass", "Result": {"x.$": "$.lit"}, "ResultPath": "$.r"})), {"a": 1})
    assert run.output == {"a": 1, "r": {"x.$": "$.lit"}}


def test_expression_eval_and_context(tmp_path) -> None:
    flow = chain(("E", {"Type": "ExpressionEval", "ResultPath": "$.e", "Parameters": {
        "file.=": "pathsplit(path)[1]", "run.$": "$._context.run_id", "user.=": "_context.username",
        "flow.$": "$._context.flow_id", "literal": {"x.$": "$.n"}}}))
    run, _ = run_flow(tmp_path, flow, {"path": "/a/b.h5", "n": 2})
    assert run.output["e"] == {"file": "b.h5", "run": run.run_id, "user": "tester", "flow": run.flow_id,
                               "literal": {"x": 2}}
    assert "_context" not in run.output


def test_missing_dollar_path_fails_the_run_with_the_state_and_path(tmp_path) -> None:
    run, _ = run_flow(tmp_path, chain(("P", {"Type": "Pass", "Parameters": {"x.$": "$.absent"}})), {})
    assert run.status.value == "FAILED"
    assert "P: States.Runtime" in run.error and "$.absent not found" in run.error
    assert run.timeline[-1].status == "FAILED"


def test_wait_seconds_seconds_path_and_timestamp(tmp_path) -> None:
    future = (datetime.now(timezone.utc) + timedelta(seconds=1.3)).isoformat()
    flow = chain(
        ("W1", {"Type": "Wait", "Seconds": 1}),  # the schema allows whole seconds only
        ("W2", {"Type": "Wait", "SecondsPath": "$.pause"}),
        ("W3", {"Type": "Wait", "Timestamp": "2000-01-01T00:00:00Z"}),
        ("W4", {"Type": "Wait", "TimestampPath": "$.until"}),
    )
    started = time.time()
    run, _ = run_flow(tmp_path, flow, {"pause": 0.1, "until": future})
    assert run.status.value == "SUCCEEDED"
    durations = {s.name: s.duration for s in run.timeline}
    assert durations["W1"] >= 0.99 and durations["W2"] >= 0.09 and durations["W3"] < 0.1
    assert time.time() - started >= 1.3


def test_fail_state(tmp_path) -> None:
    run, backend = run_flow(tmp_path, chain(("Stop", {"Type": "Fail", "Error": "NoScan", "Cause": "nothing found"})))
    assert run.status.value == "FAILED" and run.error == "NoScan: nothing found"
    assert backend.get_run_log(run.run_id)[-1]["code"] == "FlowFailed"


def test_action_result_has_the_provider_shape(tmp_path) -> None:
    flow = chain(("A", {"Type": "Action", "ActionUrl": TEST_URL, "Parameters": {"v.$": "$.v"}, "ResultPath": "$.A"}))
    run, _ = run_flow(tmp_path, flow, {"v": 7})
    result = run.output["A"]
    assert result["status"] == "SUCCEEDED" and result["details"] == {"echo": {"v": 7}}
    assert {"action_id", "start_time", "completion_time", "display_status"} <= set(result)


def test_action_input_path_sends_part_of_the_state(tmp_path) -> None:
    flow = chain(("A", {"Type": "Action", "ActionUrl": TEST_URL, "InputPath": "$.req", "ResultPath": "$.A"}))
    run, _ = run_flow(tmp_path, flow, {"req": {"x": 1}})
    assert run.output["A"]["details"] == {"echo": {"x": 1}}


def test_action_failure_raises_by_default(tmp_path) -> None:
    run, _ = run_flow(tmp_path, chain(("A", {"Type": "Action", "ActionUrl": FAIL_URL, "Parameters": {"k": 1}})))
    assert run.status.value == "FAILED" and "ActionFailedException" in run.error


def test_exception_on_action_failure_false_continues(tmp_path) -> None:
    flow = chain(
        ("A", {"Type": "Action", "ActionUrl": FAIL_URL, "Parameters": {"k": 1}, "ResultPath": "$.A",
               "ExceptionOnActionFailure": False}),
        ("Check", {"Type": "Choice", "Choices": [{"Variable": "$.A.status", "StringEquals": "FAILED", "Next": "Handled"}],
                   "Default": "Boom"}),
        ("Handled", {"Type": "Pass", "End": True}),
        ("Boom", {"Type": "Fail", "Error": "X"}),
    )
    run, _ = run_flow(tmp_path, flow)
    assert run.status.value == "SUCCEEDED"
    assert run.output["A"]["details"] == {"why": {"k": 1}}


@pytest.mark.parametrize("errors", [["States.ALL"], ["ActionFailedException"], ["Other", "ActionFailedException"]])
def test_catch_routes_with_its_own_result_path(tmp_path, errors: list[str]) -> None:
    flow = chain(
        ("A", {"Type": "Action", "ActionUrl": FAIL_URL, "Parameters": {"k": 1}, "ResultPath": "$.A",
               "Catch": [{"ErrorEquals": errors, "ResultPath": "$.caught", "Next": "Recover"}], "Next": "Unreached"}),
        ("Unreached", {"Type": "Pass", "End": True}),
        ("Recover", {"Type": "Pass", "End": True}),
    )
    run, _ = run_flow(tmp_path, flow, {"keep": 1})
    assert run.status.value == "SUCCEEDED"
    assert run.output["keep"] == 1 and run.output["caught"]["Error"] == "ActionFailedException"
    assert json.loads(run.output["caught"]["Cause"])["details"] == {"why": {"k": 1}}
    assert [(s.name, s.status) for s in run.timeline] == [("A", "FAILED"), ("Recover", "SUCCEEDED")]


def test_catch_that_does_not_match_fails_the_run(tmp_path) -> None:
    flow = chain(
        ("A", {"Type": "Action", "ActionUrl": FAIL_URL, "Parameters": {},
               "Catch": [{"ErrorEquals": ["ActionTimeout"], "Next": "Recover"}]}),
        ("Recover", {"Type": "Pass", "End": True}),
    )
    run, _ = run_flow(tmp_path, flow)
    assert run.status.value == "FAILED"


def test_catch_without_result_path_replaces_the_state(tmp_path) -> None:
    flow = chain(
        ("A", {"Type": "Action", "ActionUrl": FAIL_URL, "Parameters": {},
               "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Recover"}]}),
        ("Recover", {"Type": "Pass", "End": True}),
    )
    run, _ = run_flow(tmp_path, flow, {"gone": True})
    assert set(run.output) == {"Error", "Cause"}


def test_unknown_action_url_is_action_unable_to_run(tmp_path) -> None:
    flow = chain(
        ("A", {"Type": "Action", "ActionUrl": "https://nowhere.example.org/x", "Parameters": {},
               "Catch": [{"ErrorEquals": ["ActionUnableToRun"], "ResultPath": "$.err", "Next": "Recover"}]}),
        ("Recover", {"Type": "Pass", "End": True}),
    )
    run, _ = run_flow(tmp_path, flow)
    assert run.output["err"]["Error"] == "ActionUnableToRun"


def test_wait_time_timeout_is_action_timeout(tmp_path) -> None:
    register_provider(SLOW_URL, lambda env: FunctionProvider(env, lambda body: time.sleep(3) or {}))
    try:
        flow = chain(
            ("A", {"Type": "Action", "ActionUrl": SLOW_URL, "Parameters": {}, "WaitTime": 1,
                   "Catch": [{"ErrorEquals": ["ActionTimeout"], "ResultPath": "$.err", "Next": "Late"}]}),
            ("Late", {"Type": "Pass", "End": True}),
        )
        started = time.time()
        run, _ = run_flow(tmp_path, flow)
        assert run.output["err"]["Error"] == "ActionTimeout"
        last_poll = json.loads(run.output["err"]["Cause"])  # the most recent status, as the service reports
        assert last_poll["status"] == "ACTIVE" and "WaitTime 1 s" in last_poll["description"]
        assert 0.9 <= time.time() - started < 2.5
    finally:
        unregister_provider(SLOW_URL)


def test_cancel_ends_an_active_run(tmp_path) -> None:
    from engine_helpers import register_test_providers
    from ptychoflow.backends.local import LocalBackend
    from ptychoflow.flowengine.worker import Engine

    register_test_providers()
    env = make_env(tmp_path)
    flow_file = tmp_path / "wait.json"
    flow_file.write_text(json.dumps(chain(("W", {"Type": "Wait", "Seconds": 30}))))
    backend = LocalBackend(env)
    run = backend.start_run(backend.deploy_flow(flow_file), {})
    engine = Engine(env)
    engine.tick()
    assert backend.get_run(run.run_id).timeline[0].status == "ACTIVE"
    assert backend.cancel_run(run.run_id).status.value == "ENDED"
    engine.tick()
    info = backend.get_run(run.run_id)
    assert info.status.value == "ENDED" and info.timeline[0].error == "cancelled"
    engine.close()


def test_input_is_checked_against_the_schema(tmp_path) -> None:
    from ptychoflow.backends.local import LocalBackend
    from ptychoflow.errors import InputError

    flow_file = tmp_path / "f.json"
    flow_file.write_text(json.dumps(chain(("P", {"Type": "Pass"}))))
    (tmp_path / "f.schema.json").write_text(json.dumps(
        {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}))
    backend = LocalBackend(make_env(tmp_path))
    flow = backend.deploy_flow(flow_file)
    with pytest.raises(InputError, match="n: 'x' is not of type 'integer'"):
        backend.start_run(flow, {"n": "x"})
    assert backend.deploy_flow(flow_file).flow_id == flow.flow_id  # keyed on checksum


def test_private_parameters_and_private_state_are_hidden(tmp_path) -> None:
    flow = chain(
        ("A", {"Type": "Action", "ActionUrl": TEST_URL, "ResultPath": "$.A", "Parameters": {
            "user": "flow", "password.$": "$._private.pw", "__Private_Parameters": ["password"],
            "nested": {"token": "t0k", "__Private_Parameters": ["token"]}}}),
    )
    run, backend = run_flow(tmp_path, flow, {"_private": {"pw": "s3cret"}, "public": 1})
    # the action receives the values, without the __Private_Parameters lists
    assert run.status.value == "SUCCEEDED", run.error
    assert "_private" not in run.output and run.output["public"] == 1
    log = json.dumps(backend.get_run_log(run.run_id))
    started = next(e for e in backend.get_run_log(run.run_id) if e["code"] == "ActionStarted")
    assert started["details"]["parameters"] == {"user": "flow", "password": "<private>", "nested": {"token": "<private>"}}
    assert "s3cret" not in log.replace(json.dumps(run.output["A"]), "")


def test_action_receives_body_without_private_list(tmp_path) -> None:
    flow = chain(("A", {"Type": "Action", "ActionUrl": TEST_URL, "ResultPath": "$.A",
                        "Parameters": {"k": "v", "__Private_Parameters": ["k"]}}))
    run, _ = run_flow(tmp_path, flow)
    assert run.output["A"]["details"] == {"echo": {"k": "v"}}


def test_context_has_the_documented_fields(tmp_path) -> None:
    flow = chain(("E", {"Type": "ExpressionEval", "Parameters": {"c.$": "$._context"}, "ResultPath": "$.c"}))
    run, _ = run_flow(tmp_path, flow)
    assert {"run_id", "flow_id", "username", "email", "user_id", "identities"} <= set(run.output["c"]["c"])


def test_runs_progress_concurrently_in_one_engine(tmp_path) -> None:
    from ptychoflow.backends.local import LocalBackend
    from ptychoflow.flowengine.worker import Engine

    env = make_env(tmp_path)
    flow_file = tmp_path / "w.json"
    flow_file.write_text(json.dumps(chain(("W", {"Type": "Wait", "SecondsPath": "$.pause"}), ("P", {"Type": "Pass"}))))
    backend = LocalBackend(env)
    flow = backend.deploy_flow(flow_file)
    runs = [backend.start_run(flow, {"i": i, "pause": 0.4}) for i in range(4)]
    engine = Engine(env)
    started = time.time()
    try:
        for run in runs:
            assert engine.run_until_finished(run.run_id, 10) == "SUCCEEDED"
    finally:
        engine.close()
    assert time.time() - started < 1.2  # four 0.4 s waits overlapped, not serialised
    assert [r.status.value for r in backend.list_runs()] == ["SUCCEEDED"] * 4
