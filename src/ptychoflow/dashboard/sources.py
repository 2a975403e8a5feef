"""Where the dashboard's numbers come from.

Each source is a zero-argument callable returning JSON-able data, so the page works with
either backend and degrades (shows the error) when one part of the system is down. The
page shows recent runs; ``/metrics`` also reads ``stats``, aggregates over the whole run
store, so its counters never go down.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ptychoflow import clock
from ptychoflow.backends.base import Backend
from ptychoflow.flowengine.store import RunStats
from ptychoflow.names import printable
from ptychoflow.site import SiteLayout

log = logging.getLogger(__name__)
Source = Callable[[], Any]
DURATION_BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600)  # seconds: a Pass state to a long training


def runs_source(backend: Backend, limit: int = 50) -> Source:
    def runs() -> list[dict[str, Any]]:
        return [run.to_json() for run in backend.list_runs(limit=limit)]

    return runs


@dataclass
class DashboardSources:
    runs: Source
    journal: Source = lambda: []
    watcher: Source = lambda: None  # watcher_summary(): None before the watcher first ran
    models: Source = lambda: []
    edge: Source = lambda: {}
    engine: Source = lambda: None  # EngineHealth.to_json(); None where no local engine runs flows (globus)
    stats: Callable[[], RunStats | None] = lambda: None  # whole-store aggregates, for /metrics only

    PAGE_SOURCES = ("runs", "journal", "watcher", "models", "edge", "engine")

    def read(self, name: str) -> Any:
        """One source's value, or ``{"error": ...}``: one broken subsystem must not blank the page."""
        try:
            return getattr(self, name)()
        except Exception as exc:
            log.debug("dashboard source %s failed: %s", name, exc)
            return {"error": f"{type(exc).__name__}: {exc}"}

    def snapshot(self) -> dict[str, Any]:
        """Everything the page shows, at once."""
        return {name: self.read(name) for name in self.PAGE_SOURCES}


def registry_rows(registry_dir: Path) -> list[dict[str, Any]]:
    """The model registry's versions, oldest first (empty before the first training)."""
    from ptychoflow.nn.registry import Registry

    if not registry_dir.exists():
        return []
    return [{"version": v.version, "parent": v.parent, "scans": v.scans_seen, "val_loss": v.val_loss, "ssim": v.ssim,
             "best": v.is_best} for v in Registry(registry_dir).list()]


def journal_rows(state_dir: Path, recent: int = 25) -> list[dict[str, Any]]:
    """Files the watcher does not start, with why and for how long they have been unchanged,
    then its most recent scans (empty before the watcher first ran). File names and reasons
    come with control characters escaped, as `watch status` prints them."""
    from ptychoflow.watcher.journal import JOURNAL_FILENAME, Journal
    from ptychoflow.watcher.status import age

    path = state_dir / JOURNAL_FILENAME
    if not path.exists():
        return []
    journal = Journal(path, readonly=True)
    now = time.time()
    try:
        rows = journal.not_started(recent) + [r for r in journal.recent(recent) if r.t_since is None]
        return [{"scan": printable(Path(r.path).name), "state": r.state, "run_id": r.run_key,
                 "reason": None if r.reason is None else printable(r.reason),
                 "age_s": None if r.t_since is None else round(now - r.t_since, 1),
                 "age": "" if r.t_since is None else age(now - r.t_since)}
                for r in rows[:recent]]
    finally:
        journal.close()


def watcher_summary(state_dir: Path) -> dict[str, Any] | None:
    """Is the watcher running; its journal's scans and runs by state; the INACTIVE runs with
    their reasons (None before the watcher first ran here)."""
    from ptychoflow.watcher.journal import JOURNAL_FILENAME, Journal, watcher_guard

    path = state_dir / JOURNAL_FILENAME
    if not path.exists():
        return None
    journal = Journal(path, readonly=True)
    try:
        return {"up": watcher_guard(state_dir).holder_pid() is not None, "scans": journal.state_counts(),
                "runs": journal.run_state_counts(),
                "inactive": [{"run_id": r.run_id, "since": clock.iso(r.t_inactive), "reason": r.error} for r in journal.inactive_runs()]}
    finally:
        journal.close()


def edge_status(status_file: Path) -> dict[str, Any]:
    from ptychoflow_edge import running_status

    status = running_status(status_file)
    if status is None:
        raise ConnectionError(f"edge service not running (no live {status_file.name})")
    return status


def profile_sources(profile: Any, backend: Backend) -> DashboardSources:
    """Every source for one deployment, from its profile's site layout."""
    layout = SiteLayout.from_profile(profile)

    def engine() -> dict[str, Any] | None:
        health = backend.worker_health()  # None: a service runs the flows (no local engine worker)
        return None if health is None else health.to_json()

    return DashboardSources(
        runs=runs_source(backend),
        journal=lambda: journal_rows(layout.state_dir),
        watcher=lambda: watcher_summary(layout.state_dir),
        models=lambda: registry_rows(layout.hpc.registry_dir),
        edge=lambda: edge_status(layout.edge.status_file),
        engine=engine,
        stats=lambda: backend.run_stats(DURATION_BUCKETS),  # None where the runs live in a service
    )
