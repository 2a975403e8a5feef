"""Crash safety: kill -9 the engine worker mid-action; a restarted worker finishes the run,
every completed action ran exactly once and an interrupted one at most as often as allowed
(counted through the functions' side effects)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from click.testing import CliRunner

from engine_helpers import chain, descendants, wait_until, write_function, write_profile
from ptychoflow.backends.local import LocalBackend
from ptychoflow.cli.main import cli
from ptychoflow.flowengine.worker import engine_pid, ensure_engine_running, stop_engine
from ptychoflow.processes import pid_alive
from ptychoflow.profile import load_profile

C = "https://compute.actions.globus.org/v3"


def _step(name: str, function_id: str) -> dict:
    return {"Type": "Action", "ActionUrl": C, "ResultPath": f"$.{name}", "WaitTime": 120,
            "Parameters": {"endpoint_id": "local-hpc", "tasks": [{"function_id": function_id, "kwargs": {"tag": name}}]}}


@pytest.mark.parametrize("retries, log_lines, status", [
    (0, ["A", "slow-start"], "FAILED"),  # at most once: the interrupted call is not made again
    (1, ["A", "slow-start", "slow-start", "slow-end", "C"], "SUCCEEDED"),  # one rerun allowed
])
def test_kill_9_mid_action_then_resume(tmp_path: Path, retries: int, log_lines: list[str], status: str) -> None:
    """The worker dies mid-call: its slot process dies with it (no orphan finishes the call
    behind the engine's back), and on resume the call is made again only if allowed."""
    profile_file = write_profile(tmp_path)
    profile_file.write_text(profile_file.read_text().replace("workers = 2", f"workers = 2\nretries_on_worker_loss = {retries}"))
    profile = load_profile(profile_file)
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
    state_dir = profile.state_path

    first = ensure_engine_running(profile)
    try:
        wait_until(lambda: "slow-start" in (log.read_text() if log.exists() else ""), 20, "the slow action to start")
        slot = [pid for pid in descendants(first) if pid_alive(pid)]
        assert backend.get_run(run.run_id).current_state == "B" and slot
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: engine_pid(state_dir) is None, 5, "the killed worker's lock to drop")
        wait_until(lambda: not any(pid_alive(pid) for pid in slot), 5, f"the worker's processes {slot} to end")
        assert backend.get_run(run.run_id).status.value == "ACTIVE"
        result = CliRunner().invoke(cli, ["runs", "resume", run.run_id[:8], "--profile", str(profile_file)])
        assert result.exit_code == 0, result.output
        assert "ACTIVE at B" in result.output
        assert engine_pid(state_dir) not in (None, first)
        wait_until(lambda: backend.get_run(run.run_id).status.finished, 30, "the run to finish")
    finally:
        stop_engine(state_dir)

    info = backend.get_run(run.run_id)
    assert info.status.value == status, info.error
    assert log.read_text().splitlines() == log_lines
    if status == "FAILED":
        assert info.error.startswith("B: ActionFailedException") and "WorkerLost" in info.error
    else:
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
