"""Crash safety: kill -9 the engine worker mid-action; a restarted worker finishes the run
and every completed action ran exactly once (counted through the functions' side effects)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from click.testing import CliRunner

from engine_helpers import chain, wait_until, write_function, write_profile
from ptychoflow.backends.local import LocalBackend
from ptychoflow.cli.main import cli
from ptychoflow.flowengine.worker import engine_pid, ensure_engine_running, stop_engine
from ptychoflow.profile import load_profile

C = "https://compute.actions.globus.org/v3"


def _step(name: str, function_id: str) -> dict:
    return {"Type": "Action", "ActionUrl": C, "ResultPath": f"$.{name}", "WaitTime": 120,
            "Parameters": {"endpoint_id": "local-hpc", "tasks": [{"function_id": function_id, "kwargs": {"tag": name}}]}}


def test_kill_9_mid_action_then_resume_runs_completed_actions_exactly_once(tmp_path: Path) -> None:
    profile = load_profile(write_profile(tmp_path))
    backend = LocalBackend.from_profile(profile)
    log = tmp_path / "side_effects.log"
    quick = write_function(tmp_path / "fns", "quick", f"open({str(log)!r}, 'a').write(kwargs['tag'] + '\\n')\nreturn {{'ok': kwargs['tag']}}")
    slow = write_function(tmp_path / "fns", "slow", (
        f"import time\nopen({str(log)!r}, 'a').write('slow-start\\n')\ntime.sleep(2.5)\n"
        f"open({str(log)!r}, 'a').write('slow-end\\n')\nreturn {{'ok': 'slow'}}"))
    quick_id = backend.register_function(quick, "quick").function_id
    slow_id = backend.register_function(slow, "slow").function_id
    flow_file = tmp_path / "three.json"
    flow_file.write_text(json.dumps(chain(("A", _step("A", quick_id)), ("B", _step("B", slow_id)),
                                          ("C", _step("C", quick_id)))))
    run = backend.start_run(backend.deploy_flow(flow_file), {})

    first = ensure_engine_running(profile)
    try:
        wait_until(lambda: "slow-start" in (log.read_text() if log.exists() else ""), 20, "the slow action to start")
        assert backend.get_run(run.run_id).current_state == "B"
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: engine_pid(profile.state_path) is None, 5, "the killed worker's lock to drop")
        assert backend.get_run(run.run_id).status.value == "ACTIVE"

        result = CliRunner().invoke(cli, ["runs", "resume", run.run_id[:8], "--profile", str(tmp_path / "ptychoflow.toml")])
        assert result.exit_code == 0, result.output
        assert "ACTIVE at B" in result.output
        second = engine_pid(profile.state_path)
        assert second and second != first
        wait_until(lambda: backend.get_run(run.run_id).status.finished, 30, "the run to finish")
    finally:
        stop_engine(profile.state_path)

    info = backend.get_run(run.run_id)
    assert info.status.value == "SUCCEEDED", info.error
    assert log.read_text().splitlines() == ["A", "slow-start", "slow-end", "C"]
    assert [(s.name, s.status) for s in info.timeline] == [("A", "SUCCEEDED"), ("B", "SUCCEEDED"), ("C", "SUCCEEDED")]
    assert info.output["C"]["details"]["results"][0]["output"] == {"ok": "C"}


def test_resubmitting_a_started_action_recalls_its_committed_result(tmp_path: Path) -> None:
    """In-process version of the crash: a fresh engine re-submits the open action under the
    same key and gets the first execution's result."""
    from engine_helpers import make_env
    from ptychoflow.flowengine.worker import Engine

    env = make_env(tmp_path)
    log = tmp_path / "count.log"
    source = write_function(tmp_path / "fns", "once", f"open({str(log)!r}, 'a').write('x')\nreturn {{'n': 1}}")
    backend = LocalBackend(env)
    function_id = backend.register_function(source, "once").function_id
    flow_file = tmp_path / "f.json"
    flow_file.write_text(json.dumps(chain(("A", {**_step("A", function_id)}))))
    run = backend.start_run(backend.deploy_flow(flow_file), {})
    crashed = Engine(env)
    crashed.tick()  # step A recorded as started and submitted
    step = crashed.store.steps(run.run_id)[0]
    assert step.status == "ACTIVE" and step.action_key
    wait_until(lambda: log.exists(), 15, "the task to run")
    time.sleep(0.3)
    crashed.providers.close()  # the "crash": this engine never records the completion
    fresh = Engine(env)
    try:
        assert fresh.run_until_finished(run.run_id, 20) == "SUCCEEDED"
    finally:
        fresh.close()
    assert log.read_text() == "x"
