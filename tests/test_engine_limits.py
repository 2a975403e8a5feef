"""Runs never hang: unexpected errors, endless loops, oversized states and runaway expressions
each end the run with a named States.* error, and the database stays small."""

from __future__ import annotations

import json

import pytest

from engine_helpers import TEST_URL, chain, run_flow
from ptychoflow.flowengine.limits import RunLimits
from ptychoflow.flowengine.providers import ActionProvider, provider_registered

BROKEN_URL = "https://test.example.org/broken"


def loop(action_catching: list[str] | None = None) -> dict:
    """A two-state loop with no exit (valid: every state is reachable, each has Next)."""
    ping: dict = {"Type": "Pass", "Parameters": {"n.=": "getattr('n', 0) + 1"}, "ResultPath": "$.count", "Next": "Pong"}
    states = {"Ping": ping, "Pong": {"Type": "Pass", "InputPath": "$.count.n", "ResultPath": "$.n", "Next": "Ping"}}
    if action_catching:
        states["Ping"] = {"Type": "Action", "ActionUrl": TEST_URL, "Parameters": {}, "ResultPath": "$.a",
                          "Catch": [{"ErrorEquals": action_catching, "Next": "Caught"}], "Next": "Back"}
        states["Back"] = {"Type": "Pass", "Next": "Ping"}
        states["Caught"] = {"Type": "Pass", "End": True}
        del states["Pong"]
    return {"StartAt": "Ping", "States": states}


def test_an_endless_loop_fails_with_the_transition_limit(tmp_path) -> None:
    run, backend = run_flow(tmp_path, loop(), {}, limits=RunLimits(max_transitions=40))
    assert run.status.value == "FAILED"
    assert run.error.startswith("Ping: States.TransitionLimitExceeded: the run entered 40 states")
    assert len(run.timeline) == 41  # 40 states entered, the 41st refused and recorded as failed
    assert backend.get_run_log(run.run_id)[-1]["code"] == "FlowFailed"


@pytest.mark.parametrize("errors", [["States.ALL"], ["States.TransitionLimitExceeded"]])
def test_the_transition_limit_cannot_be_caught(tmp_path, errors: list[str]) -> None:
    run, _ = run_flow(tmp_path, loop(action_catching=errors), {}, limits=RunLimits(max_transitions=11))
    assert run.status.value == "FAILED" and run.error.startswith("Back: States.TransitionLimitExceeded")


@pytest.mark.parametrize("errors, caught", [(["States.ALL"], False), (["States.ExpressionLimitExceeded"], True)])
def test_states_all_does_not_catch_an_expression_limit_but_naming_it_does(tmp_path, errors, caught) -> None:
    flow = chain(("Act", {"Type": "Action", "ActionUrl": TEST_URL, "Parameters": {"x.=": "'x' * 20"}, "ResultPath": "$.a",
                          "Catch": [{"ErrorEquals": errors, "ResultPath": "$.why", "Next": "Fallback"}]}),
                 ("Fallback", {"Type": "Pass"}))
    run, _ = run_flow(tmp_path, flow, {}, limits=RunLimits(expression_max_size=10))
    if caught:
        assert run.status.value == "SUCCEEDED" and run.output["why"]["Error"] == "States.ExpressionLimitExceeded"
    else:
        assert run.status.value == "FAILED" and run.error.startswith("Act: States.ExpressionLimitExceeded")


def test_a_state_over_the_size_limit_is_never_stored(tmp_path) -> None:
    flow = chain(("Grow", {"Type": "ExpressionEval", "Parameters": {"blob.=": "'x' * 150000"}, "ResultPath": "$.b"}),
                 ("Again", {"Type": "ExpressionEval", "Parameters": {"blob.=": "b.blob + 'y'"}, "ResultPath": "$.c"}))
    run, backend = run_flow(tmp_path, flow, {}, limits=RunLimits(max_state_bytes=200 * 1024))
    assert run.status.value == "FAILED"
    assert run.error.startswith("Again: States.DataLimitExceeded: the state after Again is 293.0 KiB of JSON; "
                                "the limit is 200.0 KiB")
    stored = backend.store.get_run(run.run_id)
    assert "c" not in stored.document and len(stored.document["b"]["blob"]) == 150000


def test_an_oversized_input_fails_the_run_at_its_first_state(tmp_path) -> None:
    run, _ = run_flow(tmp_path, chain(("P", {"Type": "Pass"})), {"x": "y" * 5000}, limits=RunLimits(max_state_bytes=4096))
    assert run.status.value == "FAILED" and "States.DataLimitExceeded: the run input is 4.9 KiB" in run.error


def test_a_runaway_expression_fails_with_the_expression_limit(tmp_path) -> None:
    flow = chain(("Spin", {"Type": "ExpressionEval", "ResultPath": "$.r", "Parameters": {
        "r.=": "[a for a in range(3000) for b in range(3000) if a < 0]"}}))
    run, _ = run_flow(tmp_path, flow, {}, limits=RunLimits(expression_cpu_seconds=0.2))
    assert run.status.value == "FAILED"
    assert run.error.startswith("Spin: States.ExpressionLimitExceeded: Parameters.r.=: expression")


def test_an_expression_type_error_fails_the_run_instead_of_hanging(tmp_path) -> None:
    """{[1]: 2} raised a TypeError that escaped the interpreter; the run stayed ACTIVE for ever."""
    flow = chain(("Bad", {"Type": "ExpressionEval", "Parameters": {"x.=": "{[1]: 2}"}, "ResultPath": "$.x"}))
    run, _ = run_flow(tmp_path, flow, {}, timeout=5)
    assert run.status.value == "FAILED"
    assert run.error.startswith("Bad: States.Runtime: Parameters.x.=: expression '{[1]: 2}': TypeError")


class _Broken(ActionProvider):
    """A provider with a bug: run() raises something that is not an ActionUnableToRun."""

    url = BROKEN_URL

    def run(self, action_id: str, body: dict) -> dict:
        raise KeyError("oops")

    def status(self, action_id: str) -> None:
        return None


def test_a_provider_bug_is_action_unable_to_run_and_can_be_caught(tmp_path) -> None:
    with provider_registered(BROKEN_URL, lambda env: _Broken()):
        flow = chain(("Call", {"Type": "Action", "ActionUrl": BROKEN_URL, "Parameters": {}, "ResultPath": "$.r",
                               "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.err", "Next": "After"}]}),
                     ("After", {"Type": "Pass"}))
        run, _ = run_flow(tmp_path, flow, {}, timeout=5)
    assert run.status.value == "SUCCEEDED"
    assert run.output["err"]["Error"] == "ActionUnableToRun" and "KeyError: 'oops'" in run.output["err"]["Cause"]


def test_fail_state_takes_error_and_cause_from_paths(tmp_path) -> None:
    run, _ = run_flow(tmp_path, chain(("Stop", {"Type": "Fail", "ErrorPath": "$.e.code", "CausePath": "$.e.why"})),
                      {"e": {"code": "ScanIncomplete", "why": "frame 17 missing"}})
    assert run.status.value == "FAILED" and run.error == "ScanIncomplete: frame 17 missing"


def test_fail_state_path_to_a_non_string_is_states_runtime(tmp_path) -> None:
    run, _ = run_flow(tmp_path, chain(("Stop", {"Type": "Fail", "ErrorPath": "$.e"})), {"e": {"not": "a string"}})
    assert run.status.value == "FAILED" and run.error.startswith("Stop: States.Runtime: ErrorPath $.e gave {")


def test_handler_objects_and_strings_call_the_provider(tmp_path) -> None:
    flow = chain(("A", {"Type": "Action", "Handler": {"Type": "ActionProvider", "Url": TEST_URL},
                        "Parameters": {"k": 1}, "ResultPath": "$.a"}),
                 ("B", {"Type": "Action", "Handler": TEST_URL, "Parameters": {"k": 2}, "ResultPath": "$.b"}))
    run, _ = run_flow(tmp_path, flow, {})
    assert run.status.value == "SUCCEEDED"
    assert run.output["a"]["details"] == {"echo": {"k": 1}} and run.output["b"]["details"] == {"echo": {"k": 2}}


def test_a_registered_api_handler_is_action_unable_to_run_locally(tmp_path) -> None:
    flow = chain(("Api", {"Type": "Action", "Handler": {"Type": "RegisteredAPI", "Id": "6c54cade-bde5-45c1-bdea-f4bd71dba2cc"},
                          "Parameters": {}}))
    run, _ = run_flow(tmp_path, flow, {})
    assert run.status.value == "FAILED" and "Api: ActionUnableToRun: a RegisteredAPI Handler needs the Globus" in run.error


def test_database_grows_by_results_not_by_copies_of_the_state(tmp_path) -> None:
    """A 100 KB input through 20 small states stores the input a bounded number of times."""
    states = [(f"S{i}", {"Type": "Pass", "Parameters": {"i": i}, "ResultPath": f"$.r{i}"}) for i in range(20)]
    run, backend = run_flow(tmp_path, chain(*states), {"big": "z" * 100_000})
    assert run.status.value == "SUCCEEDED"
    backend.store.close()
    size = sum(p.stat().st_size for p in (tmp_path / "state").glob("runs.sqlite*"))
    assert size < 1_000_000, size  # input + run document + output + start/end events, not 20 copies
    assert json.dumps(run.output).count("z" * 1000) >= 1


def test_limits_come_from_the_profile_and_reach_the_worker(tmp_path) -> None:
    from engine_helpers import write_profile
    from ptychoflow.flowengine.providers import EngineEnv
    from ptychoflow.flowengine.worker import read_env, write_env
    from ptychoflow.profile import load_profile

    profile_file = write_profile(tmp_path)
    profile_file.write_text(profile_file.read_text() + "[engine]\nmax_transitions = 25\nexpression_cpu_seconds = 0.5\n")
    env = EngineEnv.from_profile(load_profile(profile_file))
    assert env.limits == RunLimits(max_transitions=25, expression_cpu_seconds=0.5)
    write_env(env)
    assert read_env(env.state_dir).limits == env.limits  # what a worker process sees
    run, _ = run_flow(tmp_path, loop(), {}, env=env, limits=None)
    assert run.error.startswith("Pong: States.TransitionLimitExceeded: the run entered 25 states")  # the 26th


@pytest.mark.parametrize("table, key, problem", [
    ("max_transitions = 0", "engine.max_transitions", "greater than or equal to 1"),
    ("max_state_byte = 10", "engine.max_state_byte", "Extra inputs are not permitted"),
    ("expression_cpu_seconds = -1", "engine.expression_cpu_seconds", "greater than 0"),
])
def test_a_bad_limit_in_the_profile_is_one_line_naming_the_key(tmp_path, table: str, key: str, problem: str) -> None:
    from engine_helpers import write_profile
    from ptychoflow.errors import ProfileError
    from ptychoflow.profile import load_profile

    profile_file = write_profile(tmp_path)
    profile_file.write_text(profile_file.read_text() + f"[engine]\n{table}\n")
    with pytest.raises(ProfileError) as caught:
        load_profile(profile_file)
    assert str(caught.value).startswith(f"{profile_file}: {key}: ") and problem in str(caught.value)
