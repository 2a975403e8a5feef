"""Where the dashboard's numbers come from.

Each source is a zero-argument callable returning JSON-able data, so the page works with
either backend and degrades (shows the error) when one part of the system is down.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from ptychoflow.backends.base import Backend, RunInfo
from ptychoflow.names import printable
from ptychoflow.site import SiteLayout

log = logging.getLogger(__name__)
Source = Callable[[], Any]


def run_to_json(run: RunInfo) -> dict[str, Any]:
    data = asdict(run)
    data["status"] = run.status.value
    data["timeline"] = [{**asdict(s), "duration": s.duration} for s in run.timeline]
    return data


def runs_source(backend: Backend, limit: int = 50) -> Source:
    def runs() -> list[dict[str, Any]]:
        return [run_to_json(run) for run in backend.list_runs(limit=limit)]

    return runs


@dataclass
class DashboardSources:
    runs: Source
    journal: Source = lambda: []
    watcher: Source = lambda: {}
    models: Source = lambda: []
    edge: Source = lambda: {}

    def snapshot(self) -> dict[str, Any]:
        """Everything at once; a failing source reports its error instead of failing the page."""
        out: dict[str, Any] = {}
        for name in ("runs", "journal", "watcher", "models", "edge"):
            try:
                out[name] = getattr(self, name)()
            except Exception as exc:  # one broken subsystem must not blank the operator's page
                log.debug("dashboard source %s failed: %s", name, exc)
                out[name] = {"error": f"{type(exc).__name__}: {exc}"}
        return out


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


def watcher_summary(state_dir: Path) -> dict[str, Any]:
    """The watcher's runs by state, and the INACTIVE ones with their reasons."""
    from ptychoflow.watcher.journal import JOURNAL_FILENAME, Journal

    path = state_dir / JOURNAL_FILENAME
    if not path.exists():
        return {}
    journal = Journal(path, readonly=True)
    try:
        return {"runs": journal.run_state_counts(),
                "inactive": [{"run_id": r.run_id, "since": r.t_inactive, "reason": r.error} for r in journal.inactive_runs()]}
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
    return DashboardSources(
        runs=runs_source(backend),
        journal=lambda: journal_rows(layout.state_dir),
        watcher=lambda: watcher_summary(layout.state_dir),
        models=lambda: registry_rows(layout.hpc.registry_dir),
        edge=lambda: edge_status(layout.edge.status_file),
    )
