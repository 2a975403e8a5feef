"""Batched inference with a PyTorch model or an ONNX Runtime session (the edge's engine)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def predict_torch(model: Any, diffraction: np.ndarray, *, batch: int = 64, output: str = "phase") -> np.ndarray:
    """(N,1,h,w) float32 -> (N,h,w) predicted `output` with a PyTorch model (eval mode)."""
    import torch

    from ptychoflow.nn.models import predict_outputs

    model.eval()
    parts = []
    with torch.no_grad():
        for start in range(0, len(diffraction), batch):
            xb = torch.from_numpy(np.ascontiguousarray(diffraction[start : start + batch], np.float32))
            parts.append(predict_outputs(model, xb)[output][:, 0].numpy())
    return np.concatenate(parts) if parts else np.zeros((0,) + diffraction.shape[-2:], np.float32)


def ort_providers(prefer_gpu: bool = True) -> list[str]:
    """TensorRT, then CUDA, then CPU: whichever this onnxruntime build offers."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    order = ["TensorrtExecutionProvider", "CUDAExecutionProvider"] if prefer_gpu else []
    return [p for p in order if p in available] + ["CPUExecutionProvider"]


def ort_session(onnx_path: str | Path | bytes, *, providers: list[str] | None = None, threads: int | None = None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    source = onnx_path if isinstance(onnx_path, bytes) else str(onnx_path)
    return ort.InferenceSession(source, options, providers=providers or ort_providers())


def predict_onnx(session: Any, diffraction: np.ndarray, *, batch: int = 64, output: str = "phase") -> np.ndarray:
    """Same as predict_torch, through ONNX Runtime."""
    parts = []
    for start in range(0, len(diffraction), batch):
        xb = np.ascontiguousarray(diffraction[start : start + batch], np.float32)
        parts.append(session.run([output], {"diffraction": xb})[0][:, 0])
    return np.concatenate(parts) if parts else np.zeros((0,) + diffraction.shape[-2:], np.float32)
