"""What this machine has: host, GPU as torch and CuPy see it, ONNX Runtime's providers, the
edge's provider order, and where each package the check uses came from."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys

from gpucheck.record import Context, Record
from gpucheck.wheels import SITE_ROOT

PACKAGES = ("numpy", "scipy", "h5py", "scikit-image", "matplotlib", "onnx", "onnxruntime", "onnxruntime-gpu",
            "torch", "cupy-cuda13x", "cupy-cuda12x", "tike", "ptychi", "pyzmq", "pydantic", "pandas",
            "scikit-learn", "prometheus-client", "tqdm")


def _memory_gib() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def packages() -> dict[str, str]:
    """name -> 'version (machine)' or 'version (wheel)' for the packages the check touches."""
    found = {}
    for name in PACKAGES:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        origin = "wheel" if str(dist.locate_file("")).startswith(str(SITE_ROOT)) else "machine"
        found[name] = f"{dist.version} ({origin})"
    return found


def run(record: Record, context: Context) -> None:
    record.row("host", f"{platform.node()}: {os.cpu_count()} cores, {_memory_gib():.0f} GiB, "
                       f"Python {platform.python_version()}")
    record.set("python", sys.version)
    record.set("packages", packages())
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
        result = subprocess.run(query, capture_output=True, text=True, timeout=20)
        record.set("nvidia_smi", result.stdout.strip() or result.stderr.strip())
    import torch

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        record.row("GPU (torch)", f"{props.name}, {props.total_memory / 2**30:.0f} GiB, sm_{props.major}{props.minor}",
                   reference=f"torch {torch.__version__}, CUDA {torch.version.cuda}")
    else:
        record.skip("GPU (torch)", f"torch {torch.__version__} sees no CUDA device")
    try:
        import cupy

        devices = cupy.cuda.runtime.getDeviceCount()
        runtime = cupy.cuda.runtime.runtimeGetVersion()
        record.row("CuPy", f"{cupy.__version__}, CUDA runtime {runtime // 1000}.{runtime % 1000 // 10}, "
                           f"{devices} device(s)")
    except Exception as exc:  # not installed, or no driver/device: both are facts to report
        record.skip("CuPy", f"{type(exc).__name__}: {str(exc).splitlines()[0][:80]}")
    import onnxruntime

    record.row("ONNX Runtime", f"{onnxruntime.__version__}: {', '.join(onnxruntime.get_available_providers())}")
    from ptychoflow_edge.inference import best_providers

    record.row("edge providers", " → ".join(best_providers()), reference="TensorRT → CUDA → TorchCUDA → CPU")
