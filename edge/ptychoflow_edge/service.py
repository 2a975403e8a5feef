"""The edge service: wiring of receiver -> queue -> batcher -> model -> mosaic/publisher, plus
the web page, the status file and a clean SIGTERM shutdown.

Before any model exists, frames wait in the bounded queue (the worker does not take them),
so a model activated shortly after a scan starts still sees every frame; past the bound,
frames are counted as dropped with reason ``queue_full``. The model is swapped only at the
top of the loop, between batches, so a swap never loses or splits a batch.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Any

import numpy as np
import zmq

from ptychoflow.errors import PtychoflowError
from ptychoflow.stream import END, START
from ptychoflow_edge.batcher import Batcher
from ptychoflow_edge.config import EdgeConfig
from ptychoflow_edge.frames import ControlItem, FrameItem, FrameQueue
from ptychoflow_edge.inference import LoadedModel, best_providers
from ptychoflow_edge.metrics import EdgeMetrics
from ptychoflow_edge.model_manager import ModelManager
from ptychoflow_edge.mosaics import MosaicStore
from ptychoflow_edge.publisher import ResultsPublisher
from ptychoflow_edge.ratelimit import RateLimitedLog
from ptychoflow_edge.receiver import Receiver
from ptychoflow_edge.statusfile import write_status

log = logging.getLogger("ptychoflow.edge")


class EdgeStartError(PtychoflowError):
    """The service could not start (address in use, unwritable directory)."""


class EdgeService:
    def __init__(self, config: EdgeConfig) -> None:
        self.config = config
        self.queue = FrameQueue(config.queue_frames)
        self.metrics = EdgeMetrics(queue_depth=lambda: self.queue.depth)
        self.receiver = Receiver(config.stream_address, self.queue, self.metrics, config.scan_limits)
        self.providers = best_providers(config.providers)
        self.models = ModelManager(
            config.model_dir, providers=self.providers, intra_op_threads=config.intra_op_threads,
            poll_s=config.model_poll_s, on_swap=self.metrics.model_swapped, on_refuse=self.metrics.model_refused,
            last_good_dir=config.layout.last_good_dir,
        )
        self.mosaics = MosaicStore(config.mosaics_dir, align_offsets=config.align_offsets, polish=config.polish)
        self.batcher = Batcher(self.queue, config.batch_size, config.max_wait_ms / 1000)
        self.publisher: ResultsPublisher | None = None
        self.web: Any = None
        self.pva: Any = None
        self.pva_out: Any = None
        self.started_at = time.time()
        self._state = "starting"
        self._intake_closed = threading.Event()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._status_thread: threading.Thread | None = None
        self._log = RateLimitedLog(log)

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> "EdgeService":
        """Start every part; a port or directory problem raises EdgeStartError (one line)."""
        cfg = self.config
        try:
            cfg.model_dir.mkdir(parents=True, exist_ok=True)
            cfg.mosaics_dir.mkdir(parents=True, exist_ok=True)
            self.publisher = ResultsPublisher(cfg.results_address)
        except (OSError, zmq.ZMQError) as exc:
            raise EdgeStartError(f"edge: cannot start ({cfg.results_address}, {cfg.path}): {exc}") from None
        try:
            self.receiver.start()
        except zmq.ZMQError as exc:
            self.publisher.close()
            raise EdgeStartError(f"edge: cannot subscribe to {cfg.stream_address}: {exc}") from None
        self.models.start()
        self._worker = self._spawn(self._work, "edge-worker")
        try:
            if cfg.pva_channel or cfg.pva_output:
                self._start_pva()
            if cfg.http:
                from ptychoflow_edge.web import WebServer, create_app

                self.web = WebServer(create_app(self), cfg.http_host, cfg.http_port)
                self.web.start()
        except RuntimeError as exc:  # p4p missing, HTTP port in use
            self.stop()
            raise EdgeStartError(f"edge: {exc}") from None
        self._state = "running"
        self._status_thread = self._spawn(self._status_loop, "edge-status")
        model = self.models.serving
        log.info(
            "edge serving: stream %s -> results %s, page %s, provider %s (threads %d), model %s",
            cfg.stream_address, self.publisher.address, self.web.url if self.web else "(off)", self.providers[0],
            cfg.intra_op_threads, model.version if model else f"none yet (frames queue up to {cfg.queue_frames})",
        )
        return self

    def _start_pva(self) -> None:
        from ptychoflow_edge.pva import PvaFrameSource, PvaPhaseServer

        cfg = self.config
        if cfg.pva_output:
            self.pva_out = PvaPhaseServer(cfg.pva_output, min_interval_s=cfg.pva_output_interval_s)
        if cfg.pva_channel:
            if not cfg.pva_pixel_size_m:
                raise RuntimeError("pvAccess input needs the object pixel size (pva_pixel_size_m): "
                                   "areaDetector frames carry no scan geometry")
            self.pva = PvaFrameSource(
                cfg.pva_channel, self.receiver.submit, pixel_size_m=cfg.pva_pixel_size_m,
                position_attributes=cfg.pva_position_attributes, position_scale=cfg.pva_position_scale,
                on_gap=lambda n: self.metrics.dropped("pva_gap", n), on_error=self.metrics.malformed,
            ).start()

    def _publish_pva(self, scan: Any, *, force: bool = False) -> None:
        """The live phase to the pvAccess output, rate limited (rendering only when due)."""
        if self.pva_out is None or not (force or self.pva_out.due(scan.scan_id, scan.count)):
            return
        result = scan.image()
        if result is None:
            return
        try:  # a display problem must never cost a frame: the batch is already stitched
            self.pva_out.publish(result[0], scan_id=scan.scan_id, frames=scan.count, pixel_size_m=scan.pixel_size_m,
                                 force=force)
        except Exception as exc:
            self._log.warning("pva_out", "pvAccess output %s: %s: %s", self.pva_out.pv_name, type(exc).__name__, exc)

    def _spawn(self, target: Any, name: str) -> threading.Thread:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        """Stop taking frames, finish the queue (bounded time), save open scans, close."""
        if self._state in ("stopping", "stopped"):
            return
        self._state = "stopping"
        self.receiver.stop()
        if self.pva is not None:
            self.pva.stop()
        self._intake_closed.set()
        if self._worker is not None:
            self._worker.join(timeout=self.config.drain_timeout_s + 5)  # the worker drains then exits
        self._stop.set()
        if self._status_thread is not None:
            self._status_thread.join(timeout=5)
        left = self.queue.depth
        if left:
            self.metrics.dropped("shutdown", left)
            log.warning("shutdown: %d queued frames not inferred (counted as dropped)", left)
        self.mosaics.save_open()
        self.models.stop()
        if self.web is not None:
            self.web.stop()
        if self.publisher is not None:
            self.publisher.close()
        if self.pva_out is not None:
            self.pva_out.close()
        self._state = "stopped"
        write_status(self.config.status_file, self.status())
        log.info("edge stopped: %s", self.metrics.counts)

    def serve_forever(self) -> None:
        """Run until SIGTERM or SIGINT (main thread only), then stop cleanly."""
        done = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: done.set())
        self.start()
        while not done.wait(0.5):  # wake regularly so the signal handler runs promptly
            pass
        log.info("signal received: shutting down")
        self.stop()

    # -- worker -------------------------------------------------------------------------
    def _work(self) -> None:
        drain_deadline: float | None = None
        while True:
            if self._intake_closed.is_set():
                drain_deadline = drain_deadline or time.monotonic() + self.config.drain_timeout_s
                idle = len(self.queue) == 0 and not self.batcher.holding
                if idle or time.monotonic() > drain_deadline or self.models.serving is None:
                    return
            model = self.models.current()  # the swap point: between batches
            if model is None:
                time.sleep(0.02)
                continue
            item = self.batcher.next(0.05)
            if item is None:
                continue
            try:
                if isinstance(item, ControlItem):
                    self._control(item)
                else:
                    self._infer(item, model)
            except Exception as exc:  # never let one bad batch stop the service
                n = 0 if isinstance(item, ControlItem) else len(item)
                self.metrics.dropped("error", n)
                self._log.warning("worker", "batch failed (%d frames dropped): %s: %s", n, type(exc).__name__, exc)

    def _control(self, item: ControlItem) -> None:
        assert self.publisher is not None
        if item.kind == START:
            self.mosaics.start(item.header)
            self.publisher.control(item.header)
        elif item.kind == END:
            files = self.mosaics.end(item.scan_id, complete=not item.header.get("incomplete"))
            scan = self.mosaics.get(item.scan_id)
            if scan is not None:
                self._publish_pva(scan, force=True)
            self.publisher.control({"type": END, "scan_id": item.scan_id, "n_frames": item.header.get("n_frames"),
                                    "inferred": scan.count if scan else 0, "files": files})

    def _infer(self, batch: list[FrameItem], model: LoadedModel) -> None:
        assert self.publisher is not None
        scan = self.mosaics.get(batch[0].scan_id)
        if scan is None:  # evicted: more scans open at once than the store keeps
            self.metrics.dropped("no_scan", len(batch))
            return
        t0 = time.perf_counter()
        try:
            inputs = model.prepare(np.stack([item.frame for item in batch]))
        except ValueError as exc:  # frames this model's preprocessing cannot take (too small for the crop)
            self.metrics.dropped("incompatible", len(batch))
            self._log.warning("incompatible", "model %s cannot take frames of %s: %s", model.version, scan.scan_id, exc)
            return
        t1 = time.perf_counter()
        phase = model.infer(inputs)
        finite = np.isfinite(phase.reshape(len(batch), -1)).all(axis=1)
        if not finite.all():  # a model's NaN must never reach a mosaic (it would spread over its neighbours)
            self.metrics.dropped("nonfinite_output", int((~finite).sum()))
            self._log.warning("nonfinite", "model %s gave non-finite phase for %d frames of %s: dropped",
                              model.version, int((~finite).sum()), scan.scan_id)
            batch, phase, inputs = [item for item, ok in zip(batch, finite) if ok], phase[finite], inputs[np.flatnonzero(finite)]
            if not batch:
                return
        t2 = time.perf_counter()
        positions_m = np.array([item.position_m for item in batch])
        centres = scan.add(phase, positions_m, model.weight, model.version,
                           pixel_scale=model.pixel_scale(batch[0].frame.shape[-1]))
        if model.probe is not None and self.config.polish_sweeps > 0:
            scan.keep_for_polish(model.measured_amplitudes(inputs), centres, model.probe, model.manifest,
                                 max_bytes=self.config.polish_max_mb * 2**20)
        t3 = time.perf_counter()
        latencies = t3 - np.array([item.received for item in batch])
        self.publisher.results(scan.scan_id, [item.index for item in batch], positions_m, centres, phase,
                               model.version, latencies)
        self._publish_pva(scan)
        t4 = time.perf_counter()
        self.metrics.inferred(latencies, {"preprocess": t1 - t0, "infer": t2 - t1, "stitch": t3 - t2, "publish": t4 - t3})

    # -- status -------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        model = self.models.serving
        current = self.mosaics.get(None)
        return {
            "service": "ptychoflow-edge",
            "state": self._state,
            "pid": os.getpid(),
            "started_at": self.started_at,
            "updated_at": time.time(),
            "http_url": self.web.url if self.web else None,
            "stream_address": self.config.stream_address,
            "results_address": self.publisher.address if self.publisher else None,
            "providers": self.providers,
            "model": None if model is None else {
                "version": model.version, "sha256": model.manifest.sha256, "provider": model.providers[0],
                "preprocess_backend": model.preprocess_backend, "input_shape": model.manifest.input_shape,
            },
            "model_loading": self.models.loading,
            "model_events": list(self.models.events),
            "queue": {"depth": self.queue.depth, "capacity": self.queue.capacity},
            "batch": {"size": self.batcher.size, "max_wait_ms": self.config.max_wait_ms},
            "current_scan": current.summary() if current else None,
            "scans": self.mosaics.summaries(),
            **self.metrics.snapshot(),
        }

    def _status_loop(self) -> None:
        while not self._stop.is_set():
            current = self.mosaics.get(None)
            if current is not None:
                self._publish_pva(current)  # what the rate limit held back during the last batches
            try:
                write_status(self.config.status_file, self.status())
            except OSError as exc:
                self._log.warning("status", "cannot write %s: %s", self.config.status_file, exc)
            self._stop.wait(self.config.status_interval_s)
