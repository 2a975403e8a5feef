"""Where the dashboard's numbers come from.

Each source is a zero-argument callable returning JSON-able data, so the page works with
either backend and degrades (shows the error) when one part of the system is down.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from dataclasses import asdict, dataclass
from typing import Any, Callable

from ptychoflow.backends.base import Backend, RunInfo

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


def http_json_source(url: str, timeout_s: float = 1.0) -> Source:
    """JSON from a local service (the edge's /status)."""

    def fetch() -> Any:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 (local URL from the profile)
            return json.loads(response.read())

    return fetch


@dataclass
class DashboardSources:
    runs: Source
    journal: Source = lambda: []
    models: Source = lambda: []
    edge: Source = lambda: {}

    def snapshot(self) -> dict[str, Any]:
        """Everything at once; a failing source reports its error instead of failing the page."""
        out: dict[str, Any] = {}
        for name in ("runs", "journal", "models", "edge"):
            try:
                out[name] = getattr(self, name)()
            except Exception as exc:  # one broken subsystem must not blank the operator's page
                log.debug("dashboard source %s failed: %s", name, exc)
                out[name] = {"error": f"{type(exc).__name__}: {exc}"}
        return out
