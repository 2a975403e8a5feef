"""Local Compute v3 provider: registered function files run in per-endpoint process pools."""

from __future__ import annotations

import json
from pathlib import Path

from engine_helpers import chain, make_env, run_flow, write_function
from ptychoflow.backends.local import LocalBackend
from ptychoflow.flowengine.providers.compute_task import run_task

C = "https://compute.actions.globus.org/v3"


def compute_state(function_id: str, kwargs: dict, **extra) -> dict:
    return {"Type": "Action", "ActionUrl": C, "ResultPath": "$.R", "WaitTime": 60,
            "Parameters": {"endpoint_id": "local-hpc", "tasks": [{"function_id": function_id, "kwargs": kwargs}]}, **extra}


def test_function_result_is_details_results_0_output(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    source = write_function(tmp_path / "fns", "double", "return {'value': kwargs['x'] * 2, 'name': __name__}")
    function = LocalBackend(env).register_function(source, "double")
    run, _ = run_flow(tmp_path, chain(("R", compute_state(function.function_id, {"x.$": "$.x"}))), {"x": 21}, env=env)
    assert run.status.value == "SUCCEEDED", run.error
    assert run.output["R"]["details"]["results"][0]["output"]["value"] == 42


def test_a_raising_function_is_action_failed_with_its_traceback(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    source = write_function(tmp_path / "fns", "boom", "raise ValueError('scan is empty: ' + kwargs['scan'])")
    function = LocalBackend(env).register_function(source, "boom")
    flow = chain(
        ("R", compute_state(function.function_id, {"scan": "s1"},
                            Catch=[{"ErrorEquals": ["ActionFailedException"], "ResultPath": "$.err", "Next": "Report"}])),
        ("Report", {"Type": "Pass", "End": True}),
    )
    run, _ = run_flow(tmp_path, flow, env=env)
    cause = json.loads(run.output["err"]["Cause"])
    assert cause["status"] == "FAILED"
    assert "Traceback" in cause["details"]["exception"] and "ValueError: scan is empty: s1" in cause["details"]["exception"]


def test_unregistered_or_edited_function_cannot_run(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    source = write_function(tmp_path / "fns", "f", "return 1")
    function = LocalBackend(env).register_function(source, "f")
    source.write_text("def f(**kwargs):\n    return 2\n")  # edited: the old id no longer names this source
    run, _ = run_flow(tmp_path, chain(("R", compute_state(function.function_id, {}))), env=env)
    assert "ActionUnableToRun" in run.error and "not a registered local function" in run.error
    run, _ = run_flow(tmp_path, chain(("R", {**compute_state("nope", {}), "Parameters": {
        "endpoint_id": "mars", "tasks": [{"function_id": "nope"}]}})), env=env)
    assert "unknown local compute endpoint 'mars'" in run.error


def test_a_completed_task_is_recalled_not_rerun(tmp_path: Path) -> None:
    counter = tmp_path / "count.txt"
    source = write_function(tmp_path / "fns", "tick", f"open({str(counter)!r}, 'a').write('x')\nreturn {{'n': 1}}")
    first = run_task("k1", "tick", str(source), {}, str(tmp_path / "results"))
    again = run_task("k1", "tick", str(source), {}, str(tmp_path / "results"))
    other = run_task("k2", "tick", str(source), {}, str(tmp_path / "results"))
    assert first == again == other == {"status": "SUCCESS", "output": {"n": 1}}
    assert counter.read_text() == "xx"


def test_non_json_results_fail_clearly(tmp_path: Path) -> None:
    source = write_function(tmp_path / "fns", "bad", "return {'x': object()}")
    result = run_task("k", "bad", str(source), {}, str(tmp_path / "r"))
    assert result["status"] == "FAILED" and "not JSON serializable" in result["exception"]


def test_task_results_are_deleted_once_the_outcome_is_committed(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    source = write_function(tmp_path / "fns", "one", "return 1")
    function = LocalBackend(env).register_function(source, "one")
    run, _ = run_flow(tmp_path, chain(("R", compute_state(function.function_id, {}))), env=env)
    assert run.status.value == "SUCCEEDED"
    assert list((env.state_dir / "compute" / "local-hpc").iterdir()) == []


def test_several_tasks_with_args_and_both_result_fields(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    (tmp_path / "fns").mkdir()
    (tmp_path / "fns" / "add.py").write_text("def add(a, b=0):\n    return a + b\n")
    function = LocalBackend(env).register_function(tmp_path / "fns" / "add.py", "add")
    flow = chain(
        ("Many", {"Type": "Action", "ActionUrl": C, "ResultPath": "$.many", "Parameters": {"endpoint_id": "local-hpc",
                  "tasks": [{"function_id": function.function_id, "args": [1], "kwargs": {"b": 2}},
                            {"function_id": function.function_id, "args": [10]}]}}),
        ("One", {"Type": "Action", "ActionUrl": C, "ResultPath": "$.one", "Parameters": {
            "endpoint_id": "local-edge", "user_endpoint_config": {"gpu": 0},
            "tasks": [{"function_id": function.function_id, "kwargs": {"a": 5}}]}}),
    )
    run, _ = run_flow(tmp_path, flow, env=env)
    assert run.status.value == "SUCCEEDED", run.error
    assert [r["output"] for r in run.output["many"]["details"]["results"]] == [3, 10]
    assert run.output["many"]["details"]["result"] == [3, 10]  # the same outputs, as the V3 provider returns them
    assert run.output["one"]["details"]["results"][0]["output"] == 5 and run.output["one"]["details"]["result"] == [5]


def test_what_the_v3_provider_refuses_cannot_run(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    (tmp_path / "fns").mkdir()
    (tmp_path / "fns" / "add.py").write_text("def add(a, b=0):\n    return a + b\n")
    function = LocalBackend(env).register_function(tmp_path / "fns" / "add.py", "add")
    task = {"function_id": function.function_id, "kwargs": {"a": 1}}
    for parameters, said in (
        ({"function_id": function.function_id, "kwargs": {"a": 5}}, "function_id, kwargs not accepted"),  # the V2 form
        ({"tasks": [task], "endpoint": "local-hpc"}, "endpoint not accepted"),
        ({"tasks": [{**task, "payload": {}}]}, "tasks[0]: payload not accepted"),
        ({"tasks": [task], "user_endpoint_config": "account=PTYCHO"}, "user_endpoint_config must be an object"),
    ):
        state = {"Type": "Action", "ActionUrl": C, "ResultPath": "$.R", "Parameters": {"endpoint_id": "local-hpc", **parameters}}
        run, _ = run_flow(tmp_path, chain(("R", state)), env=env)
        assert run.status.value == "FAILED" and said in run.error, run.error
