"""Inference frames/s: ONNX Runtime vs PyTorch eager on CPU, batch 1, 8, 64 (same run).

    PYTHONPATH=src python benchmarks/infer.py [--seconds 2] [--threads 2] [--size 64]

GPU execution providers (TensorRT, CUDA) are measured only where onnxruntime offers them;
otherwise the line says why they were skipped.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ptychoflow.nn.export import export_and_check
from ptychoflow.nn.infer import ort_session
from ptychoflow.nn.models import build_model, parameter_count
from ptychoflow.nn.options import ModelConfig


def rate(fn, batch: int, seconds: float) -> float:
    fn()  # warm-up
    frames, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        frames += batch
    return frames / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--kinds", default="ptychonn2,ptychonn")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import onnxruntime as ort

    gpu = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in ort.get_available_providers()]
    print(f"CPU threads {args.threads}, {args.seconds:g} s per point, input {args.size}x{args.size}")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.kinds.split(","):
            config = ModelConfig(kind, args.size)
            model = build_model(config).eval()
            onnx = export_and_check(model, config, Path(tmp) / f"{kind}.onnx")["onnx_path"]
            providers = [["CPUExecutionProvider"]] + [[p, "CPUExecutionProvider"] for p in gpu]
            sessions = {p[0]: ort_session(onnx, providers=p, threads=args.threads) for p in providers}
            print(f"\n{kind} ({parameter_count(model) / 1e6:.2f} M params)")
            print(f"{'batch':>5} {'eager fps':>10} " + " ".join(f"{p.replace('ExecutionProvider', '') + ' fps':>14}" for p in sessions) + "  ORT-CPU/eager")
            for batch in (1, 8, 64):
                x = np.random.default_rng(0).random((batch, 1, args.size, args.size), np.float32)
                xt = torch.from_numpy(x)
                with torch.inference_mode():
                    eager = rate(lambda: model(xt), batch, args.seconds)
                ort_rates = [rate(lambda s=s: s.run(None, {"diffraction": x}), batch, args.seconds) for s in sessions.values()]
                print(f"{batch:>5} {eager:>10.0f} " + " ".join(f"{r:>14.0f}" for r in ort_rates) + f"  {ort_rates[0] / eager:>8.2f}x")
    if not gpu:
        print(f"\nGPU providers skipped: onnxruntime offers only {ort.get_available_providers()} here (no CUDA/TensorRT build, no GPU)")
    if not torch.cuda.is_available():
        print("PyTorch CUDA eager skipped: torch.cuda.is_available() is False (CPU-only torch, no GPU)")


if __name__ == "__main__":
    main()
