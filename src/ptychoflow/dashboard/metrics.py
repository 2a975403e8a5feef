"""Prometheus metrics for operators: a collector that reads the deployment at scrape time.

Counters and histograms come from aggregates over the whole run store (``Store.stats``), so
they only grow and ``rate()`` means what it says; gauges say how things are now (runs by
status, where runs wait, queue depths, engine and watcher up). A source that fails shows as
``ptychoflow_source_up{source=...} 0`` instead of failing the scrape.

  ptychoflow_runs_started_total{flow}                  runs ever started
  ptychoflow_runs_finished_total{flow,status}          outcomes: SUCCEEDED | FAILED | ENDED
  ptychoflow_state_failures_total{flow,state}          states that failed
  ptychoflow_run_duration_seconds{flow,status}         histogram of finished runs
  ptychoflow_state_duration_seconds{flow,state}        histogram of finished states
  ptychoflow_runs{status}                              runs by status now (ACTIVE, INACTIVE, …)
  ptychoflow_active_states{flow,state}                 ACTIVE runs by the state they are in
  ptychoflow_engine_up, ptychoflow_engine_heartbeat_age_seconds,
  ptychoflow_oldest_active_state_age_seconds           the local engine worker (local backend)
  ptychoflow_watcher_up, ptychoflow_watcher_queue_depth, ptychoflow_watcher_scans{state},
  ptychoflow_watcher_runs{state}                       the watcher's runs (inactive: waiting for a person)
  ptychoflow_edge_up, ptychoflow_edge_frames_total{outcome}, ptychoflow_edge_fps,
  ptychoflow_edge_queue_depth                          the edge service
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from ptychoflow.backends.base import RunStatus
from ptychoflow.dashboard.sources import DashboardSources
from ptychoflow.flowengine.store import Histogram, RunStats

FINISHED = tuple(s.value for s in RunStatus if s.finished)
EDGE_OUTCOMES = ("received", "inferred", "dropped", "malformed")
WATCHER_RUN_STATES = ("triggering", "triggered", "inactive", "succeeded", "failed")


def _histogram(name: str, documentation: str, labels: list[str], series: list[Histogram],
               bounds: tuple[float, ...]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=labels)
    for h in series:
        buckets = [(repr(float(b)), c) for b, c in zip(bounds, h.cumulative)] + [("+Inf", h.count)]
        family.add_metric(list(h.labels), buckets, h.total)
    return family


def _gauge(name: str, documentation: str, value: float | None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=math.nan if value is None else float(value))


def run_metrics(stats: RunStats) -> Iterator[Metric]:
    started = CounterMetricFamily("ptychoflow_runs_started", "Flow runs started, ever", labels=["flow"])
    finished = CounterMetricFamily("ptychoflow_runs_finished", "Flow runs finished, by outcome", labels=["flow", "status"])
    by_status = GaugeMetricFamily("ptychoflow_runs", "Flow runs by status now", labels=["status"])
    per_flow: dict[str, int] = defaultdict(int)
    per_status: dict[str, int] = {s.value: 0 for s in RunStatus}
    for (flow, status), count in stats.runs:
        per_flow[flow] += count
        per_status[status] = per_status.get(status, 0) + count
        if status in FINISHED:
            finished.add_metric([flow, status], count)
    for flow, count in sorted(per_flow.items()):
        started.add_metric([flow], count)
    for status, count in per_status.items():
        by_status.add_metric([status], count)
    failures = CounterMetricFamily("ptychoflow_state_failures", "Flow states that failed, ever", labels=["flow", "state"])
    for (flow, state), count in stats.failed_states:
        failures.add_metric([flow, state], count)
    active = GaugeMetricFamily("ptychoflow_active_states", "ACTIVE runs by the state they are in now",
                               labels=["flow", "state"])
    for (flow, state), count in stats.active_states:
        active.add_metric([flow, state], count)
    yield from (started, finished, failures, by_status, active)
    yield _histogram("ptychoflow_run_duration_seconds", "Durations of finished flow runs", ["flow", "status"],
                     stats.run_durations, stats.bounds)
    yield _histogram("ptychoflow_state_duration_seconds", "Durations of finished flow states", ["flow", "state"],
                     stats.state_durations, stats.bounds)


def engine_metrics(engine: dict[str, Any]) -> Iterator[Metric]:
    yield _gauge("ptychoflow_engine_up", "1 when the local engine worker is alive and making progress", engine["up"])
    yield _gauge("ptychoflow_engine_heartbeat_age_seconds", "Seconds since the engine loop last made progress",
                 engine["heartbeat_age_s"])
    yield _gauge("ptychoflow_oldest_active_state_age_seconds",
                 "Seconds the longest-waiting ACTIVE run has been in its current state (0: none active)",
                 engine["oldest_active_age_s"] or 0.0)


def watcher_metrics(watcher: dict[str, Any]) -> Iterator[Metric]:
    from ptychoflow.watcher.journal import QUEUED

    scans = GaugeMetricFamily("ptychoflow_watcher_scans", "Scans in the watcher journal by state", labels=["state"])
    for state, count in sorted(watcher["scans"].items()):
        scans.add_metric([state], count)
    yield scans
    runs = GaugeMetricFamily("ptychoflow_watcher_runs", "Runs the watcher started, by journal state (inactive: "
                             "waiting for a person)", labels=["state"])
    for state in WATCHER_RUN_STATES:
        runs.add_metric([state], watcher.get("runs", {}).get(state, 0))
    yield runs
    yield _gauge("ptychoflow_watcher_up", "1 while a watcher runs on this state directory", watcher["up"])
    yield _gauge("ptychoflow_watcher_queue_depth", "Finished scans waiting for a free run slot",
                 watcher["scans"].get(QUEUED, 0))


def edge_metrics(edge: dict[str, Any]) -> Iterator[Metric]:
    frames = CounterMetricFamily("ptychoflow_edge_frames", "Frames seen by the edge service since it started",
                                 labels=["outcome"])
    counters = edge.get("counters") or {}
    for outcome in EDGE_OUTCOMES:
        frames.add_metric([outcome], counters.get(outcome, 0))
    yield frames
    yield _gauge("ptychoflow_edge_fps", "Edge inference frames per second", edge.get("fps"))
    yield _gauge("ptychoflow_edge_queue_depth", "Frames waiting for inference at the edge",
                 (edge.get("queue") or {}).get("depth"))


class PtychoflowCollector(Collector):
    """Reads every source once per scrape; yields the metric families above."""

    SECTIONS = {"stats": run_metrics, "engine": engine_metrics, "watcher": watcher_metrics, "edge": edge_metrics}

    def __init__(self, sources: DashboardSources) -> None:
        self.sources = sources

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("ptychoflow_source_up", "1 when a part of the deployment answered this scrape",
                               labels=["source"])
        answered = {}
        for name, metrics in self.SECTIONS.items():
            value = self.sources.read(name)
            failed = isinstance(value, dict) and set(value) == {"error"}
            up.add_metric([name], 0 if failed else 1)
            answered[name] = bool(value) and not failed
            if answered[name]:
                yield from metrics(value)
        yield _gauge("ptychoflow_edge_up", "1 while the edge service runs", answered["edge"])
        yield up


def metrics_registry(sources: DashboardSources) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PtychoflowCollector(sources))
    return registry


def render_metrics(registry: CollectorRegistry) -> bytes:
    """The text exposition format of one scrape."""
    return generate_latest(registry)
