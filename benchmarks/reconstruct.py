"""Reconstruction throughput and wrapper overhead (prints figures; not a test).

    PYTHONPATH=src python benchmarks/reconstruct.py [--iterations 4] [--repeats 3]

- position-updates per second (positions x iterations / s, batch 32) for Pty-chi on CPU at 64^2 and
  128^2 (simulated scans), and, where a GPU exists, Tike and Pty-chi on GPU for a
  963-position 128^2 case;
- overhead of ptychoflow's wrapper (validation, preparation, per-iteration loop with
  progress and time-limit checks, result conversion) against driving Pty-chi directly with
  the same options on the same arrays: median ratio over a few repeats (target <= 1.10).
  Both start from the same probe (``probe_start="given"``): the robust start is extra work,
  measured on its own:
- the robust probe start's cost (candidate trials) on the 64^2 scan, against a whole run at
  the default settings.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
import torch
from _common import torch_threads

from ptychoflow.recon import ptychi_engine, tike_engine
from ptychoflow.recon.api import reconstruct
from ptychoflow.recon.base import RpieOptions, prepare_scan
from ptychoflow.recon.registry import choose_engine
from ptychoflow.simulate.beamline import SimulationOptions, simulate_scan

CASES = {
    "64": SimulationOptions(frame_size=64),
    "128": SimulationOptions(frame_size=128, object_size=320, probe_diameter_px=72.0, step_px=20.0),
    # exactly 963 positions at 128^2 for the GPU comparison
    "128-963": SimulationOptions(frame_size=128, object_size=558, probe_diameter_px=72.0, step_px=14.05),
}


def updates_per_second(sim, engine: str, device: str, iterations: int, batch_size: int = 32) -> tuple[float, float]:
    """(position-updates/s over the timed iterations, seconds per iteration); one warm-up iteration excluded."""
    times: list[float] = []
    last = [time.perf_counter()]

    def progress(info):
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now

    options = RpieOptions(iterations=iterations + 1, batch_size=batch_size, device=device,  # type: ignore[arg-type]
                          probe_start="given")
    last[0] = time.perf_counter()
    reconstruct(sim.scan, options, engine=engine, progress=progress)
    per_iteration = statistics.median(times[1:])
    return sim.scan.n_frames / per_iteration, per_iteration


def direct_ptychi(prepared, options: RpieOptions) -> float:
    """Pty-chi driven directly (its own epoch loop) with the same settings; returns seconds."""
    from ptychoflow.recon.torchvision_compat import ensure_ptychi_importable

    ensure_ptychi_importable()
    import ptychi.api as api
    from ptychi.api.task import PtychographyTask

    start = time.perf_counter()
    n = prepared.frame_size
    opts = api.RPIEOptions()
    opts.data_options.fft_shift = True
    opts.data_options.wavelength_m = prepared.wavelength_m
    opts.object_options.pixel_size_m = prepared.pixel_size_m
    opts.object_options.alpha = options.alpha
    opts.object_options.determine_position_origin_coords_by = api.ObjectPosOriginCoordsMethods.SPECIFIED
    opts.object_options.position_origin_coords = (-prepared.object_origin_px - 0.5).tolist()
    opts.object_options.patch_interpolation_method = api.PatchInterpolationMethods.BILINEAR
    opts.probe_options.alpha = options.alpha
    opts.probe_options.optimization_plan.start = options.probe_refinement_start
    opts.probe_position_options.optimizable = False
    opts.reconstructor_options.num_epochs = options.iterations
    opts.reconstructor_options.batch_size = options.batch_size
    opts.reconstructor_options.default_device = api.Devices.CPU
    opts.reconstructor_options.random_seed = options.seed
    task = PtychographyTask(
        opts,
        diffraction_data=prepared.intensities,
        object_data=np.ones((1, *prepared.object_shape), np.complex64),
        probe_data=(prepared.probe / math.sqrt(n * n))[None, None],
        probe_position_x_px=prepared.positions_px[:, 1].astype(np.float32),
        probe_position_y_px=prepared.positions_px[:, 0].astype(np.float32),
    )
    task.run()
    task.get_data_to_cpu("object", as_numpy=True)
    return time.perf_counter() - start


def overhead(sim, iterations: int, repeats: int) -> tuple[float, float, float]:
    options = RpieOptions(iterations=iterations, batch_size=32, device="cpu", probe_start="given")
    wrapper, direct = [], []

    def run_wrapper() -> float:
        start = time.perf_counter()
        reconstruct(sim.scan, options, engine="ptychi")
        return time.perf_counter() - start

    def run_direct() -> float:
        with torch_threads(ptychi_engine.cpu_threads()):  # the same thread count the wrapper uses
            return direct_ptychi(prepare_scan(sim.scan), options)

    run_wrapper(), run_direct()  # warm-up: imports, allocator, first-call costs
    for repeat in range(repeats):  # interleaved, alternating order, so machine load hits both alike
        pair = (run_wrapper, run_direct) if repeat % 2 == 0 else (run_direct, run_wrapper)
        for fn in pair:
            (wrapper if fn is run_wrapper else direct).append(fn())
    w, d = statistics.median(wrapper), statistics.median(direct)
    return w, d, w / d


def start_cost(sim, iterations: int) -> tuple[float, float, float]:
    """(seconds of the robust start's trials, seconds of a default run, their ratio) on `sim`."""
    from ptychoflow.recon.api import engine_run
    from ptychoflow.recon.probe_start import choose_start

    defaults = RpieOptions(device="cpu")
    prepared = prepare_scan(sim.scan)
    _, run = engine_run("ptychi", "cpu")
    with torch_threads(ptychi_engine.cpu_threads()):
        trials = statistics.median(choose_start(prepared, defaults, run).seconds for _ in range(3))
    _, per_iteration = updates_per_second(sim, "ptychi", "cpu", iterations, batch_size=defaults.batch_size)
    whole = per_iteration * defaults.iterations
    return trials, whole, trials / whole


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--overhead-iterations", type=int, default=10)
    args = parser.parse_args()
    auto = choose_engine()
    print(f"torch {torch.__version__}; rPIE CPU threads {ptychi_engine.cpu_threads()} "
          f"(${ptychi_engine.THREADS_ENV}); engine auto -> {auto.engine} on {auto.device} ({auto.reason})")
    print(f"{'case':<22}{'positions':>10}{'s/iter':>10}{'pos-updates/s':>16}")
    sims = {}
    for name in ("64", "128"):
        sims[name] = simulate_scan(CASES[name], scan_id=f"bench{name}")
        rate, per_iter = updates_per_second(sims[name], "ptychi", "cpu", args.iterations)
        print(f"{'ptychi cpu ' + name + '^2':<22}{sims[name].scan.n_frames:>10}{per_iter:>10.3f}{rate:>16.0f}")
    tike_ok, tike_reason = tike_engine.available()
    gpu = ptychi_engine.gpu_available()
    if tike_ok or gpu:
        big = simulate_scan(CASES["128-963"], scan_id="bench963")
        for engine, ok, reason in (("tike", tike_ok, tike_reason), ("ptychi", gpu, "torch sees no CUDA device")):
            if not ok:
                print(f"{engine + ' gpu 128^2':<22} skipped: {reason}")
                continue
            rate, per_iter = updates_per_second(big, engine, "gpu", args.iterations)
            print(f"{engine + ' gpu 128^2':<22}{big.scan.n_frames:>10}{per_iter:>10.3f}{rate:>16.0f}")
    else:
        print(f"GPU cases (963 positions, 128^2) skipped: tike: {tike_reason}; ptychi: torch sees no CUDA device")
    w, d, ratio = overhead(sims["64"], args.overhead_iterations, args.repeats)
    print(f"wrapper vs direct Pty-chi (64^2, {args.overhead_iterations} it, median of {args.repeats}): "
          f"{w:.2f} s vs {d:.2f} s -> ratio {ratio:.3f} ({'OK' if ratio <= 1.10 else 'ABOVE'} target 1.10)")
    trials, whole, share = start_cost(sims["64"], args.iterations)
    print(f"robust probe start (64^2, {sims['64'].scan.n_frames} positions): trials {trials:.2f} s (median of 3) "
          f"against {whole:.1f} s for a default run ({RpieOptions().iterations} it, batch {RpieOptions().batch_size}): "
          f"{100 * share:.1f} %")


if __name__ == "__main__":
    main()
