"""What is installed and usable here, one line each (used by `ptychoflow doctor`)."""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable

from ptychoflow.recon.registry import AUTO, ENGINES, EngineSpec, EngineUnavailable, choose_engine

OK, WARN, MISSING = "ok", "warn", "missing"


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _package(name: str, dist: str, why: str) -> Check:
    version = _version(dist)
    if version is None:
        return Check(name, MISSING, f"not installed ({why})")
    try:
        importlib.import_module(name)
    except Exception as exc:  # an installed but broken package must be reported, not crash doctor
        return Check(name, WARN, f"{version} installed but import fails: {str(exc).splitlines()[0][:120]}")
    return Check(name, OK, version)


def check_python() -> Check:
    return Check("python", OK, sys.version.split()[0])


def check_ptychoflow() -> Check:
    if _version("ptychoflow") is None:
        return Check("ptychoflow", WARN, "running from a source tree (not pip-installed)")
    return _package("ptychoflow", "ptychoflow", "this package")


def check_torch() -> Check:
    check = _package("torch", "torch", "needed for PtychoNN training and Pty-chi: pip install 'ptychoflow[cpu]'")
    if check.status != OK:
        return check
    import torch

    device = "CUDA " + torch.version.cuda if torch.cuda.is_available() else "CPU only"
    return Check("torch", OK, f"{check.detail} ({device}, {torch.get_num_threads()} threads)")


def check_ptychi() -> Check:
    version = _version("ptychi")
    if version is None:
        return Check("ptychi", MISSING, "not installed (CPU rPIE): pip install --no-deps ptychi (see README)")
    try:
        from ptychoflow.recon.torchvision_compat import ensure_ptychi_importable

        source = ensure_ptychi_importable()
    except Exception as exc:
        return Check("ptychi", WARN, f"{version} installed but import fails: {str(exc).splitlines()[0][:120]}")
    return Check("ptychi", OK, f"{version} (torchvision: {source})")


def check_engine(spec: EngineSpec) -> Check:
    """One registered rPIE engine: can it run here, and on which devices."""
    name = f"rpie {spec.name}"
    try:
        ok, reason = spec.available()
        ready = spec.ready_devices() if ok else ()
    except Exception as exc:  # a broken install must be reported, not crash doctor
        return Check(name, WARN, f"{spec.summary}; check failed: {str(exc).splitlines()[0][:120]}")
    if not (ok and ready):
        return Check(name, MISSING, f"{spec.summary}; unusable here: {reason}")
    return Check(name, OK, f"{spec.summary}; runs here on {', '.join(ready)} ({reason})")


def check_auto_engine() -> Check:
    """What `--engine auto` picks on this machine, and why."""
    try:
        choice = choose_engine(AUTO)
    except EngineUnavailable as exc:
        return Check(f"rpie {AUTO}", MISSING, exc.reason)
    return Check(f"rpie {AUTO}", OK, f"{choice.engine} on {choice.device}: {choice.reason}")


def check_gpu() -> Check:
    if shutil.which("nvidia-smi") is None:
        return Check("gpu", MISSING, "no NVIDIA driver (nvidia-smi not found): GPU paths are skipped")
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (subprocess.SubprocessError, OSError) as exc:
        return Check("gpu", WARN, f"nvidia-smi failed: {exc}")
    return Check("gpu", OK, out.replace("\n", "; "))


def check_onnxruntime() -> Check:
    check = _package("onnxruntime", "onnxruntime", "edge inference")
    if check.status != OK:
        check = _package("onnxruntime", "onnxruntime-gpu", "edge inference")
    if check.status != OK:
        return check
    import onnxruntime

    return Check("onnxruntime", OK, f"{onnxruntime.__version__}; providers: {', '.join(onnxruntime.get_available_providers())}")


def check_edge_inference() -> Check:
    """The provider the edge service would serve on here (the first of TensorRT -> CUDA -> TorchCUDA -> CPU)."""
    try:
        from ptychoflow_edge.inference import best_providers

        providers = best_providers()
    except Exception as exc:  # no onnxruntime, or a broken one: doctor reports, never crashes
        return Check("edge inference", WARN, f"cannot tell: {str(exc).splitlines()[0][:120]}")
    detail = " -> ".join(providers)
    if providers[0] == "TorchCUDA":
        detail += " (the model runs with torch on the GPU: no onnxruntime-gpu here)"
    return Check("edge inference", OK, detail)


def check_globus_credentials() -> Check:
    if os.environ.get("PTYCHOFLOW_CLIENT_ID") and os.environ.get("PTYCHOFLOW_CLIENT_SECRET"):
        return Check("globus credentials", OK, "client credentials from PTYCHOFLOW_CLIENT_ID/SECRET (unattended)")
    from ptychoflow.backends.globus.auth import token_file

    path = token_file()
    if path.exists():
        return Check("globus credentials", OK, f"user tokens in {path}")
    return Check("globus credentials", MISSING, "none: run `ptychoflow login` (only needed for the globus backend)")


def check_chromium() -> Check:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        return Check("chromium", MISSING, "not found (only needed for the web-page tests): apt-get install chromium")
    return Check("chromium", OK, browser)


CHECKS: list[Callable[[], Check]] = [
    check_python,
    check_ptychoflow,
    lambda: _package("numpy", "numpy", "core"),
    lambda: _package("h5py", "h5py", "scan files"),
    lambda: _package("zmq", "pyzmq", "frame stream"),
    check_torch,
    check_ptychi,
    lambda: _package("tike", "tike", "GPU rPIE: pip install 'ptychoflow[gpu]' on a CUDA machine"),
    lambda: _package("cupy", "cupy-cuda12x", "GPU preprocessing: pip install 'ptychoflow[gpu]'"),
    check_gpu,
    *(functools.partial(check_engine, spec) for spec in ENGINES.values()),
    check_auto_engine,
    check_onnxruntime,
    check_edge_inference,
    lambda: _package("globus_sdk", "globus-sdk", "globus backend"),
    lambda: _package("globus_compute_sdk", "globus-compute-sdk", "globus backend: remote functions"),
    check_globus_credentials,
    check_chromium,
]


def run_checks() -> list[Check]:
    return [check() for check in CHECKS]
