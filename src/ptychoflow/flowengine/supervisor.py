"""Supervision of the local engine worker by the service that started it (``watch``,
``dashboard``): a worker that dies is started again, within a start limit, as systemd would.

Exactly one party restarts the worker. Under systemd, ``ptychoflow-engine.service`` does, and
the other units run with ``--no-engine``: their supervisor then only watches, and says in
their log when the worker is down or stalled. Either way the state is visible to everyone
through ``health.engine_health``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from pathlib import Path

from ptychoflow.errors import PtychoflowError
from ptychoflow.flowengine.health import EngineHealth, store_health
from ptychoflow.flowengine.store import Store

log = logging.getLogger(__name__)

CHECK_INTERVAL_S = 2.0
START_LIMIT_BURST = 5  # restarts within START_LIMIT_INTERVAL_S before giving up (systemd's StartLimitBurst)
START_LIMIT_INTERVAL_S = 300.0


class EngineSupervisor:
    """Checks the worker every `interval_s` in a daemon thread; restarts it when `restart`."""

    def __init__(self, state_dir: Path, *, restart: bool, interval_s: float = CHECK_INTERVAL_S) -> None:
        self.state_dir = Path(state_dir)
        self.restart = restart
        self.interval_s = interval_s
        self._restarts: deque[float] = deque()
        self._reported: str | None = None  # the last state we logged, so each change is logged once
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._store: Store | None = None

    def start(self) -> EngineSupervisor:
        self._thread = threading.Thread(target=self._run, name="engine-supervisor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if self._store is not None:
            self._store.close()
            self._store = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.check()
            except Exception:  # a supervisor that dies silently is worse than none
                log.exception("engine supervisor: check failed; trying again in %.0f s", self.interval_s)

    def check(self) -> EngineHealth:
        """One look at the worker: restart it if it is down and we may, log what changed."""
        if self._store is None:
            self._store = Store(self.state_dir)
        store = self._store
        health = store_health(store)
        if health.state == "down" and self.restart and self._may_restart():
            from ptychoflow.flowengine.worker import ensure_worker

            try:
                pid = ensure_worker(self.state_dir)
            except PtychoflowError as exc:
                log.error("engine worker is down and could not be restarted: %s", exc)
            else:
                log.warning("engine worker was down (%d active run(s) waiting); restarted it, pid %d",
                            health.active_runs, pid)
                self._reported = None
                return store_health(store)
        self._report(health)
        return health

    def _may_restart(self) -> bool:
        now = time.monotonic()
        while self._restarts and now - self._restarts[0] > START_LIMIT_INTERVAL_S:
            self._restarts.popleft()
        if len(self._restarts) >= START_LIMIT_BURST:
            return False
        self._restarts.append(now)
        return True

    def _report(self, health: EngineHealth) -> None:
        if health.state == self._reported or health.state == "starting":
            return
        self._reported = health.state
        if health.state == "running":
            log.info("engine worker: %s", health.summary())
        elif health.state == "down" and self.restart:
            log.error("engine worker: %s; it died %d times within %.0f s, so it is not restarted again: see "
                      "`ptychoflow logs engine`, then `ptychoflow engine serve`", health.summary(),
                      START_LIMIT_BURST, START_LIMIT_INTERVAL_S)
        else:
            where = "" if self.restart else " (supervised elsewhere: systemctl status ptychoflow-engine)"
            log.error("engine worker: %s%s", health.summary(), where)
