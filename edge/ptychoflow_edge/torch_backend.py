"""The torch inference backend: the edge's ``model.onnx`` run by torch, on CUDA.

Many edge GPU boxes have torch with CUDA but neither TensorRT nor onnxruntime-gpu (255 MB).
There the edge picks the provider ``TorchCUDA``: after TensorRT and ONNX Runtime's CUDA
provider, before the CPU (``inference.PREFERENCE``). ``TorchCPU`` exists for tests and for
boxes without ONNX Runtime; it is used only when asked for by name.

``TorchSession`` has the interface of ONNX Runtime's ``InferenceSession`` that the edge uses
(``run``, ``get_inputs``, ``get_outputs``, ``get_providers``), so the rest of the edge cannot
tell them apart. On CUDA it adds:

- reduced precision: float16, checked when the model loads against the same graph in float32
  on the load-check inputs; bfloat16 if float16 is not within its ``TOLERANCE`` there (it
  overflowed), float32 if neither is. The choice and the measured difference are in
  ``description``.
- CUDA graphs: one per power-of-two batch bucket up to ``max_graph_batch``, captured on first
  use; a batch is padded to its bucket. A PtychoNN forward is a few dozen small kernels, so
  at batch 1-16 launching them costs more than running them; a graph launches them at once.
  ``torch.compile`` is not used: it compiles for tens of seconds per shape, which would stall
  a hot swap, and the graphs already remove the launch overhead.
"""

from __future__ import annotations

import copy
import ctypes
import importlib.util
import threading
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

TORCH_CUDA, TORCH_CPU = "TorchCUDA", "TorchCPU"
PROVIDERS = {TORCH_CUDA: "cuda", TORCH_CPU: "cpu"}
# Max |torch - ONNX Runtime| over the outputs (radians of phase), per precision. float32 agrees
# as closely as the exporter's own check (ptychoflow.nn.export); float16 and bfloat16 as measured
# on a trained PtychoNN 2.0 (0.005 and 0.022 rad at most), with room to spare. The load check
# keeps a reduced precision only within its tolerance.
TOLERANCE = {"float32": 1e-4, "float16": 1e-2, "bfloat16": 5e-2}
Precision = Literal["auto", "float16", "bfloat16", "float32"]


def _cuda_driver_present() -> bool:
    """Whether an NVIDIA driver is loadable, without importing torch (cheap on CPU boxes)."""
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


def available_providers() -> list[str]:
    """The torch providers usable here: TorchCUDA where torch sees a GPU, and TorchCPU."""
    if importlib.util.find_spec("torch") is None:
        return []
    if not _cuda_driver_present():
        return [TORCH_CPU]
    import torch

    return ([TORCH_CUDA] if torch.cuda.is_available() else []) + [TORCH_CPU]


@dataclass(frozen=True)
class TorchOptions:
    precision: Precision = "auto"  # auto: float16 on CUDA if it passes the load check, float32 on CPU
    cuda_graphs: bool = True  # on CUDA only
    max_graph_batch: int = 64  # largest graph bucket; larger batches run in chunks of it


def _bucket(n: int, largest: int) -> int:
    """The power of two >= n (at most `largest`): the batch a graph is captured for."""
    return min(largest, 1 << max(0, n - 1).bit_length())


class _Graph:
    """One captured forward for a fixed batch: copy into `input`, replay, read `outputs`."""

    def __init__(self, forward: Any, sample: Any) -> None:
        import torch

        self.input = sample.clone()
        side = torch.cuda.Stream(sample.device)
        side.wait_stream(torch.cuda.current_stream(sample.device))
        with torch.cuda.stream(side), torch.no_grad():
            for _ in range(3):  # lazy initialisation (cuBLAS/cuDNN handles, workspaces) happens before capture
                forward(self.input)
        torch.cuda.current_stream(sample.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        # thread_local: the model watcher captures while the worker thread may be inferring
        with torch.no_grad(), torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            self.outputs = forward(self.input)

    def __call__(self, x: Any) -> tuple[Any, ...]:
        self.input[: len(x)].copy_(x)
        self.graph.replay()
        return tuple(o[: len(x)] for o in self.outputs)


class TorchSession:
    """An ONNX model run by torch, with the parts of ``onnxruntime.InferenceSession`` the edge uses."""

    accepts_device_arrays = True  # run() also takes CUDA arrays (CuPy, torch) without a host round trip

    def __init__(self, blob: bytes, provider: str = TORCH_CUDA, options: TorchOptions | None = None) -> None:
        import torch

        from ptychoflow_edge.onnx_torch import UnsupportedModel, load_onnx_module

        if provider not in PROVIDERS:
            raise ValueError(f"unknown torch provider {provider!r}; choose {', '.join(PROVIDERS)}")
        self.provider, self.options = provider, options or TorchOptions()
        self.device = torch.device(PROVIDERS[provider])
        module = load_onnx_module(blob)
        if len(module.inputs) != 1:
            raise UnsupportedModel(f"model has {len(module.inputs)} inputs; the torch backend takes one")
        self._inputs, self._outputs = module.inputs, module.outputs
        self._sample_shape = self._inputs[0].shape[1:]
        self.module = module.eval().to(self.device, memory_format=torch.channels_last)
        self.dtype, self.precision_check, self.precision_note = torch.float32, 0.0, ""
        self._choose_precision()
        fixed = all(isinstance(d, int) for d in self._sample_shape)
        self.use_graphs = self.options.cuda_graphs and self.device.type == "cuda" and fixed
        self._graphs: dict[int, _Graph] = {}
        self._lock = threading.Lock()

    # -- ONNX Runtime's interface -------------------------------------------------------
    def get_inputs(self) -> list[Any]:
        return list(self._inputs)

    def get_outputs(self) -> list[Any]:
        return list(self._outputs)

    def get_providers(self) -> list[str]:
        return [self.provider]

    def run(self, output_names: list[str] | None, feeds: dict[str, Any]) -> list[np.ndarray]:
        """Outputs named `output_names` (all if None) as float32 NumPy arrays."""
        import torch

        names = [p.name for p in self._outputs]
        wanted = output_names or names
        unknown = [n for n in wanted if n not in names]
        if unknown:
            raise ValueError(f"unknown output(s) {unknown}; the model has {names}")
        x = self._as_tensor(feeds[self._inputs[0].name])
        with self._lock:
            outputs = self.run_device(x)
            host = [outputs[names.index(n)].to("cpu", torch.float32).numpy() for n in wanted]
        return host

    # -- torch --------------------------------------------------------------------------
    def run_device(self, x: Any) -> tuple[Any, ...]:
        """float32 outputs on the device for a float32 batch on the device. With CUDA graphs
        they are views of the graph's buffers: read them before the next call."""
        import torch

        dims = list(x.shape[1:])
        if len(dims) != len(self._sample_shape) or any(isinstance(d, int) and d != n for d, n in zip(self._sample_shape, dims)):
            raise ValueError(f"input of shape {list(x.shape)}, the model takes [N, {', '.join(map(str, self._sample_shape))}]")
        if not self.use_graphs:
            with torch.no_grad():
                return self._forward(x)
        largest = self.options.max_graph_batch
        parts = [self._graph(_bucket(len(chunk), largest))(chunk) for chunk in x.split(largest)]
        if len(parts) == 1:
            return parts[0]
        return tuple(torch.cat(outs) for outs in zip(*parts))

    def _graph(self, batch: int) -> _Graph:
        import torch

        if batch not in self._graphs:
            sample = torch.zeros((batch, *self._sample_shape), device=self.device)
            self._graphs[batch] = _Graph(self._forward, sample)
        return self._graphs[batch]

    def _forward(self, x: Any, module: Any = None, dtype: Any = None) -> tuple[Any, ...]:
        import torch

        x = x.to(dtype or self.dtype)
        if x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return tuple(o.float() for o in (module or self.module)(x))

    def _as_tensor(self, array: Any) -> Any:
        """A float32 tensor on the device: NumPy is copied in; CUDA arrays come by DLPack."""
        import torch

        if isinstance(array, np.ndarray):
            tensor = torch.from_numpy(np.ascontiguousarray(array, np.float32))
        elif isinstance(array, torch.Tensor):
            tensor = array
        else:  # CuPy or any DLPack producer: shares memory, and the protocol orders the streams
            tensor = torch.from_dlpack(array)
        return tensor.to(self.device, torch.float32)

    # -- precision ----------------------------------------------------------------------
    def _choose_precision(self) -> None:
        """Keep the first of float16, bfloat16 that is within its TOLERANCE of float32 on the
        check inputs; else float32. "auto" is float32 on the CPU (reduced precision is slower there)."""
        import torch

        wanted = self.options.precision
        if wanted == "float32" or (wanted == "auto" and self.device.type == "cpu"):
            return
        if not all(isinstance(d, int) for d in self._sample_shape):  # nothing to build check inputs from
            self.precision_note = f"float32: input shape {self._sample_shape} is not fixed, nothing to check against"
            return
        candidates = ["float16", "bfloat16"] if wanted == "auto" else [wanted]
        probe = torch.from_numpy(check_inputs(self._sample_shape)).to(self.device)
        with torch.no_grad():
            reference = self._forward(probe, self.module, torch.float32)
            for name in candidates:
                dtype = getattr(torch, name)
                reduced = copy.deepcopy(self.module).to(dtype=dtype, memory_format=torch.channels_last)
                outputs = self._forward(probe, reduced, dtype)
                diff = max(float((o - r).abs().max()) for o, r in zip(outputs, reference))
                if np.isfinite(diff) and (diff <= TOLERANCE[name] or wanted != "auto"):
                    self.module, self.dtype, self.precision_check = reduced, dtype, diff
                    return
                self.precision_note = f"{name} rejected: max |{name} - float32| = {diff:.3g}"

    @property
    def description(self) -> str:
        """One line for logs and status: device, precision and how it was checked, graphs."""
        import torch

        where = str(self.device)
        if self.device.type == "cuda":
            where += f" ({torch.cuda.get_device_name(self.device)})"
        precision = str(self.dtype).removeprefix("torch.")
        if self.dtype != torch.float32:
            precision += f" (max |Δ| vs float32 {self.precision_check:.2g} on the load check)"
        elif self.precision_note:
            precision += f" ({self.precision_note})"
        graphs = ", CUDA graphs" if self.use_graphs else ""
        return f"torch {torch.__version__} on {where}, {precision}{graphs}"


def check_inputs(sample_shape: list[int], batch: int = 4, seed: int = 0) -> np.ndarray:
    """The inputs precision is checked on: the range of preprocessed patterns (sqrt counts / scale)."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 4, (batch, *sample_shape)).astype(np.float32)
