"""Inference: the best provider there is, and one loaded model.

Provider preference is TensorRT -> CUDA -> TorchCUDA -> CPU. The first two and the last are
ONNX Runtime's, which places each node on the first provider in the list that supports it.
TorchCUDA runs the same ONNX file with torch (``torch_backend``) where onnxruntime has no GPU
build; a model it cannot run falls back to the ONNX Runtime providers after it. Preprocessing
runs with CuPy when the model runs on the GPU and CuPy imports, with NumPy otherwise (same
code: ``ptychoflow.preprocess``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ptychoflow.artifact import ModelManifest, verified_probe, verified_stitch_weight
from ptychoflow.errors import InputError
from ptychoflow.preprocess import PreprocessConfig, preprocess
from ptychoflow.stitch import probe_weight
from ptychoflow_edge import torch_backend

log = logging.getLogger("ptychoflow.edge.inference")
PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", torch_backend.TORCH_CUDA, "CPUExecutionProvider")
GPU_PROVIDERS = PREFERENCE[:3]
INPUT_NAME, OUTPUT_NAME = "diffraction", "phase"


class ModelRejected(Exception):
    """A model failed a check; the message is the one-line reason shown in logs and status."""


def best_providers(requested: list[str] | None = None) -> list[str]:
    """Available providers in preference order (or `requested`, filtered to what exists)."""
    import onnxruntime as ort

    available = set(ort.get_available_providers()) | set(torch_backend.available_providers())
    wanted = requested or list(PREFERENCE)
    chosen = [p for p in wanted if p in available]
    return chosen or ["CPUExecutionProvider"]


def session_options(intra_op_threads: int) -> Any:
    """Few threads that sleep when idle: the edge box shares its cores with the receiver."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


def open_session(blob: bytes, providers: list[str], intra_op_threads: int) -> Any:
    """A session on the first provider: the torch backend for a Torch* one (falling back to
    the ONNX Runtime providers after it if torch cannot run the model), else ONNX Runtime."""
    import onnxruntime as ort

    if providers[0] in torch_backend.PROVIDERS:
        try:
            session = torch_backend.TorchSession(blob, providers[0])
            log.info("torch backend: %s", session.description)
            return session
        except Exception as exc:  # UnsupportedModel names the operator; CUDA errors are RuntimeErrors
            providers = [p for p in providers if p not in torch_backend.PROVIDERS] or ["CPUExecutionProvider"]
            log.warning("the torch backend cannot run this model (%s); using %s", str(exc).splitlines()[0][:200],
                        providers[0])
    return ort.InferenceSession(blob, sess_options=session_options(intra_op_threads), providers=providers)


def _array_module(providers: list[str]) -> Any:
    if providers[0] in GPU_PROVIDERS:
        try:
            import cupy

            cupy.cuda.runtime.getDeviceCount()
            return cupy
        except Exception:  # no cupy or no device: NumPy is always right, just slower
            pass
    return np


def load_side_files(manifest: ModelManifest, model_dir: Path, size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(stitching weight, probe), sha256-checked: the weight used as is, the default Gaussian
    when the manifest names none; the probe the images are polished through, or None."""
    try:
        weight, probe = verified_stitch_weight(model_dir, manifest), verified_probe(model_dir, manifest)
    except InputError as exc:
        raise ModelRejected(str(exc)) from None
    return (probe_weight(None, size) if weight is None else weight), probe


@dataclass
class LoadedModel:
    """A checked model, ready to serve. Built only by `load_model`."""

    manifest: ModelManifest
    session: Any
    config: PreprocessConfig
    weight: np.ndarray
    providers: list[str]
    input_name: str
    output_name: str
    xp: Any = np
    probe: np.ndarray | None = None  # measured probe the model is refined through: finished scans are polished with it

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def patch_size(self) -> int:
        return self.weight.shape[0]

    def pixel_scale(self, frame_size: int) -> float:
        """How many object pixels of a `frame_size` frame one pixel of this network's output spans:
        a centred crop of c detector pixels makes pixels n/c times larger (nn.pairs)."""
        return frame_size / self.config.crop

    @property
    def preprocess_backend(self) -> str:
        return self.xp.__name__

    def prepare(self, frames: np.ndarray) -> np.ndarray:
        """(B, H, W) raw frames -> (B, 1, h, w) float32 network input (on the host, or on the
        GPU for a session that takes device arrays)."""
        batch = preprocess(frames, self.config, xp=self.xp)
        if self.xp is not np and not getattr(self.session, "accepts_device_arrays", False):
            batch = batch.get()
        return batch[:, None]

    def measured_amplitudes(self, batch: np.ndarray) -> np.ndarray:
        """(B, h, w) far-field amplitudes of a prepared batch, as the polish takes them (the
        staging gives a probe only to models whose input is the measured amplitude)."""
        host = batch.get() if hasattr(batch, "get") else batch
        return np.asarray(host[:, 0], np.float32) * np.float32(self.config.scale)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """(B, 1, h, w) -> (B, h, w) phase."""
        (phase,) = self.session.run([self.output_name], {self.input_name: batch})
        return phase.reshape(len(batch), *phase.shape[-2:])


def load_model(manifest: ModelManifest, blob: bytes, model_dir: Path, *, providers: list[str],
               intra_op_threads: int) -> LoadedModel:
    """Build a session and check it against the manifest; raise ModelRejected with the reason."""
    try:
        config = PreprocessConfig.from_json(manifest.preprocessing)
    except (TypeError, ValueError) as exc:
        raise ModelRejected(f"manifest preprocessing is invalid: {exc}") from None
    size = config.output_size
    if list(manifest.input_shape) != [1, size, size]:
        raise ModelRejected(f"manifest input_shape {manifest.input_shape} != [1, {size}, {size}] from its preprocessing")
    try:
        session = open_session(blob, providers, intra_op_threads)
    except Exception as exc:  # ORT raises several exception types for unreadable graphs
        raise ModelRejected(f"ONNX Runtime cannot load the model: {str(exc).splitlines()[0][:200]}") from None
    inputs, outputs = session.get_inputs(), session.get_outputs()
    names = [o.name for o in outputs]
    input_name = INPUT_NAME if any(i.name == INPUT_NAME for i in inputs) else inputs[0].name
    if len(inputs) != 1:
        raise ModelRejected(f"model has {len(inputs)} inputs, expected one ({INPUT_NAME})")
    output_name = OUTPUT_NAME if OUTPUT_NAME in names else None
    if output_name is None:
        raise ModelRejected(f"model has no '{OUTPUT_NAME}' output (outputs: {names})")
    dims = inputs[0].shape
    expected = [1, size, size]
    if len(dims) != 4 or any(isinstance(d, int) and d != e for d, e in zip(dims[1:], expected)):
        raise ModelRejected(f"model input {input_name} has shape {dims}, manifest says [N, 1, {size}, {size}]")
    weight, probe = load_side_files(manifest, model_dir, size)
    model = LoadedModel(manifest, session, config, weight, session.get_providers(), input_name, output_name,
                        _array_module(session.get_providers()), probe)
    test_input = np.random.default_rng(0).uniform(0, 4, (2, 1, size, size)).astype(np.float32)
    try:
        phase = model.infer(test_input)
    except Exception as exc:
        raise ModelRejected(f"test inference failed: {str(exc).splitlines()[0][:200]}") from None
    if phase.shape != (2, size, size):
        raise ModelRejected(f"test inference gave phase of shape {phase.shape}, expected (2, {size}, {size})")
    if not np.all(np.isfinite(phase)):
        raise ModelRejected("test inference produced non-finite output")
    return model
