"""rPIE with Tike (``tike.ptycho``), GPU only: tike and cupy are the ``gpu`` extra.

Conventions bridged here (Tike's documentation):
- ``data`` is FFT-shifted (zero frequency at the corners): centred frames are ifftshift-ed.
- ``scan`` is the probe's *minimum corner* in psi's pixels: ``centre - n/2 - object_origin``.
- ``probe`` has the layout (1, 1, SHARED, n, n); ``psi`` is 3-D (slices, H, W) since 0.26.
- ``Reconstruction`` reads ``probe_options`` and ``object_options`` unconditionally, so both
  are always given; a fixed probe is one whose ``update_start`` lies past the last epoch.
- Tike's far-field operator uses an orthonormal FFT, like ptychoflow, so the probe passes
  through unscaled (Tike rescales it to the data once at setup anyway).
Nothing here is imported until a GPU run is asked for, so CPU-only installs never need cupy.
"""

from __future__ import annotations

import functools
import importlib.util
import time
from typing import Any

import numpy as np

from ptychoflow.recon.base import PreparedScan, ProgressCallback, ReconstructionResult, RpieOptions
from ptychoflow.recon.iterations import engine_result, run_iterations
from ptychoflow.recon.registry import EngineUnavailable



def available() -> tuple[bool, str]:
    """(usable, reason): needs tike, cupy and a visible CUDA device."""
    for name in ("tike", "cupy"):
        if importlib.util.find_spec(name) is None:
            return False, f"{name} is not installed"
    try:
        import cupy

        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDA driver missing or broken
        return False, f"cupy cannot reach a CUDA device: {exc}"
    if count < 1:
        return False, "no CUDA device visible to cupy"
    return True, f"tike and cupy with {count} CUDA device(s)"


def ready_devices() -> tuple[str, ...]:
    """Tike runs on the GPU only: ("gpu",) where ``available()``, else nothing."""
    return ("gpu",) if available()[0] else ()


@functools.lru_cache(maxsize=1)
def _package_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for name in ("tike", "cupy-cuda13x", "cupy-cuda12x", "cupy", "numpy"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return out


def versions() -> dict[str, str]:
    return dict(_package_versions())


def _last_cost(context: Any) -> float:
    """Mean over batches of the latest epoch's cost (``get_convergence`` gives per-batch lists)."""
    costs, _ = context.get_convergence()
    return float(np.mean(costs[-1])) if costs else float("nan")


def reconstruct(
    prepared: PreparedScan,
    options: RpieOptions,
    *,
    device: str = "gpu",
    progress: ProgressCallback | None = None,
) -> ReconstructionResult:
    """Run Tike's rPIE one iteration at a time inside one Reconstruction context."""
    ok, reason = available()
    if not ok:
        raise EngineUnavailable("tike", reason)
    import tike.ptycho

    start = time.perf_counter()
    n = prepared.frame_size
    data = np.fft.ifftshift(prepared.intensities, axes=(-2, -1)).astype(np.float32)
    scan = (prepared.positions_in_object() - n / 2).astype(np.float32)
    psi = np.ones((1, *prepared.object_shape), np.complex64)
    parameters = tike.ptycho.PtychoParameters(
        psi=psi,
        probe=prepared.probe[None, None, None].astype(np.complex64),
        scan=scan,
        algorithm_options=tike.ptycho.RpieOptions(
            num_batch=max(1, prepared.intensities.shape[0] // options.batch_size),
            alpha=options.alpha,
        ),
        # Tike's own momentum on the object step (checked against the previous updates' direction)
        object_options=tike.ptycho.ObjectOptions(use_adaptive_moment=options.momentum > 0, mdecay=options.momentum),
        # Tike reads probe_options even when the probe is fixed: "never" is a start past the end.
        probe_options=tike.ptycho.ProbeOptions(
            update_start=options.probe_refinement_start if options.probe_refinement else options.iterations + 1
        ),
        position_options=tike.ptycho.PositionOptions(scan) if options.position_refinement else None,
    )
    with tike.ptycho.Reconstruction(data=data, parameters=parameters, num_gpu=1) as context:

        def step() -> float:
            context.iterate(1)
            return _last_cost(context)

        run = run_iterations(step, options, engine="tike", started=start, progress=progress)
    result = context.get_result()  # joined across workers; valid once the context is closed
    psi_out = np.asarray(result.psi)
    return engine_result(
        prepared, run, engine="tike",
        obj=psi_out.reshape(-1, *psi_out.shape[-2:])[0],
        probe=np.asarray(result.probe).reshape(-1, n, n)[0],
        positions_px=np.asarray(result.scan, np.float64) + n / 2 + prepared.object_origin_px,
        versions=versions(), parameters={**options.to_json(), "device": device},
    )
