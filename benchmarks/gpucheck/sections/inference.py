"""Inference: the edge's torch-CUDA backend on PtychoNN 2.0 at 128², µs per frame at batch 1,
2, 4, 8, 16 and 64, beside Table 1 of the APS edge paper (RTX A6000 with TensorRT: 370, 220,
130, 90 and 70 µs at batch 1, 2, 4, 8 and 16).

A figure is the median time of a call divided by its batch. "host → host" is what the edge
service calls (NumPy in, NumPy out); "on GPU" is the network alone (input and output on the
device). The backend as the edge runs it (float16 checked at load, CUDA graphs) is measured
beside float32 and float16 without graphs, bfloat16 with them, and ONNX Runtime on the CPU,
to show what each choice buys. Its outputs are compared with ONNX Runtime's on the same
inputs, against the backend's stated tolerance. The dry run uses the 64² model on the CPU.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from gpucheck import plots
from gpucheck.measure import median_s
from gpucheck.record import Context, Record, figure, verdict

TABLE_1_US = {1: 370.0, 2: 220.0, 4: 130.0, 8: 90.0, 16: 70.0}  # APS edge paper, Table 1 (RTX A6000)
BATCHES, DRY_BATCHES = (1, 2, 4, 8, 16, 64), (1, 2, 4)
BACKEND = "backend as the edge runs it"
ORT_CPU = "ONNX Runtime, CPU"


def exported_model(size: int, directory: Path) -> bytes:
    """PtychoNN 2.0 as the pipeline exports it (its cost does not depend on its weights)."""
    import torch

    from ptychoflow.nn.export import export_onnx
    from ptychoflow.nn.models import ModelConfig, build_model

    torch.manual_seed(0)
    config = ModelConfig("ptychonn2", size)
    return export_onnx(build_model(config), config, directory / "ptychonn2.onnx").read_bytes()


def sessions(blob: bytes, cuda: bool) -> dict[str, Any]:
    """The variants measured: the backend with the edge's defaults first."""
    from ptychoflow_edge.torch_backend import TORCH_CPU, TORCH_CUDA, TorchOptions, TorchSession

    if not cuda:
        return {BACKEND: TorchSession(blob, TORCH_CPU)}
    return {
        BACKEND: TorchSession(blob, TORCH_CUDA),
        "float32, eager": TorchSession(blob, TORCH_CUDA, TorchOptions("float32", cuda_graphs=False)),
        "float16, eager": TorchSession(blob, TORCH_CUDA, TorchOptions("float16", cuda_graphs=False)),
        "bfloat16, CUDA graphs": TorchSession(blob, TORCH_CUDA, TorchOptions("bfloat16")),
    }


def run(record: Record, context: Context) -> None:
    import torch

    from ptychoflow.nn.infer import ort_session
    from ptychoflow_edge.torch_backend import TOLERANCE, check_inputs

    cuda = torch.cuda.is_available() and not context.dry
    size, batches = (64, DRY_BATCHES) if context.dry else (128, BATCHES)
    with tempfile.TemporaryDirectory() as tmp:
        blob = exported_model(size, Path(tmp))
    variants = sessions(blob, cuda)
    backend = variants[BACKEND]
    record.set("backend", backend.description)
    if not cuda:
        record.skip("CUDA variants (float16, graphs)", "dry run on the CPU" if context.dry else "torch sees no CUDA device")
    x = check_inputs([1, size, size], batch=max(batches), seed=1)
    reference = ort_session(blob, providers=["CPUExecutionProvider"])
    precision = str(backend.dtype).removeprefix("torch.")
    difference = float(np.abs(backend.run(["phase"], {"diffraction": x[:16]})[0]
                              - reference.run(["phase"], {"diffraction": x[:16]})[0]).max())
    record.row(f"= ONNX Runtime ({precision})", f"max |Δ| {difference:.2g} rad", value=difference,
               reference=f"≤ {TOLERANCE[precision]:g} (stated tolerance)", verdict=verdict(difference <= TOLERANCE[precision]))
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    host: dict[str, dict[int, float]] = {name: {} for name in [*variants, ORT_CPU]}
    device: dict[str, dict[int, float]] = {name: {} for name in variants}
    for batch in batches:
        xb = x[:batch]
        for name, session in variants.items():
            host[name][batch] = median_s(lambda: session.run(None, {"diffraction": xb}), seconds=0.3) / batch * 1e6
            if cuda:
                on_device = torch.from_numpy(xb).cuda()
                device[name][batch] = median_s(lambda: session.run_device(on_device), seconds=0.3, sync=sync) / batch * 1e6
        host[ORT_CPU][batch] = median_s(lambda: reference.run(None, {"diffraction": xb}), seconds=0.3,
                                        min_calls=3) / batch * 1e6
        record.set("us_per_frame", {"host_to_host": host, "on_gpu": device})
        table = TABLE_1_US.get(batch)
        text = f"{figure(host[BACKEND][batch])} µs/frame" + (f", {figure(device[BACKEND][batch])} on GPU" if cuda else "")
        record.row(f"batch {batch}", text, value=host[BACKEND][batch], unit="µs/frame (host → host)",
                   reference=f"Table 1: {table:g} µs" if table else "",
                   verdict=verdict(host[BACKEND][batch] <= table) if table and cuda else "")
    path = context.out / "inference.png"
    curves = {f"{name} (host → host)": points for name, points in host.items()}
    curves.update({f"{name} (on GPU)": points for name, points in device.items() if points and name == BACKEND})
    plots.inference(path, curves, TABLE_1_US, f"PtychoNN 2.0 at {size}²: {backend.description}")
    record.image(path)
