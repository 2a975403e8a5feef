"""Is the local engine worker alive and making progress? One answer for every place that asks
(``watch status``, the ``runs list`` banner, the dashboard, ``/metrics``, the supervisor).

Alive: a process holds ``<state_dir>/engine.lock`` (the kernel drops the lock when it dies,
even by ``kill -9``). Making progress: its scheduling loop touches ``engine.heartbeat`` at
least every ``HEARTBEAT_INTERVAL_S``; a live worker whose heartbeat is older than
``STALL_AFTER_S`` is *stalled* (stuck in a call, or frozen with SIGSTOP).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from ptychoflow.fs import SingleInstance

LOCK_FILENAME = "engine.lock"
HEARTBEAT_FILENAME = "engine.heartbeat"
HEARTBEAT_INTERVAL_S = 1.0
STALL_AFTER_S = 60.0  # the loop never sleeps over 1 s; a minute without a beat is not load

EngineState = Literal["running", "starting", "stalled", "down"]


def engine_guard(state_dir: Path) -> SingleInstance:
    """The single-instance guard of the worker for ``state_dir``."""
    return SingleInstance(Path(state_dir) / LOCK_FILENAME, "engine worker")


def engine_pid(state_dir: Path) -> int | None:
    """Pid of the live worker for ``state_dir``, None when none runs, -1 while it starts."""
    return engine_guard(state_dir).holder_pid()


def beat(state_dir: Path) -> None:
    """Record that the engine loop is making progress (the file's modification time)."""
    path = Path(state_dir) / HEARTBEAT_FILENAME
    try:
        os.utime(path)
    except FileNotFoundError:
        path.touch()


def heartbeat_age(state_dir: Path, now: float | None = None) -> float | None:
    """Seconds since the last beat (None if the engine never beat here)."""
    try:
        stamp = (Path(state_dir) / HEARTBEAT_FILENAME).stat().st_mtime
    except FileNotFoundError:
        return None
    return max(0.0, (time.time() if now is None else now) - stamp)


@dataclass(frozen=True)
class EngineHealth:
    """The worker's state, and what it means for the runs waiting on it."""

    state: EngineState
    pid: int | None
    heartbeat_age_s: float | None
    active_runs: int
    oldest_active_age_s: float | None  # how long the longest-waiting ACTIVE run has sat in its state

    @property
    def up(self) -> bool:
        return self.state in ("running", "starting")

    def summary(self) -> str:
        """One line for people: what is wrong, what it costs, and what to do."""
        waiting = (f"; {self.active_runs} active run(s) not advancing" if self.active_runs else "")
        if self.state == "running":
            return f"running, pid {self.pid}; {self.active_runs} active run(s)"
        if self.state == "starting":
            return "starting"
        if self.state == "stalled":
            return (f"STALLED: pid {self.pid} has made no progress for {self.heartbeat_age_s:.0f} s{waiting} "
                    "(see `ptychoflow logs engine`; restart: `ptychoflow engine stop`, then `ptychoflow engine serve`)")
        if not self.active_runs:
            return "not running (no active run needs it; `flows run`, `watch` and `dashboard` start one)"
        return (f"DOWN: not running{waiting} (start it: `ptychoflow engine serve`, or "
                "`systemctl start ptychoflow-engine`)")

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "up": self.up, "summary": self.summary()}


def engine_health(state_dir: Path, *, active_runs: int = 0, oldest_active_since: float | None = None,
                  now: float | None = None) -> EngineHealth:
    """The worker of `state_dir` as it is now; the caller passes what the run store says."""
    now = time.time() if now is None else now
    pid = engine_pid(state_dir)
    age = heartbeat_age(state_dir, now)
    oldest = None if oldest_active_since is None else max(0.0, now - oldest_active_since)
    if pid is None:
        state: EngineState = "down"
    elif pid < 0:
        state = "starting"
    elif age is not None and age > STALL_AFTER_S:
        state = "stalled"
    else:
        state = "running"
    return EngineHealth(state, pid if pid and pid > 0 else None, age, active_runs, oldest)


def store_health(store: Any, now: float | None = None) -> EngineHealth:
    """The health of the worker serving `store` (a ``flowengine.store.Store``)."""
    return engine_health(store.path.parent, active_runs=len(store.active_run_ids()),
                         oldest_active_since=store.oldest_active_since(), now=now)
