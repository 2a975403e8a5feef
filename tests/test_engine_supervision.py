"""A dead engine worker is never invisible: kill -9 it under a running watcher (the installed
console script) and it is back within 30 s; where systemd supervises it (--no-engine), the
watcher leaves it dead and `watch status`, the dashboard's /metrics and the watcher's log say
it is down while a run waits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from browser import free_port
from console_script import CONSOLE_SCRIPT, console_env, needs_console_script
from engine_helpers import wait_until, write_profile
from ptychoflow.backends.local import LocalBackend
from ptychoflow.flowengine.worker import engine_pid, stop_engine
from ptychoflow.profile import load_profile

pytestmark = needs_console_script

HOLD_FLOW = {"StartAt": "Hold", "States": {"Hold": {"Type": "Wait", "Seconds": 600, "End": True}}}



def _start(tmp_path: Path, name: str, *args: str) -> subprocess.Popen:
    out = open(tmp_path / f"{name}.out", "ab")
    return subprocess.Popen([str(CONSOLE_SCRIPT), *args], stdout=out, stderr=subprocess.STDOUT, env=console_env(),
                            start_new_session=True)


def _stop(process: subprocess.Popen) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    return process.wait(30)


def _status(profile_dir: Path) -> dict:
    result = subprocess.run([str(CONSOLE_SCRIPT), "watch", "status", "--json", "--profile", str(profile_dir)],
                            capture_output=True, text=True, env=console_env(), timeout=60, check=True)
    return json.loads(result.stdout)


def _watching(state: Path) -> bool:
    log = state / "watcher.log"
    return log.exists() and " watching " in log.read_text()


def _kill_group(pid: int) -> None:
    """What kill -9 of the worker leaves behind (its compute pool, in its session) goes too."""
    if pid <= 0:  # 0 would be our own process group
        return
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _live_pid(state: Path, other_than: int | None = None) -> int | None:
    pid = engine_pid(state)
    return pid if pid and pid > 0 and pid != other_than else None


@pytest.mark.timeout(180)
def test_the_watcher_restarts_a_killed_engine_worker_within_30_s(tmp_path):
    profile = load_profile(write_profile(tmp_path))
    state = profile.state_path
    watcher = _start(tmp_path, "watch", "watch", "--profile", str(tmp_path))
    first = 0
    try:
        wait_until(lambda: _watching(state), 60, "the watcher to start")
        first = _live_pid(state)
        assert first, "the watcher started no engine worker"
        os.kill(first, signal.SIGKILL)
        killed = time.monotonic()
        second = wait_until(lambda: _live_pid(state, other_than=first), 30, "the engine worker to be restarted")
        assert time.monotonic() - killed < 30
        engine = _status(tmp_path)["engine"]
        assert engine["state"] == "running" and engine["pid"] == second and engine["up"]
        assert wait_until(lambda: "restarted it, pid" in (state / "watcher.log").read_text(), 10, "the restart in the log")
    finally:
        assert _stop(watcher) == 0, (tmp_path / "watch.out").read_text()
        stop_engine(state)
        _kill_group(first)


@pytest.mark.timeout(180)
def test_under_no_engine_a_dead_worker_stays_dead_and_is_reported_everywhere(tmp_path):
    profile = load_profile(write_profile(tmp_path))
    state = profile.state_path
    flow = tmp_path / "hold.json"
    flow.write_text(json.dumps(HOLD_FLOW))
    backend = LocalBackend.from_profile(profile)
    run = backend.start_run(backend.deploy_flow(flow), {}, label="waits ten minutes")

    engine = _start(tmp_path, "engine", "engine", "serve", "--wait", "--profile", str(tmp_path))  # systemd's unit
    port = free_port()
    watcher = dashboard = None
    try:
        pid = wait_until(lambda: _live_pid(state), 60, "the engine unit to serve")
        wait_until(lambda: [s.status for s in backend.get_run(run.run_id).timeline] == ["ACTIVE"], 30, "the run to wait")
        watcher = _start(tmp_path, "watch", "watch", "--no-engine", "--profile", str(tmp_path))
        dashboard = _start(tmp_path, "dashboard", "dashboard", "--no-engine", "--port", str(port), "--profile",
                           str(tmp_path))
        wait_until(lambda: _watching(state), 60, "the watcher to start")
        assert _status(tmp_path)["engine"]["state"] == "running"

        os.kill(pid, signal.SIGKILL)
        engine.wait(10)
        _kill_group(engine.pid)
        status = wait_until(lambda: (s := _status(tmp_path))["engine"]["state"] == "down" and s, 30, "status: down")
        assert status["engine"]["active_runs"] == 1 and status["engine"]["summary"].startswith("DOWN")
        text = subprocess.run([str(CONSOLE_SCRIPT), "watch", "status", "--profile", str(tmp_path)], capture_output=True,
                              text=True, env=console_env(), timeout=60).stdout
        assert "engine worker DOWN: not running; 1 active run(s) not advancing" in text

        samples = wait_until(lambda: _metrics(port), 60, "the dashboard's /metrics")
        assert samples["ptychoflow_engine_up"] == 0.0
        assert samples["ptychoflow_oldest_active_state_age_seconds"] > 0
        assert wait_until(lambda: "engine worker: DOWN" in (state / "watcher.log").read_text(), 30,
                         "the watcher's log to say the engine is down")
        time.sleep(3)  # longer than a supervisor's check interval: still nobody restarted it
        assert engine_pid(state) is None
    finally:
        for process in (watcher, dashboard):
            if process is not None:
                _stop(process)
        _stop(engine)
        stop_engine(state)


def _metrics(port: int) -> dict[str, float] | None:
    """Unlabelled samples of one scrape (None until the dashboard answers)."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return None
    return {s.name: s.value for family in text_string_to_metric_families(text) for s in family.samples if not s.labels}
