"""Cancel stops the work: cancelling a run during a real rPIE Reconstruct (the bundled function
on a simulated scan) kills its process within 5 s and frees the only pool slot at once, so the
next run's Reconstruct starts without waiting."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine_helpers import PROFILE_TOML, descendants, wait_until
from ptychoflow.backends.local import LocalBackend
from ptychoflow.flow_inputs import reconstruct_input
from ptychoflow.flowengine.worker import ensure_engine_running, stop_engine
from ptychoflow.function_registry import bundled_functions
from ptychoflow.processes import pid_alive
from ptychoflow.profile import load_profile
from ptychoflow.resources import flow_path

CLI = Path(sys.executable).with_name("ptychoflow")  # the installed console script


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process (/proc), 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def reconstruct_step(backend: LocalBackend, run_id: str):
    return next((s for s in backend.store.steps(run_id) if s.name == "Reconstruct" and s.status == "ACTIVE"), None)


@pytest.mark.slow
def test_cancel_kills_a_running_reconstruct_and_frees_its_slot(tmp_path: Path) -> None:
    for sub in ("beamline", "hpc", "edge", "state"):
        (tmp_path / sub).mkdir()
    (tmp_path / "ptychoflow.toml").write_text(PROFILE_TOML.replace("workers = 2", "workers = 1")
                                             + "[policy]\niterations = 100000\n")
    profile = load_profile(tmp_path / "ptychoflow.toml")
    subprocess.run([str(CLI), "beamline", "simulate", "--scans", "2", "--out", str(tmp_path / "beamline"),
                    "--no-stream", "--object-size", "128"], check=True, capture_output=True, timeout=300)
    backend = LocalBackend.from_profile(profile)
    backend.register_function(bundled_functions()["reconstruct"], "reconstruct")
    flow = backend.deploy_flow(flow_path("reconstruct"))
    first = backend.start_run(flow, reconstruct_input(profile, "scan_0001.h5"))
    worker = ensure_engine_running(profile)
    try:
        wait_until(lambda: reconstruct_step(backend, first.run_id) is not None, 60, "the first Reconstruct to start")
        wait_until(lambda: descendants(worker), 30, "a compute slot process")
        slot_processes = descendants(worker)
        # rPIE is really running: torch and Pty-chi imported, iterations under way
        wait_until(lambda: sum(cpu_seconds(p) for p in slot_processes) > 5, 120, "5 s of reconstruction CPU time")
        assert all(pid_alive(p) for p in slot_processes), "the reconstruction ended by itself"

        cancelled, cancelled_at = time.monotonic(), time.time()
        result = subprocess.run([str(CLI), "runs", "cancel", first.run_id[:8], "--profile", str(tmp_path)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        wait_until(lambda: not any(pid_alive(p) for p in slot_processes), 5, "the Reconstruct process to end")
        assert time.monotonic() - cancelled < 5 + 3  # 5 s once the CLI returned

        second = backend.start_run(flow, reconstruct_input(profile, "scan_0002.h5"))
        wait_until(lambda: reconstruct_step(backend, second.run_id) is not None, 30,
                   "the next run's Reconstruct to start on the freed slot")
        step = reconstruct_step(backend, second.run_id)
        assert step.started - cancelled_at < 30  # it did not wait for the cancelled reconstruction
        backend.cancel_run(second.run_id)
        wait_until(lambda: not descendants(worker), 10, "the second reconstruction's process to end")
    finally:
        stop_engine(profile.state_path)

    info = backend.get_run(first.run_id)
    assert info.status.value == "ENDED"
    assert info.timeline[-1].name == "Reconstruct" and info.timeline[-1].error == "cancelled"
    log = backend.get_run_log(first.run_id)
    assert log[-1]["code"] == "FlowCanceled" and log[-1]["description"] == "The Flow Instance was canceled by the user"
    assert not list((profile.state_path / "compute").rglob("*.json")), "the cancelled tasks' records were not released"
