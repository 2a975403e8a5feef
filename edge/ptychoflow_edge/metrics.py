"""Counters for the page, /status and Prometheus, kept in one place so they never disagree.

Each service gets its own Prometheus registry (several services can live in one test
process). Plain integers are kept beside the Prometheus objects for the JSON status.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Callable

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
STAGES = ("receive", "preprocess", "infer", "stitch", "publish")
FPS_WINDOW_S = 2.0


class EdgeMetrics:
    def __init__(self, queue_depth: Callable[[], int] = lambda: 0) -> None:
        self.registry = CollectorRegistry()
        reg = self.registry
        self._received = Counter("ptychoflow_edge_frames_received", "Frames received from the stream", registry=reg)
        self._inferred = Counter("ptychoflow_edge_frames_inferred", "Frames inferred and stitched", registry=reg)
        self._dropped = Counter("ptychoflow_edge_frames_dropped", "Frames dropped, by reason", ["reason"], registry=reg)
        self._malformed = Counter(
            "ptychoflow_edge_messages_malformed", "Malformed stream messages, by reason", ["reason"], registry=reg
        )
        self._latency = Histogram(
            "ptychoflow_edge_frame_latency_seconds", "Receive to stitched, per frame", buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self._stage = Counter("ptychoflow_edge_stage_seconds", "Time spent per pipeline stage", ["stage"], registry=reg)
        self._swaps = Counter("ptychoflow_edge_model_swaps", "Models swapped in", registry=reg)
        self._refused = Counter("ptychoflow_edge_models_refused", "Models refused by the checks", registry=reg)
        Gauge("ptychoflow_edge_frames_per_second", "Inferred frames/s over the last 2 s", registry=reg).set_function(
            self.fps
        )
        Gauge("ptychoflow_edge_queue_depth", "Frames waiting for inference", registry=reg).set_function(queue_depth)
        self._model_info = Gauge("ptychoflow_edge_model_info", "Model being served (value 1)", ["version"], registry=reg)
        self._lock = threading.Lock()
        self.counts = {"received": 0, "inferred": 0, "dropped": 0, "malformed": 0}
        self.dropped_by_reason: dict[str, int] = {}
        self.malformed_by_reason: dict[str, int] = {}
        self.stage_seconds = dict.fromkeys(STAGES, 0.0)
        self._recent_latency: deque[float] = deque(maxlen=4096)
        self._recent_batches: deque[tuple[float, int]] = deque()

    def received(self, n: int = 1) -> None:
        with self._lock:
            self.counts["received"] += n
        self._received.inc(n)

    def dropped(self, reason: str, n: int = 1) -> None:
        with self._lock:
            self.counts["dropped"] += n
            self.dropped_by_reason[reason] = self.dropped_by_reason.get(reason, 0) + n
        self._dropped.labels(reason).inc(n)

    def malformed(self, reason: str) -> None:
        with self._lock:
            self.counts["malformed"] += 1
            self.malformed_by_reason[reason] = self.malformed_by_reason.get(reason, 0) + 1
        self._malformed.labels(reason).inc()

    def inferred(self, latencies_s: np.ndarray, stage_s: dict[str, float]) -> None:
        now = time.monotonic()
        with self._lock:
            self.counts["inferred"] += len(latencies_s)
            self._recent_latency.extend(latencies_s.tolist())
            self._recent_batches.append((now, len(latencies_s)))
            for stage, seconds in stage_s.items():
                self.stage_seconds[stage] += seconds
        self._inferred.inc(len(latencies_s))
        for value in latencies_s:
            self._latency.observe(float(value))
        for stage, seconds in stage_s.items():
            self._stage.labels(stage).inc(seconds)

    def stage(self, name: str, seconds: float) -> None:
        """Time spent outside the worker (the receiver's decode and checks)."""
        with self._lock:
            self.stage_seconds[name] += seconds
        self._stage.labels(name).inc(seconds)

    def model_swapped(self, old: str | None, new: str) -> None:
        self._swaps.inc()
        if old is not None:
            self._model_info.remove(old)
        self._model_info.labels(new).set(1)

    def model_refused(self) -> None:
        self._refused.inc()

    def fps(self) -> float:
        """Inferred frames per second over the last FPS_WINDOW_S (0 when idle)."""
        now = time.monotonic()
        with self._lock:
            while self._recent_batches and now - self._recent_batches[0][0] > FPS_WINDOW_S:
                self._recent_batches.popleft()
            total = sum(n for _, n in self._recent_batches)
        return total / FPS_WINDOW_S

    def recent_latencies(self) -> np.ndarray:
        """Receive-to-stitched seconds of the last (up to) 4096 frames."""
        with self._lock:
            return np.array(self._recent_latency)

    def latency_ms(self) -> dict[str, float | None]:
        recent = self.recent_latencies()
        if recent.size == 0:
            return {"p50": None, "p99": None}
        p50, p99 = np.percentile(recent, [50, 99]) * 1e3
        return {"p50": round(float(p50), 3), "p99": round(float(p99), 3)}

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            counts = dict(self.counts)
            dropped = dict(self.dropped_by_reason)
            malformed = dict(self.malformed_by_reason)
            stages = {k: round(v, 4) for k, v in self.stage_seconds.items()}
        return {
            "counters": counts,
            "dropped_by_reason": dropped,
            "malformed_by_reason": malformed,
            "fps": round(self.fps(), 2),
            "latency_ms": self.latency_ms(),
            "stage_seconds": stages,
        }

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
