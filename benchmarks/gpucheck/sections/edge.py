"""Edge end to end: frames/s and p99 latency through the real edge service (ZeroMQ in, GPU
inference, stitching, results out), against bare inference in the same run.

A publisher process streams the frames of a simulated 128² scan (cycled) over ZeroMQ on
localhost to a running ``EdgeService`` that chose its own provider (TorchCUDA where
onnxruntime has no GPU build), and subscribes to its results stream. Burst: as fast as it
can send, as many frames as bare inference would take BURST_S for: the service's rate from
its first inferred frame to its last. Paced, once that backlog is gone: 70 % of that rate
for PACED_S: latency from receive to stitched, p50 and p99. Bare inference: the service's
own loaded model on prepared batches of the service's batch size. Last, a trivial model
(phase = 0.5 x frame) is hot-swapped in and the burst repeated: the service's ceiling
without the network's cost, which with the time per stage says what limits it.
Goals: at least 50,000 frames/s, and at least 0.9 of bare inference.
"""

from __future__ import annotations

import multiprocessing
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from gpucheck.measure import median_s
from gpucheck.record import Context, Record, figure, verdict

GOAL_FPS, GOAL_RATIO = 50_000, 0.9
BATCH, MAX_WAIT_MS = 64, 2.0
BURST_S, PACED_S, PACED_SHARE, DRAIN_S = 5.0, 4.0, 0.7, 15.0
MAX_BURST_FRAMES = 200_000  # queued at once: about 7 GB of 128² frames
DRY_BURST_S, DRY_PACED_S = 1.5, 1.5


# -- the publisher process ------------------------------------------------------------------
def _count_results(address: str, counts: dict[str, int], stop: threading.Event) -> None:
    import zmq

    sock = zmq.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.connect(address)
    while not stop.is_set():
        if sock.poll(50):
            while True:
                try:
                    parts = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                counts["results"] += len(parts) == 2  # a result is header + patch; start/end are one part
    sock.close()


def publisher_process(conn: Any, frames: np.ndarray, positions_m: np.ndarray, pixel_size_m: float) -> None:
    """Bind, report the address, then stream scans on command:
    ("stream", scan id, rate in Hz (0: as fast as possible), seconds, at most this many frames, results address)."""
    from ptychoflow.stream import FramePublisher

    publisher = FramePublisher("tcp://127.0.0.1:*")
    conn.send(publisher.address)
    if not publisher.wait_for_subscribers(1, 60):
        conn.send({"error": "the service never subscribed"})
        return
    conn.send({"ready": True})
    while True:
        command = conn.recv()
        if command[0] != "stream":
            break
        _, scan_id, rate_hz, seconds, count, results_address = command
        counts, stop = {"results": 0}, threading.Event()
        counter = threading.Thread(target=_count_results, args=(results_address, counts, stop), daemon=True)
        counter.start()
        time.sleep(0.3)  # the results subscription reaches the service before the first frame
        publisher.send_start(scan_id, n_frames=0, shape=list(frames.shape[1:]), dtype=frames.dtype.str,
                             pixel_size_m=pixel_size_m)
        sent, n, started = 0, len(frames), time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds and sent < count:
            due = min(count, int(elapsed * rate_hz) + 1 if rate_hz else sent + 256)
            if due <= sent:
                time.sleep(0.0002)
                continue
            for _ in range(due - sent):
                publisher.send_frame(scan_id, sent, positions_m[sent % n], frames[sent % n])
                sent += 1
        send_seconds = time.perf_counter() - started
        publisher.send_end(scan_id, sent)
        conn.send({"sent": sent, "send_seconds": send_seconds})
        conn.recv()  # the parent says when the service has finished, so every result is counted
        stop.set()
        counter.join(2)
        conn.send({"results": counts["results"]})
    publisher.close()


# -- the service side -----------------------------------------------------------------------
class Probe:
    """Samples the service's counters every few ms while a scan streams."""

    def __init__(self, service: Any) -> None:
        self.service, self.samples = service, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            counts = self.service.metrics.counts
            self.samples.append((time.perf_counter(), counts["inferred"], counts["received"], self.service.queue.depth))

    def __enter__(self) -> "Probe":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def rate(self) -> float:
        """Inferred frames/s from the first frame received to the last one stitched."""
        base_inferred, base_received = self.samples[0][1], self.samples[0][2]
        first = next((t for t, _, received, _ in self.samples if received > base_received), None)
        last = max(((n, t) for t, n, _, _ in self.samples), default=(base_inferred, 0.0), key=lambda s: (s[0], -s[1]))
        if first is None or last[0] == base_inferred or last[1] <= first:
            return 0.0
        return (last[0] - base_inferred) / (last[1] - first)

    @property
    def max_depth(self) -> int:
        return max((d for *_, d in self.samples), default=0)


def stream(conn: Any, service: Any, scan_id: str, *, rate_hz: float, seconds: float, count: int) -> dict[str, Any]:
    """One scan through the service, then until it drained (DRAIN_S at most): what was sent,
    received, inferred, the results that came back, the service's rate and deepest queue."""
    before = dict(service.metrics.counts)
    stages_before = service.metrics.snapshot()["stage_seconds"]
    with Probe(service) as probe:
        conn.send(("stream", scan_id, rate_hz, seconds, count, service.publisher.address))
        sent = conn.recv()
        deadline = time.monotonic() + DRAIN_S
        while time.monotonic() < deadline and (service.queue.depth or service.batcher.holding
                                               or service.mosaics.get(scan_id) is None
                                               or not service.mosaics.get(scan_id).ended):
            time.sleep(0.01)
    conn.send(("counted",))
    results = conn.recv()
    after = service.metrics.counts
    done = {k: after[k] - before[k] for k in ("received", "inferred", "dropped")}
    drained = not (service.queue.depth or service.batcher.holding)
    stages = service.metrics.snapshot()["stage_seconds"]
    stage_us = {k: (stages[k] - stages_before[k]) / max(1, done["inferred"]) * 1e6 for k in stages}
    return {**sent, **results, **done, "fps": probe.rate(), "max_queue": probe.max_depth, "drained": drained,
            "send_fps": sent["sent"] / sent["send_seconds"], "stage_us_per_frame": stage_us}


def bare_fps(model: Any, frames: np.ndarray) -> float:
    """Frames/s of the service's own model alone, on prepared batches of the service's size."""
    batch = model.prepare(frames[np.arange(BATCH) % len(frames)])
    sync = _cuda_sync()
    return BATCH / median_s(lambda: model.infer(batch), seconds=1.0, sync=sync)


def _cuda_sync() -> Any:
    try:
        import torch

        return torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    except ImportError:
        return lambda: None


def trivial_model(size: int, path: Path) -> Path:
    """phase = 0.5 x input, exported by torch: a model that costs the service almost nothing."""
    import torch

    class Half(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 0.5 * x

    torch.onnx.export(Half(), (torch.zeros(1, 1, size, size),), str(path), dynamo=False, input_names=["diffraction"],
                      output_names=["phase"], dynamic_axes={"diffraction": {0: "N"}, "phase": {0: "N"}}, opset_version=17)
    return path


def wait_for_version(service: Any, version: str, timeout_s: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        model = service.models.current()
        if model is not None and model.version == version:
            return model
        time.sleep(0.05)
    raise RuntimeError(f"the service did not serve model {version}: {list(service.models.events)}")


def run(record: Record, context: Context) -> None:
    from gpucheck.sections.inference import exported_model
    from ptychoflow.artifact import ModelManifest, publish_model
    from ptychoflow.fs import sha256_file
    from ptychoflow.nn.export import stage_artifact
    from ptychoflow.nn.models import ModelConfig
    from ptychoflow.preprocess import PreprocessConfig
    from ptychoflow.simulate.beamline import SimulationOptions, simulate_scan
    from ptychoflow_edge.config import EdgeConfig
    from ptychoflow_edge.service import EdgeService
    from reconstruct import CASES

    size, case = (64, SimulationOptions()) if context.dry else (128, CASES["128"])
    burst_s, paced_s = (DRY_BURST_S, DRY_PACED_S) if context.dry else (BURST_S, PACED_S)
    sim = simulate_scan(case, scan_id="edge")
    frames = np.asarray(sim.scan.data).astype(np.uint16)
    spawn = multiprocessing.get_context("spawn")  # never fork a process that may hold a CUDA context
    parent, child = spawn.Pipe()
    publisher = spawn.Process(target=publisher_process, args=(child, frames, sim.scan.positions_m,
                                                              sim.scan.pixel_size_m), daemon=True)
    publisher.start()
    root = Path(tempfile.mkdtemp(prefix="gpu-check-edge-"))
    service = None
    try:
        address = parent.recv()
        config = EdgeConfig(path=root / "edge", stream_address=address, results_address="tcp://127.0.0.1:*",
                            http=False, batch_size=BATCH, max_wait_ms=MAX_WAIT_MS, queue_frames=MAX_BURST_FRAMES,
                            model_poll_s=0.05, status_interval_s=1.0)
        service = EdgeService(config).start()
        ready = parent.recv()
        if "error" in ready:
            raise RuntimeError(ready["error"])
        onnx = root / "ptychonn2.onnx"
        onnx.write_bytes(exported_model(size, root))
        preprocessing = PreprocessConfig(crop=size, transform="sqrt", scale=10.0).to_json()
        stage_artifact(config.model_dir, onnx, version="gpu-check", config=ModelConfig("ptychonn2", size),
                       preprocessing=preprocessing)
        model = wait_for_version(service, "gpu-check")
        setting = f"{size}² frames, batch {BATCH}, {model.providers[0]}, preprocessing on {model.preprocess_backend}"
        description = getattr(model.session, "description", model.providers[0])
        record.set("setting", {"frame": size, "batch": BATCH, "max_wait_ms": MAX_WAIT_MS, "provider": model.providers[0],
                               "backend": description, "preprocess": model.preprocess_backend})
        bare = bare_fps(model, frames)
        record.row("bare inference", f"{figure(bare)} frames/s", value=bare, unit="frames/s", reference=setting)
        count = min(MAX_BURST_FRAMES, max(4 * BATCH, int(bare * burst_s)))
        burst = stream(parent, service, "burst", rate_hz=0.0, seconds=60.0, count=count)
        record.set("burst", burst)
        bound = "service-bound" if burst["max_queue"] > 2 * BATCH else "publisher-bound: the queue stayed short"
        record.row("service, burst", f"{figure(burst['fps'])} frames/s ({bound})", value=burst["fps"], unit="frames/s",
                   reference=f"goal ≥ {GOAL_FPS:,}", verdict="" if context.dry else verdict(burst["fps"] >= GOAL_FPS))
        ratio = burst["fps"] / bare
        record.row("service / bare inference", f"{ratio:.2f}", value=ratio,
                   reference=f"goal ≥ {GOAL_RATIO}", verdict="" if context.dry else verdict(ratio >= GOAL_RATIO))
        if not burst["drained"] or burst["fps"] <= 0:
            record.skip("latency, paced", f"the burst's backlog had not drained after {DRAIN_S:g} s"
                        if not burst["drained"] else "no burst rate to pace at")
            return
        rate = PACED_SHARE * burst["fps"]
        paced = stream(parent, service, "paced", rate_hz=rate, seconds=paced_s, count=10**9)
        latencies = service.metrics.recent_latencies()[-max(1, paced["inferred"]):]
        p50, p99 = np.percentile(latencies, [50, 99]) * 1e3
        paced.update(p50_ms=float(p50), p99_ms=float(p99))
        record.set("paced", paced)
        record.row("latency, paced", f"p50 {p50:.2f} ms, p99 {p99:.2f} ms at {figure(rate)} frames/s",
                   value=float(p99), unit="ms (p99)", reference=f"{PACED_SHARE:.0%} of the burst rate")
        lost = paced["sent"] - paced["inferred"]
        record.row("frames lost, paced", f"{lost} of {paced['sent']:,} ({paced['results']:,} results received)",
                   value=lost, reference="0", verdict=verdict(lost == 0 and paced["results"] == paced["sent"]))
        publish_model(config.model_dir, trivial_model(size, root / "trivial.onnx"),
                      ModelManifest("trivial", sha256_file(root / "trivial.onnx"), [1, size, size], preprocessing,
                                    model_kind="trivial (0.5 x)"))
        wait_for_version(service, "trivial")
        long_enough = min(MAX_BURST_FRAMES, max(count, 2_000 if context.dry else 10_000))  # it runs much faster
        ceiling = stream(parent, service, "trivial", rate_hz=0.0, seconds=60.0, count=long_enough)
        record.set("trivial", ceiling)
        record.row("service, trivial model", f"{figure(ceiling['fps'])} frames/s", value=ceiling["fps"],
                   unit="frames/s", reference="its ceiling without the network")
        record.row("time per frame, by stage", ", ".join(f"{k} {v:.0f}" for k, v in burst["stage_us_per_frame"].items())
                   + " µs", reference="the burst: where the service spends its time")
        mosaic = config.mosaics_dir / "paced.png"
        if mosaic.exists():
            shutil.copyfile(mosaic, context.out / "edge_mosaic.png")
            record.image(context.out / "edge_mosaic.png")
    finally:
        if service is not None:
            service.stop()
        try:
            parent.send(("stop",))
        except OSError:
            pass
        publisher.join(5)
        if publisher.is_alive():
            publisher.kill()
        shutil.rmtree(root, ignore_errors=True)
