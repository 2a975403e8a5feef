"""rPIE with Pty-chi (``ptychi.api.RPIEOptions`` + ``PtychographyTask``), on CPU or GPU.

Conventions bridged here (read from Pty-chi's sources):
- Diffraction: Pty-chi's far-field model does not shift after its FFT, so centred data are
  passed with ``data_options.fft_shift=True`` (Pty-chi shifts them once when building the set).
- FFT normalisation: Pty-chi uses the unnormalised FFT, ptychoflow the orthonormal one, so the
  probe is divided by sqrt(n*n) going in and multiplied back coming out.
- Positions: Pty-chi indexes patch pixels as ``position + origin`` with the patch corner at
  ``centre - (n-1)/2``; ptychoflow puts the corner at ``centre - n/2``. Passing our centres with
  ``position_origin_coords = -object_origin - 0.5`` makes both agree exactly, so integer
  positions cut integer patches (no interpolation blur).
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
import warnings
from typing import Any, Iterator

import numpy as np

from ptychoflow.recon.base import PreparedScan, ProgressCallback, ReconstructionResult, RpieOptions
from ptychoflow.recon.iterations import engine_result, run_iterations

THREADS_ENV = "PTYCHOFLOW_TORCH_THREADS"
# One CPU thread by default: rPIE on CPU is many small tensor ops, and on a shared machine
# OpenMP workers that wait for each other at every op made 2 threads 5-10x *slower* than 1
# (measured here). Dedicated nodes can set PTYCHOFLOW_TORCH_THREADS.
DEFAULT_THREADS = 1


def available() -> tuple[bool, str]:
    """(usable, reason) without importing Pty-chi fully."""
    import importlib.util

    for name in ("torch", "ptychi"):
        if importlib.util.find_spec(name) is None:
            return False, f"{name} is not installed"
    return True, "ptychi and torch are installed"


def gpu_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def ready_devices() -> tuple[str, ...]:
    """The GPU first where torch sees CUDA, then the CPU."""
    return ("gpu", "cpu") if gpu_available() else ("cpu",)


@functools.lru_cache(maxsize=1)
def _package_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for name in ("ptychi", "torch", "numpy"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "missing"
    return out


def versions() -> dict[str, str]:
    """Package versions (looked up once per process) plus which GaussianBlur Pty-chi got."""
    from ptychoflow.recon import torchvision_compat

    return {**_package_versions(), "gaussian_blur": torchvision_compat.SOURCE or "unknown"}


def build_task(prepared: PreparedScan, options: RpieOptions, device: str) -> Any:
    """A ready-to-run Pty-chi task for `prepared` (device: "cpu" or "gpu")."""
    from ptychoflow.recon.torchvision_compat import ensure_ptychi_importable

    ensure_ptychi_importable()
    import ptychi.api as api
    from ptychi.api.task import PtychographyTask

    n = prepared.frame_size
    opts = api.RPIEOptions()
    opts.data_options.fft_shift = True
    opts.data_options.wavelength_m = prepared.wavelength_m

    obj = opts.object_options
    obj.optimizable = True
    obj.pixel_size_m = prepared.pixel_size_m
    obj.alpha = options.alpha
    if options.momentum:  # Pty-chi applies the rPIE step through a torch SGD optimiser
        obj.optimizer_params = {"momentum": options.momentum}
    obj.determine_position_origin_coords_by = api.ObjectPosOriginCoordsMethods.SPECIFIED
    obj.position_origin_coords = (-prepared.object_origin_px - 0.5).tolist()
    if not options.position_refinement and np.allclose(prepared.positions_px, np.rint(prepared.positions_px)):
        # Whole-pixel positions need no sub-pixel shift: bilinear is then exact and skips FFTs.
        obj.patch_interpolation_method = api.PatchInterpolationMethods.BILINEAR

    probe = opts.probe_options
    probe.optimizable = options.probe_refinement
    probe.alpha = options.alpha
    probe.optimization_plan.start = options.probe_refinement_start

    positions = opts.probe_position_options
    positions.optimizable = options.position_refinement
    if options.position_refinement:
        positions.optimization_plan.start = max(2, options.iterations // 10)

    rec = opts.reconstructor_options
    rec.num_epochs = options.iterations
    rec.batch_size = min(options.batch_size, prepared.intensities.shape[0])
    rec.default_device = api.Devices.GPU if device == "gpu" else api.Devices.CPU
    rec.random_seed = options.seed

    return PtychographyTask(
        opts,
        diffraction_data=prepared.intensities,
        object_data=np.ones((1, *prepared.object_shape), np.complex64),
        probe_data=(prepared.probe / math.sqrt(n * n))[None, None],
        probe_position_x_px=prepared.positions_px[:, 1].astype(np.float32),
        probe_position_y_px=prepared.positions_px[:, 0].astype(np.float32),
    )


def cpu_threads() -> int:
    """Torch CPU threads for a reconstruction: $PTYCHOFLOW_TORCH_THREADS, else DEFAULT_THREADS."""
    import os

    value = os.environ.get(THREADS_ENV, "")
    try:
        return max(1, int(value)) if value else DEFAULT_THREADS
    except ValueError:
        raise ValueError(f"{THREADS_ENV} must be a positive integer, got {value!r}") from None


def _epoch_loss(task: Any) -> float:
    table = task.reconstructor.loss_tracker.table
    return float(table["loss"].iloc[-1]) if len(table) else float("nan")


def reconstruct(
    prepared: PreparedScan,
    options: RpieOptions,
    *,
    device: str = "cpu",
    progress: ProgressCallback | None = None,
) -> ReconstructionResult:
    """Run rPIE one epoch at a time so progress, logging and the time limit work between them."""
    import torch

    start = time.perf_counter()
    previous_device = torch.get_default_device()
    previous_dtype = torch.get_default_dtype()
    previous_threads = torch.get_num_threads()
    if device == "cpu":
        torch.set_num_threads(cpu_threads())
    try:
        with _quiet_grad_warning():
            task = build_task(prepared, options, device)

        def step() -> float:
            with _quiet_grad_warning():
                task.run(n_epochs=1)
            return _epoch_loss(task)

        run = run_iterations(step, options, engine="ptychi", started=start, progress=progress)
        n = prepared.frame_size
        obj = task.get_data_to_cpu("object", as_numpy=True)[0]
        probe = task.get_data_to_cpu("probe", as_numpy=True)[0, 0] * math.sqrt(n * n)
        positions = task.get_data_to_cpu("probe_positions", as_numpy=True)
    finally:
        torch.set_default_device(previous_device)
        torch.set_default_dtype(previous_dtype)
        torch.set_num_threads(previous_threads)
    return engine_result(
        prepared, run, engine="ptychi", obj=obj, probe=probe, positions_px=positions, versions=versions(),
        parameters={**options.to_json(), "device": device, "torch_threads": cpu_threads() if device == "cpu" else None},
    )


@contextlib.contextmanager
def _quiet_grad_warning() -> Iterator[None]:
    """Pty-chi's loss display converts a tensor that requires grad: harmless noise, silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad", category=UserWarning)
        yield
