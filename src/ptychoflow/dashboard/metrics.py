"""Prometheus metrics for operators, computed from a dashboard snapshot at scrape time."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest

STATE_BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600)


def render_metrics(snapshot: dict[str, Any]) -> bytes:
    """Runs by status, state durations, edge fps and dropped frames, in text exposition format."""
    registry = CollectorRegistry()
    runs_by_status = Gauge("ptychoflow_runs", "Flow runs by status", ["status"], registry=registry)
    durations = Histogram("ptychoflow_state_duration_seconds", "Durations of finished flow states", ["state"],
                          buckets=STATE_BUCKETS, registry=registry)
    runs = snapshot.get("runs") if isinstance(snapshot.get("runs"), list) else []
    for status in ("ACTIVE", "INACTIVE", "SUCCEEDED", "FAILED", "ENDED"):
        runs_by_status.labels(status).set(sum(1 for r in runs if r.get("status") == status))
    for run in runs:
        for state in run.get("timeline", []):
            if state.get("duration") is not None:
                durations.labels(state["name"]).observe(state["duration"])
    watcher = snapshot.get("watcher") if isinstance(snapshot.get("watcher"), dict) else {}
    watcher_runs = Gauge("ptychoflow_watcher_runs", "Runs the watcher started, by journal state (inactive: waiting for a person)",
                         ["state"], registry=registry)
    counts = watcher.get("runs") or {}
    for state in ("triggering", "triggered", "inactive", "succeeded", "failed"):
        watcher_runs.labels(state).set(counts.get(state, 0))
    edge = snapshot.get("edge") if isinstance(snapshot.get("edge"), dict) else {}
    for key, help_text in (("fps", "Edge inference frames per second"),
                           ("frames_dropped", "Frames dropped by the edge (backpressure)"),
                           ("frames_inferred", "Frames inferred by the edge"),
                           ("frames_malformed", "Malformed frames received by the edge")):
        gauge = Gauge(f"ptychoflow_edge_{key}", help_text, registry=registry)
        value = edge.get(key)
        gauge.set(float(value) if isinstance(value, (int, float)) else float("nan"))
    return generate_latest(registry)
