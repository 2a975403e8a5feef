"""Shared fixtures: small real scans on disk, and a CLI runner that goes through main()."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
REAL_SCAN = SHARED_DATA / "siemens-star-small.npz.bz2"


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for child processes: this checkout's src/ and edge/ on the path."""
    env = dict(os.environ)
    paths = [str(REPO / "src"), str(REPO / "edge"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update(extra)
    return env


def run_cli(*args: str, check: bool = True, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """Run `python -m ptychoflow ARGS` in a real process, as a user would."""
    result = subprocess.run(
        [sys.executable, "-m", "ptychoflow", *args], capture_output=True, text=True, timeout=timeout,
        env=subprocess_env(), **kwargs,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"ptychoflow {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture
def small_scan():
    """A tiny, fast simulated scan (in memory) for format and plumbing tests."""
    from ptychoflow.simulate.beamline import SimulationOptions, simulate_scan

    options = SimulationOptions(frame_size=32, object_size=96, step_px=8, probe_diameter_px=16, dose=1e4, seed=3)
    return simulate_scan(options, scan_id="tiny")


@pytest.fixture
def scan_file(tmp_path, small_scan):
    from ptychoflow.scan import write_scan

    return write_scan(tmp_path / "scan_0001.h5", small_scan.scan)


@pytest.fixture(scope="session")
def real_scan_path() -> Path:
    if not REAL_SCAN.exists():
        pytest.skip(f"real scan not found at {REAL_SCAN} (expected ../shared/data beside the checkout)")
    return REAL_SCAN


@pytest.fixture(autouse=True)
def _quiet_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "2"))
    np.seterr(all="warn")


# -- the fuzz suite's summary line (tests/hostile/, checks and tally in hostile_support) ----------
def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    import hostile_support

    hostile_support.record(REPO / report.fspath, report.nodeid, report.when, report.outcome)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    import hostile_support

    line = hostile_support.summary()
    if line:
        terminalreporter.write_sep("=", line)
