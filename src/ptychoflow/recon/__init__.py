"""rPIE engines behind one interface: Tike on GPU, Pty-chi on CPU or GPU.

Call ``reconstruct_scan(scan, RpieOptions(...), engine="auto")``; ``choose_engine`` says which
engine and device "auto" picks, and why (recorded in the product's provenance).
"""

from __future__ import annotations

import logging
import time

from ptychoflow.recon.base import (
    IterationInfo,
    PreparedScan,
    ProgressCallback,
    ReconstructionResult,
    RpieOptions,
    prepare_scan,
    validate_scan,
)
from ptychoflow.scan.format import Scan

log = logging.getLogger(__name__)
ENGINES = ("auto", "tike", "ptychi")

__all__ = [
    "ENGINES",
    "EngineChoice",
    "EngineUnavailable",
    "IterationInfo",
    "PreparedScan",
    "ProgressCallback",
    "ReconstructionResult",
    "RpieOptions",
    "choose_engine",
    "prepare_scan",
    "reconstruct_prepared",
    "reconstruct_scan",
    "validate_scan",
]


class EngineUnavailable(RuntimeError):
    """The engine asked for cannot run here; the message says why and how to fix it."""


class EngineChoice:
    """Which engine runs on which device, and the human-readable reason."""

    def __init__(self, engine: str, device: str, reason: str) -> None:
        self.engine, self.device, self.reason = engine, device, reason

    def __repr__(self) -> str:
        return f"EngineChoice({self.engine!r}, {self.device!r}, {self.reason!r})"


def choose_engine(engine: str = "auto", device: str = "auto") -> EngineChoice:
    """Resolve "auto": tike when a GPU and tike exist, else ptychi on the best device."""
    from ptychoflow.recon import ptychi_engine, tike_engine

    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if device not in ("auto", "cpu", "gpu"):
        raise ValueError(f"device must be auto, cpu or gpu, got {device!r}")
    tike_ok, tike_reason = tike_engine.available() if device != "cpu" else (False, "device=cpu requested")
    if engine == "tike":
        if not tike_ok:
            raise EngineUnavailable(f"engine 'tike' requested but unavailable: {tike_reason}")
        return EngineChoice("tike", "gpu", f"requested; {tike_reason}")
    ptychi_ok, ptychi_reason = ptychi_engine.available()
    if engine == "auto" and tike_ok:
        return EngineChoice("tike", "gpu", f"auto: GPU present and {tike_reason}")
    if not ptychi_ok:
        raise EngineUnavailable(f"engine 'ptychi' unavailable: {ptychi_reason}; tike: {tike_reason}")
    gpu = ptychi_engine.gpu_available()
    if device == "gpu" and not gpu:
        raise EngineUnavailable("device 'gpu' requested but torch sees no CUDA device")
    chosen = "gpu" if (device == "gpu" or (device == "auto" and gpu)) else "cpu"
    why = "requested" if engine == "ptychi" else f"auto: tike unusable ({tike_reason})"
    return EngineChoice("ptychi", chosen, f"{why}; ptychi on {chosen}")


def reconstruct_prepared(
    prepared: PreparedScan,
    options: RpieOptions,
    engine: str = "auto",
    progress: ProgressCallback | None = None,
) -> ReconstructionResult:
    """Run the chosen engine on already validated, prepared data."""
    from ptychoflow.recon import ptychi_engine, tike_engine

    choice = choose_engine(engine, options.device)
    log.info("engine %s on %s (%s)", choice.engine, choice.device, choice.reason)
    module = tike_engine if choice.engine == "tike" else ptychi_engine
    result = module.reconstruct(prepared, options, device=choice.device, progress=progress)
    result.engine_reason = choice.reason
    return result


def reconstruct_scan(
    scan: Scan,
    options: RpieOptions | None = None,
    engine: str = "auto",
    progress: ProgressCallback | None = None,
) -> ReconstructionResult:
    """Validate `scan` (ScanError before any work), choose the probe start, reconstruct with rPIE.

    With ``options.probe_start == "auto"`` candidate probes are tried on the data first and the
    choice is recorded in ``result.parameters["probe_start"]``.
    """
    from ptychoflow.recon.probe_start import choose_start, given_start

    options = options or RpieOptions()
    start = time.perf_counter()
    prepared = prepare_scan(scan)
    chosen = choose_start(prepared, options, engine) if options.probe_start == "auto" else given_start(prepared)
    prepared.probe = chosen.probe
    result = reconstruct_prepared(prepared, options, engine, progress)
    result.parameters["probe_start"] = chosen.to_json()
    result.wall_time_s = time.perf_counter() - start
    return result
