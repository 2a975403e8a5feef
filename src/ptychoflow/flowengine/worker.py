"""The engine worker: one process per state_dir that executes ACTIVE runs.

``serve`` holds the single-instance guard ``<state_dir>/engine.lock`` for its lifetime (an
exclusive ``flock`` the kernel drops when the process dies, even by ``kill -9``, so there is
never a stale lock; the holder's pid is written inside it). ``ensure_engine_running`` starts
a detached worker when the guard is free. The worker learns the deployment from
``engine_env.json``, written by whoever starts it, so it needs no profile file of its own.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ptychoflow.errors import PtychoflowError
from ptychoflow.flowengine.interpreter import Interpreter
from ptychoflow.flowengine.limits import RunLimits
from ptychoflow.flowengine.providers.base import EngineEnv
from ptychoflow.flowengine.providers.registry import Providers, build_providers
from ptychoflow.flowengine.store import Store
from ptychoflow.flowengine.health import HEARTBEAT_INTERVAL_S, beat, engine_guard, engine_pid
from ptychoflow.fs import atomic_write_text
from ptychoflow.processes import package_environment
from ptychoflow.servicelog import log_path, service_log

ENV_FILENAME = "engine_env.json"
IDLE_SLEEP = 0.1  # how soon a newly started run is noticed

log = logging.getLogger("ptychoflow.flowengine.worker")  # also when run as __main__ (spawn_worker)


class EngineError(PtychoflowError):
    """The engine worker could not be started, found or stopped."""


class Engine:
    """Store + providers + interpreter, and the scheduling loop over runs."""

    def __init__(self, env: EngineEnv, providers: Providers | None = None, store: Store | None = None) -> None:
        self.env = env
        self.store = store or Store(env.state_dir)
        self.providers = providers or build_providers(env)
        self.interpreter = Interpreter(self.store, self.providers, username=env.username, limits=env.limits)
        self._wake: dict[str, float] = {}
        self._active: set[str] = set()

    def tick(self) -> float:
        """Advance every due ACTIVE run once; returns seconds until something is due."""
        now = time.time()
        active = self.store.active_run_ids()
        self._log_changes(active)
        self._cancel_abandoned(active)
        for run_id in list(self._wake):
            if run_id not in active:
                del self._wake[run_id]
        for run_id in sorted(active, key=lambda r: self._wake.get(r, 0)):
            if self._wake.get(run_id, 0) <= now:
                try:
                    wake = self.interpreter.advance(run_id)
                except Exception:  # an engine bug in one run must not stop the others
                    log.exception("run %s: engine error; retrying in 5 s", run_id)
                    wake = time.time() + 5
                if wake is None:
                    self._wake.pop(run_id, None)
                else:
                    self._wake[run_id] = wake
        upcoming = [w for r, w in self._wake.items() if r in active]
        return max(0.0, min(upcoming, default=now + IDLE_SLEEP) - time.time()) if upcoming else IDLE_SLEEP

    def _log_changes(self, active: set[str]) -> None:
        """One log line when a run becomes active here and when it stops being active."""
        for run_id in sorted(active - self._active):
            log.info("run %s: active", run_id)
        for run_id in sorted(self._active - active):
            run = self.store.get_run(run_id)
            log.info("run %s: %s%s", run_id, run.status if run else "gone",
                     f" ({run.error})" if run is not None and run.error else "")
        self._active = active

    def _cancel_abandoned(self, active: set[str]) -> None:
        for run_id, (url, key) in list(self.interpreter.in_flight.items()):
            if run_id not in active:
                provider = self.providers.by_url.get(url.rstrip("/"))
                if provider:
                    provider.cancel(key)
                    provider.release(key)
                del self.interpreter.in_flight[run_id]

    def run_until_finished(self, run_id: str, timeout: float = 60.0) -> str:
        """Drive the engine in this thread until ``run_id`` finishes (tests, ``--here``)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            run = self.store.get_run(run_id)
            if run is None or run.status != "ACTIVE":
                return run.status if run else "MISSING"
            time.sleep(min(self.tick(), 0.05))
        raise EngineError(f"run {run_id} did not finish within {timeout} s")

    def serve(self, stop: threading.Event) -> None:
        """Tick until `stop`; every pass of the loop beats the heartbeat (see health.py)."""
        while not stop.is_set():
            beat(self.env.state_dir)
            try:
                delay = min(self.tick(), HEARTBEAT_INTERVAL_S)
            except Exception:  # e.g. the database is locked for longer than busy_timeout
                log.exception("engine tick failed; retrying in 1 s")
                delay = 1.0
            stop.wait(delay)

    def close(self) -> None:
        self.providers.close()
        self.store.close()


# --- the worker process -------------------------------------------------------------------
def write_env(env: EngineEnv) -> bool:
    """Record the deployment for worker processes (collections, endpoints); True if it changed."""
    env.state_dir.mkdir(parents=True, exist_ok=True)
    target = env.state_dir / ENV_FILENAME
    text = json.dumps({
        "state_dir": str(env.state_dir), "username": env.username, "endpoints": env.endpoints,
        "collections": {k: str(v) for k, v in env.collections.items()},
        "retries_on_worker_loss": env.retries_on_worker_loss, "limits": env.limits.as_dict(),
    }, indent=2)
    if target.exists() and target.read_text() == text:
        return False
    atomic_write_text(target, text)
    return True


def read_env(state_dir: Path) -> EngineEnv:
    try:
        raw = json.loads((state_dir / ENV_FILENAME).read_text())
    except FileNotFoundError:
        raise EngineError(f"{state_dir / ENV_FILENAME}: missing; start the engine with `ptychoflow engine serve`") from None
    return EngineEnv(Path(raw["state_dir"]), {k: Path(v) for k, v in raw["collections"].items()},
                     raw["endpoints"], raw.get("username", "local"), raw.get("retries_on_worker_loss", {}),
                     RunLimits.from_mapping(raw.get("limits", {})))


def serve(state_dir: Path, *, wait_for_lock: bool = False, stderr: bool = True) -> None:
    """Run the worker in this process until SIGTERM/SIGINT, logging to ``engine.log``.

    Another live worker is an error, unless `wait_for_lock`: then this one waits and takes
    over when that one ends (a systemd unit started while a `flows run` had started one).
    """
    state_dir = Path(state_dir).resolve()
    guard = engine_guard(state_dir)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with service_log("engine", state_dir, stderr=stderr):
        if not guard.try_acquire():
            holder = guard.holder_pid() or "?"
            if not wait_for_lock:
                raise EngineError(f"{state_dir}: an engine worker is already running (pid {holder})")
            log.info("engine worker %s holds %s; waiting to take over when it ends", holder, guard.path)
            while not guard.try_acquire():
                if stop.wait(1.0):
                    return
        try:
            engine = Engine(read_env(state_dir))
            log.info("engine worker %s serving %s", os.getpid(), state_dir)
            try:
                engine.serve(stop)
            finally:
                engine.close()
                log.info("engine worker %s stopped", os.getpid())
        finally:
            guard.release()


def spawn_worker(state_dir: Path) -> subprocess.Popen:
    """Start a detached worker process (own session). It logs to engine.log; its stdout and
    stderr go there too, so even a crash before logging starts leaves its traceback there."""
    with open(log_path(state_dir, "engine"), "ab") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "ptychoflow.flowengine.worker", str(state_dir)],
            stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, env=package_environment(),
            start_new_session=True, close_fds=True,
        )


def ensure_engine_running(profile: Any, timeout: float = 15.0) -> int:
    """Pid of the profile's engine worker, starting a detached one if none is alive."""
    env = EngineEnv.from_profile(profile)
    changed = write_env(env)
    pid = engine_pid(env.state_dir)
    if changed and pid:
        log.warning("the profile's sites changed; the running engine worker (pid %s) still uses the old ones "
                    "until it restarts (`ptychoflow engine stop`)", pid)
    return ensure_worker(env.state_dir, timeout)


def ensure_worker(state_dir: Path, timeout: float = 15.0) -> int:
    pid = engine_pid(state_dir)
    if pid and pid > 0:
        return pid
    process = spawn_worker(state_dir) if pid is None else None
    deadline = time.time() + timeout
    while time.time() < deadline:
        pid = engine_pid(state_dir)
        if pid and pid > 0:
            return pid
        if pid is None and process is not None and process.poll() is not None:
            raise EngineError(f"engine worker exited with {process.returncode}; see {log_path(state_dir, 'engine')}")
        time.sleep(0.05)
    raise EngineError(f"engine worker did not start within {timeout} s; see {log_path(state_dir, 'engine')}")


def stop_engine(state_dir: Path, timeout: float = 10.0) -> int | None:
    """SIGTERM the worker and wait for it to release its lock; returns its pid (None if none)."""
    pid = engine_pid(state_dir)
    if not pid or pid < 0:
        return None
    os.kill(pid, signal.SIGTERM)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if engine_pid(state_dir) is None:
            return pid
        time.sleep(0.05)
    raise EngineError(f"engine worker {pid} did not stop within {timeout} s")


if __name__ == "__main__":  # spawn_worker: stderr is engine.log already
    serve(Path(sys.argv[1]), stderr=False)
