"""Shared helpers for the watcher tests: a tiny durable Backend, profiles, scans, processes.

`SQLiteBackend` records runs in its own SQLite file, so a watcher process killed with -9 and
the test see the same run list. The process tests take the `watch_backend` fixture: a
`module:callable(profile) -> Backend` spec, by default this file's SQLite backend. To run
them on the real local backend after integration:

    PTYCHOFLOW_WATCH_TEST_BACKEND=ptychoflow.backends:get_backend pytest tests/test_watch_*.py

They only use the `Backend` ABC (start_run, list_runs with label and tags, created).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import pytest
import tomli_w

from ptychoflow.backends.base import Backend, DeployedFlow, RegisteredFunction, RunInfo, RunStatus
from ptychoflow.profile import Profile, load_profile
from ptychoflow.scan.format import Instrument, ScanWriter

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"
DEFAULT_FACTORY = "watch_support:make_backend"
BACKEND_DB = "test_backend.sqlite"
BACKEND_CONFIG = "test_backend.json"  # keyword arguments of SQLiteBackend


class SQLiteBackend(Backend):
    """Records runs durably; optional fault injection; runs finish after `finish_after_s`."""

    name = "sqlite-test"

    def __init__(self, path: str | Path, *, fail_starts: int = 0, fail_after_record: int = 0,
                 finish_after_s: float | None = None, sleep_after_record_s: float = 0.0) -> None:
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS runs (seq INTEGER PRIMARY KEY, run_id TEXT UNIQUE, flow_id TEXT,"
            " status TEXT, label TEXT, tags TEXT, body TEXT, created REAL, error TEXT, notify_on TEXT)"
        )
        self.fail_starts = fail_starts
        self.fail_after_record = fail_after_record
        self.finish_after_s = finish_after_s
        self.sleep_after_record_s = sleep_after_record_s  # widens the crash window for kill -9 tests

    def deploy_flow(self, definition_path: Path) -> DeployedFlow:
        digest = hashlib.sha256(Path(definition_path).read_bytes()).hexdigest()
        return DeployedFlow(flow_id=f"flow-{digest[:8]}", title=Path(definition_path).stem, checksum=digest)

    def register_function(self, source_path: Path, name: str) -> RegisteredFunction:
        return RegisteredFunction(function_id=f"fn-{name}", name=name, source_sha256="")

    def start_run(self, flow: DeployedFlow, body: dict[str, Any], *, label: str = "",
                  tags: list[str] | None = None, notify_on: Sequence[str] = ()) -> RunInfo:
        if self.fail_starts > 0:
            self.fail_starts -= 1
            raise ConnectionError("injected: service unavailable")
        run_id = str(uuid.uuid4())
        self._db.execute(
            "INSERT INTO runs(run_id, flow_id, status, label, tags, body, created, notify_on) VALUES (?,?,?,?,?,?,?,?)",
            (run_id, flow.flow_id, "ACTIVE", label, json.dumps(tags or []), json.dumps(body), time.time(),
             json.dumps(list(notify_on))),
        )
        time.sleep(self.sleep_after_record_s)
        if self.fail_after_record > 0:  # the crash window: recorded, but the caller never hears
            self.fail_after_record -= 1
            raise TimeoutError("injected: response lost after the run was recorded")
        return self.get_run(run_id)

    def get_run(self, run_id: str) -> RunInfo:
        row = self._db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise KeyError(run_id)
        info = _info(row)
        if self.finish_after_s is not None and info.status == RunStatus.ACTIVE:
            if time.time() - (info.created or 0) >= self.finish_after_s:
                self._db.execute("UPDATE runs SET status='SUCCEEDED' WHERE run_id=?", (run_id,))
                info.status = RunStatus.SUCCEEDED
        return info

    def get_run_log(self, run_id: str) -> list[dict[str, Any]]:
        return []

    def list_runs(self, *, limit: int = 50) -> list[RunInfo]:
        rows = self._db.execute("SELECT * FROM runs ORDER BY seq DESC LIMIT ?", (limit,))
        return [_info(r) for r in rows]

    def cancel_run(self, run_id: str) -> RunInfo:
        self._db.execute("UPDATE runs SET status='ENDED' WHERE run_id=?", (run_id,))
        return self.get_run(run_id)

    def resume_run(self, run_id: str, *, check: bool = True) -> RunInfo:
        self._db.execute("UPDATE runs SET status='ACTIVE', error=NULL WHERE run_id=? AND status='INACTIVE'", (run_id,))
        return self.get_run(run_id)

    def validate_run(self, flow: DeployedFlow, body: dict[str, Any]) -> None:
        """Any JSON object is a valid input for the watcher tests' one-state flow."""

    def finish_all(self, status: str = "SUCCEEDED") -> None:
        self._db.execute("UPDATE runs SET status=? WHERE status='ACTIVE'", (status,))

    def set_status(self, run_id: str, status: str, error: str | None = None) -> None:
        """What the service would report next: INACTIVE with its reason, ACTIVE after a resume..."""
        self._db.execute("UPDATE runs SET status=?, error=? WHERE run_id=?", (status, error, run_id))

    def notify_on(self, run_id: str) -> list[str]:
        return json.loads(self._db.execute("SELECT notify_on FROM runs WHERE run_id=?", (run_id,)).fetchone()[0])


def _info(row: tuple) -> RunInfo:
    _, run_id, flow_id, status, label, tags, body, created, error, _notify = row
    return RunInfo(run_id=run_id, flow_id=flow_id, status=RunStatus(status), label=label, error=error,
                   tags=json.loads(tags), created=created, output={"body": json.loads(body)})


def make_backend(profile: Profile) -> SQLiteBackend:
    """Factory used by `ptychoflow watch --backend-factory watch_support:make_backend`."""
    state = profile.state_path
    state.mkdir(parents=True, exist_ok=True)
    config = state / BACKEND_CONFIG
    options = json.loads(config.read_text()) if config.exists() else {}
    return SQLiteBackend(state / BACKEND_DB, **options)


@dataclass(frozen=True)
class BackendUnderTest:
    """The Backend the process tests run the watcher on, as `module:callable(profile)`."""

    factory: str

    def open(self, profile: Profile) -> Backend:
        module, _, attr = self.factory.partition(":")
        return getattr(importlib.import_module(module), attr)(profile)

    def configure(self, profile: Profile, **options: Any) -> None:
        """Fault injection and pacing; only the SQLite test backend reads it."""
        profile.state_path.mkdir(parents=True, exist_ok=True)
        (profile.state_path / BACKEND_CONFIG).write_text(json.dumps(options))


@pytest.fixture
def watch_backend() -> BackendUnderTest:
    return BackendUnderTest(os.environ.get("PTYCHOFLOW_WATCH_TEST_BACKEND", DEFAULT_FACTORY))


# -- profiles, flows, scans ---------------------------------------------------------------
def write_profile(root: Path, **watcher: Any) -> Profile:
    """A local profile under `root` with short watcher timings; returns it loaded."""
    settings = {"settle_seconds": 0.3, "poll_interval_s": 0.2, "max_active_runs": 1000}
    settings.update(watcher)
    doc = {
        "backend": "local",
        "state_dir": "state",
        "beamline": {"path": "acquisition", "patterns": ["scan_*.h5"], "name": "2-ID-test"},
        "hpc": {"path": "hpc"},
        "edge": {"path": "edge"},
        "watcher": settings,
    }
    root.mkdir(parents=True, exist_ok=True)
    (root / "acquisition").mkdir(exist_ok=True)
    (root / "ptychoflow.toml").write_text(tomli_w.dumps(doc))
    (root / "flow.json").write_text(json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}))
    return load_profile(root / "ptychoflow.toml")


def flow_file(profile: Profile) -> Path:
    return profile.root / "flow.json"


INSTRUMENT = Instrument(8.8, 1.92, 75e-6)


def write_scan(path: Path, scan_id: str | None = None, frames: int = 2, size: int = 8, seed: int = 0) -> Path:
    """A small complete scan written as a detector would (grows, then marked complete)."""
    rng = np.random.default_rng(seed)
    with ScanWriter(path, scan_id=scan_id or path.stem, frame_shape=(size, size), instrument=INSTRUMENT) as w:
        for i in range(frames):
            w.append(rng.poisson(5, (size, size)).astype(np.uint32), np.array([i * 1e-7, 0.0]))
    return path


# -- processes ----------------------------------------------------------------------------
def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(SRC), str(TESTS), e.get("PYTHONPATH", "")])
    return e


def start_watcher(profile: Profile, backend: BackendUnderTest, *extra: str) -> subprocess.Popen:
    """`python -m ptychoflow watch` as a real process, on the backend under test."""
    cmd = [sys.executable, "-m", "ptychoflow", "watch", "--profile", str(profile.root / "ptychoflow.toml"),
           "--flow", str(flow_file(profile)), "--backend-factory", backend.factory, *extra]
    # Output goes to a file, never a pipe nobody drains (a full pipe blocks the watcher).
    with open(profile.root / "watcher.out", "ab") as out:
        return subprocess.Popen(cmd, env=env(), stdout=out, stderr=subprocess.STDOUT)


def stop_watcher(proc: subprocess.Popen, timeout: float = 15) -> tuple[int, str]:
    """SIGTERM, wait; returns (exit code, the watcher's console output)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=timeout)
    out = Path(proc.args[proc.args.index("--profile") + 1]).parent / "watcher.out"
    return proc.returncode, out.read_text(errors="replace")


def wait_for(predicate: Callable[[], Any], timeout: float = 20, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {getattr(predicate, '__name__', predicate)}")
        time.sleep(interval)


def journal_rows(profile: Profile) -> dict[str, dict]:
    """path name -> row, read straight from the watcher's journal file."""
    path = profile.state_path / "watcher.sqlite"
    if not path.exists():
        return {}
    db = sqlite3.connect(path, timeout=30)
    db.row_factory = sqlite3.Row
    try:
        return {Path(r["path"]).name: dict(r) for r in db.execute("SELECT * FROM scans")}
    except sqlite3.OperationalError:
        return {}
    finally:
        db.close()


def runs_by_scan(profile: Profile, backend: BackendUnderTest) -> dict[str, list[RunInfo]]:
    """scan id -> the backend runs tagged with it (test scans use the file stem as id)."""
    out: dict[str, list[RunInfo]] = {}
    for info in backend.open(profile).list_runs(limit=100_000):
        for tag in info.tags:
            if tag.startswith("scan:"):
                out.setdefault(tag[5:], []).append(info)
    return out


def run_with_denied_reads(profile_path: str, flow: str, marker: str, factory: str) -> None:
    """Child-process target: the watcher, with reads of files named *marker* denied (EACCES).

    Tests run as root, which chmod cannot deny, so the narrowest seam is patched instead:
    ``detect.sha256_file``, the first read of a scan's bytes (``ptychoflow.fs.sha256_file``).
    """
    from ptychoflow.watcher import detect
    from ptychoflow.watcher.service import WatcherOptions, run_watcher

    real = detect.sha256_file

    def deny(path: str) -> str:
        if marker in os.path.basename(path):
            raise PermissionError(13, "Permission denied", path)
        return real(path)

    detect.sha256_file = deny
    profile = load_profile(profile_path)
    backend = BackendUnderTest(factory).open(profile)
    sys.exit(run_watcher(profile, backend, WatcherOptions(flow_path=Path(flow))))
