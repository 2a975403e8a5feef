"""rPIE on GPU: Tike against Pty-chi on one simulated scan, 963 positions at 128² (as at 26-ID),
with equal iterations and equal settings.

Rate: position-updates/s over the iterations after the first (the first pays for the CUDA
context, FFT plans and Tike's kernel compilation). Quality: phase SSIM and RMSE against the
simulator's truth where the scan overlaps well (illumination at least half its maximum).
Goal: Pty-chi at least 1.5x Tike's rate with the same quality (SSIM within 0.02, RMSE
within 10 %). The dry run reconstructs a tiny scan with Pty-chi on the CPU.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from gpucheck import plots
from gpucheck.record import Context, Record, Skip, figure, verdict
from ptychoflow import metrics
from ptychoflow.product import illumination_map
from ptychoflow.recon.api import reconstruct
from ptychoflow.recon.base import RpieOptions
from ptychoflow.recon.registry import ENGINES
from ptychoflow.simulate.beamline import SimulatedScan, SimulationOptions, simulate_scan
from reconstruct import CASES  # benchmarks/reconstruct.py: the 963-position 128² case

ITERATIONS, BATCH = 100, 32
DRY_CASE = SimulationOptions(object_size=72, frame_size=32, probe_diameter_px=18.0, step_px=5.0, dose=1e5)
DRY_ITERATIONS, DRY_BATCH = 6, 8  # 66 positions: batches of 32 would be half the scan each
GOAL_RATIO, SSIM_SLACK, RMSE_SLACK = 1.5, 0.02, 0.10
OVERLAP_FRACTION = 0.5


def placed(image: np.ndarray, origin: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """`image`, whose [0, 0] sits at scan-frame pixel `origin`, on the truth's grid (NaN where none)."""
    out = np.full(shape, np.nan, np.complex64)
    oy, ox = (int(round(v)) for v in origin)
    ys = slice(max(oy, 0), min(oy + image.shape[0], shape[0]))
    xs = slice(max(ox, 0), min(ox + image.shape[1], shape[1]))
    out[ys, xs] = image[ys.start - oy : ys.stop - oy, xs.start - ox : xs.stop - ox]
    return out


def score(obj: np.ndarray, sim: SimulatedScan, mask: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(phase SSIM, phase RMSE in rad, the phase on the truth's grid) over `mask`."""
    truth = np.angle(sim.truth_object)
    phase = np.angle(obj)
    usable = mask & np.isfinite(phase)
    phase = np.where(usable, phase, 0.0)
    return metrics.phase_ssim(phase, truth, usable), metrics.phase_rmse(phase, truth, usable), phase


def run_engine(sim: SimulatedScan, engine: str, device: str, iterations: int, batch: int, time_limit_s: float) -> dict[str, Any]:
    """One engine's run through ptychoflow's entry point: its result and its steady rate
    (iterations after the first)."""
    stamps: list[float] = []
    options = RpieOptions(iterations=iterations, batch_size=batch, device=device, time_limit_s=max(1.0, time_limit_s))  # type: ignore[arg-type]
    started = time.perf_counter()
    result = reconstruct(sim.scan, options, engine=engine, progress=lambda info: stamps.append(time.perf_counter()))
    positions = sim.scan.n_frames
    if len(stamps) >= 2:
        rate = positions * (len(stamps) - 1) / (stamps[-1] - stamps[0])
    else:
        rate = positions / (stamps[0] - started)
    return {"result": result, "rate": rate, "iterations": len(stamps), "first_iteration_s": stamps[0] - started,
            "seconds": time.perf_counter() - started, "stop_reason": result.stop_reason}


def run(record: Record, context: Context) -> None:
    tike_ok, tike_reason = ENGINES["tike"].available()
    gpu = "gpu" in ENGINES["ptychi"].ready_devices()
    if context.dry:
        case, iterations, batch, device = DRY_CASE, DRY_ITERATIONS, DRY_BATCH, "cpu"
        tike_ok, tike_reason = False, "dry run on the CPU (Tike needs CuPy and a CUDA GPU)"
    elif not (gpu or tike_ok):
        raise Skip(f"no GPU: torch sees no CUDA device; tike: {tike_reason}")
    else:
        case, iterations, batch, device = CASES["128-963"], ITERATIONS, BATCH, "gpu"
    sim = simulate_scan(case, scan_id="gpu-check")
    n = sim.scan.n_frames
    setting = f"{n} positions, {case.frame_size}², batch {batch}, on {device}"
    record.set("setting", {"positions": n, "frame": case.frame_size, "batch": batch, "iterations": iterations,
                           "device": device})
    lit = illumination_map(sim.truth_probe, sim.positions_px, sim.truth_object.shape)
    mask = lit > OVERLAP_FRACTION * lit.max()
    runs: dict[str, dict[str, Any]] = {}
    engines = [("tike", tike_ok, tike_reason), ("ptychi", gpu or device == "cpu", "torch sees no CUDA device")]
    for index, (engine, usable, reason) in enumerate(engines):
        label = {"tike": "Tike rPIE", "ptychi": "Pty-chi rPIE"}[engine]
        if not usable:
            record.skip(label, reason)
            continue
        if "tike" in runs:
            iterations = runs["tike"]["iterations"]  # equal iterations, even if Tike hit its time limit
        budget = (context.remaining() - 15) / (len(engines) - index)
        try:
            run_ = run_engine(sim, engine, device, iterations, batch, budget)
        except Exception as exc:  # one engine failing (a CuPy/CUDA mismatch) must not hide the other's figures
            record.row(label, f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}", verdict="failed")
            record.set(f"{engine}_error", repr(exc))
            continue
        result = run_.pop("result")
        ssim, rmse, phase = score(placed(result.object, result.object_origin_px, sim.truth_object.shape), sim, mask)
        run_.update(ssim=ssim, rmse=rmse, phase=phase, loss=result.loss_history.tolist())
        runs[engine] = run_
        record.set(engine, {k: v for k, v in run_.items() if k != "phase"})
        reference, judged = "", ""
        if engine == "ptychi" and "tike" in runs:
            goal = GOAL_RATIO * runs["tike"]["rate"]
            reference, judged = f"goal ≥ {GOAL_RATIO}× Tike = {figure(goal)}", verdict(run_["rate"] >= goal)
        record.row(f"{label} ({run_['iterations']} it)", f"{figure(run_['rate'])} position-updates/s",
                   value=run_["rate"], unit="position-updates/s", reference=reference or setting, verdict=judged)
        quality_ref, quality_verdict = "vs simulated truth", ""
        if engine == "ptychi" and "tike" in runs:
            tike = runs["tike"]
            same = ssim >= tike["ssim"] - SSIM_SLACK and rmse <= tike["rmse"] * (1 + RMSE_SLACK)
            quality_ref = f"same as Tike (SSIM ±{SSIM_SLACK}, RMSE ±{RMSE_SLACK:.0%})"
            quality_verdict = verdict(same)
        record.row(f"{label} quality", f"SSIM {ssim:.3f}, RMSE {rmse:.3f} rad", value=ssim, unit="SSIM",
                   reference=quality_ref, verdict=quality_verdict)
    if runs:
        path = context.out / "rpie.png"
        plots.rpie(path, np.angle(sim.truth_object), mask, {e: r["phase"] for e, r in runs.items()},
                   {e: r["loss"] for e, r in runs.items()}, {e: (r["ssim"], r["rmse"]) for e, r in runs.items()}, setting)
        record.image(path)
