"""Edge service throughput and latency on this machine (prints figures; not a test).

End to end through the real service: ZeroMQ publish -> receive -> preprocess -> ONNX Runtime
-> stitch -> results stream, with a PtychoNN-2.0-sized conv net defined here (the trained
PtychoNN export is not merged yet). For each patch size:
  * sustained frames/s: a burst of frames into a queue large enough to hold them all,
    timed from the first frame received to the last one stitched;
  * latency p50/p99 per frame (receive -> stitched) at a paced rate of 70 % of that;
  * the share of time per stage; and ONNX-Runtime-only µs/frame at batch 1/8/16/64.
GPU variants (CUDA/TensorRT) run only where onnxruntime-gpu sees a GPU.

    PYTHONPATH=src:edge python benchmarks/edge.py [--frames 1500] [--sizes 64,128]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from ptychoflow.artifact import ModelManifest, publish_model
from ptychoflow.fs import sha256_file
from ptychoflow.preprocess import PreprocessConfig
from ptychoflow.simulate.beamline import SimulationOptions, simulate_scan
from ptychoflow.stream import FramePublisher
from ptychoflow_edge.config import EdgeConfig
from ptychoflow_edge.inference import best_providers, session_options
from ptychoflow_edge.service import EdgeService

APS_REFERENCE = "APS: RTX A6000 70-90 µs/frame at batch 8-16; Jetson 850 µs/frame"


def ptychonn2_like(size: int) -> tuple[bytes, int]:
    """Encoder 1-16-32-64 (3 max-pools) / decoder 64-32-16 (3 upsamplings) -> tanh * pi phase."""
    import torch
    from torch import nn

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU()]

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(
                *block(1, 16), nn.MaxPool2d(2), *block(16, 32), nn.MaxPool2d(2), *block(32, 64), nn.MaxPool2d(2),
                *block(64, 64), nn.Upsample(scale_factor=2), *block(64, 32), nn.Upsample(scale_factor=2),
                *block(32, 16), nn.Upsample(scale_factor=2), nn.Conv2d(16, 1, 3, padding=1),
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.tanh(self.body(x)) * torch.pi

    torch.manual_seed(0)
    net = Net().eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(1, 1, size, size),), buffer, dynamo=False, input_names=["diffraction"],
                          output_names=["phase"], dynamic_axes={"diffraction": {0: "N"}, "phase": {0: "N"}},
                          opset_version=17)
    return buffer.getvalue(), sum(p.numel() for p in net.parameters())


def install(model_dir: Path, blob: bytes, size: int) -> None:
    staged = model_dir.parent / "staged.onnx"
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    staged.write_bytes(blob)
    config = PreprocessConfig(crop=size, transform="sqrt", scale=10.0)
    publish_model(model_dir, staged, ModelManifest(f"bench-{size}", sha256_file(staged), [1, size, size],
                                                   config.to_json()))


def run_stream(root: Path, blob: bytes, size: int, frames: np.ndarray, positions_m: np.ndarray, pixel: float,
               rate_hz: float, threads: int) -> dict:
    """Stream `frames` (0 Hz: as fast as possible) through a fresh service; return its figures."""
    publisher = FramePublisher("tcp://127.0.0.1:*")
    install(root / "edge" / "model", blob, size)
    service = EdgeService(EdgeConfig(path=root / "edge", stream_address=publisher.address,
                                     results_address="tcp://127.0.0.1:*", http=False, queue_frames=len(frames) + 1,
                                     intra_op_threads=threads, model_poll_s=0.05)).start()
    try:
        assert publisher.wait_for_subscribers(1, 10)
        while service.models.current() is None:
            time.sleep(0.02)
        publisher.send_start("bench", n_frames=len(frames), shape=list(frames.shape[1:]), dtype=frames.dtype.str,
                             pixel_size_m=pixel)
        t0 = time.perf_counter()
        for i, frame in enumerate(frames):
            if rate_hz > 0 and (delay := t0 + i / rate_hz - time.perf_counter()) > 0:
                time.sleep(delay)
            publisher.send_frame("bench", i, positions_m[i % len(positions_m)], frame)
        while service.metrics.counts["inferred"] + service.metrics.counts["dropped"] < len(frames):
            time.sleep(0.005)
        elapsed = time.perf_counter() - t0
        latencies = service.metrics.recent_latencies()
        snapshot = service.metrics.snapshot()
    finally:
        service.stop()
        publisher.close()
    return {"elapsed": elapsed, "fps": len(frames) / elapsed, "latency_ms": np.percentile(latencies, [50, 99]) * 1e3,
            "stages": snapshot["stage_seconds"], "counters": snapshot["counters"], "provider": service.providers[0]}


def onnx_only(blob: bytes, size: int, providers: list[str], threads: int, batches=(1, 8, 16, 64)) -> dict[int, float]:
    """µs per frame of session.run alone, per batch size."""
    import onnxruntime as ort

    session = ort.InferenceSession(blob, sess_options=session_options(threads), providers=providers)
    out = {}
    for batch in batches:
        x = np.random.default_rng(0).uniform(0, 3, (batch, 1, size, size)).astype(np.float32)
        session.run(None, {"diffraction": x})
        reps = max(3, 256 // batch)
        t0 = time.perf_counter()
        for _ in range(reps):
            session.run(None, {"diffraction": x})
        out[batch] = (time.perf_counter() - t0) / (reps * batch) * 1e6
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1500)
    parser.add_argument("--sizes", default="64,128")
    parser.add_argument("--threads", type=int, default=None, help="ORT intra-op threads (default: cores, max 4)")
    args = parser.parse_args()
    threads = args.threads or EdgeConfig(path=Path(".")).intra_op_threads
    import onnxruntime as ort

    print(f"edge benchmark: onnxruntime {ort.__version__}, providers here {ort.get_available_providers()}, "
          f"ORT threads {threads}, batch 16 / max wait 10 ms")
    for size in [int(s) for s in args.sizes.split(",")]:
        blob, params = ptychonn2_like(size)
        sim = simulate_scan(SimulationOptions(frame_size=size, object_size=2 * size + 64, step_px=size / 6),
                            scan_id="bench")
        data = np.asarray(sim.scan.data)
        frames = data[np.arange(args.frames) % len(data)]
        print(f"\n== {size}x{size} frames, PtychoNN-2.0-sized conv net ({params / 1e3:.0f} k parameters, "
              f"defined in this benchmark), {args.frames} frames")
        with tempfile.TemporaryDirectory() as tmp:
            burst = run_stream(Path(tmp) / "burst", blob, size, frames, sim.scan.positions_m, sim.scan.pixel_size_m,
                               0.0, threads)
            rate = 0.7 * burst["fps"]
            paced = run_stream(Path(tmp) / "paced", blob, size, frames[: max(200, int(rate * 4))],
                               sim.scan.positions_m, sim.scan.pixel_size_m, rate, threads)
        c = burst["counters"]
        print(f"sustained      {burst['fps']:8.1f} frames/s end to end on {burst['provider']} "
              f"(received {c['received']}, inferred {c['inferred']}, dropped {c['dropped']})")
        p50, p99 = paced["latency_ms"]
        pc = paced["counters"]
        print(f"latency        p50 {p50:.2f} ms, p99 {p99:.2f} ms per frame at {rate:.0f} frames/s paced "
              f"(dropped {pc['dropped']}); burst p50 {burst['latency_ms'][0]:.0f} ms is queueing")
        total = sum(burst["stages"].values())
        shares = ", ".join(f"{k} {v / total:5.1%}" for k, v in burst["stages"].items())
        print(f"stage share    {shares}   ({total / c['inferred'] * 1e6:.0f} µs/frame of stage time)")
        cpu = onnx_only(blob, size, ["CPUExecutionProvider"], threads)
        print("ORT only, CPU  " + ", ".join(f"batch {b}: {us:.0f} µs/frame" for b, us in cpu.items()))
        for provider in ("CUDAExecutionProvider", "TensorrtExecutionProvider"):
            if provider in ort.get_available_providers():
                gpu = onnx_only(blob, size, best_providers([provider]), threads)
                print(f"ORT only, {provider[:-17]:4s} " + ", ".join(f"batch {b}: {us:.0f} µs/frame"
                                                                    for b, us in gpu.items()) + f"   [{APS_REFERENCE}]")
            else:
                print(f"{provider}: skipped (not in this onnxruntime build; no GPU on this host) - "
                      f"batch 1/8/16/64 not measured [{APS_REFERENCE}]")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
