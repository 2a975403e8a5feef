"""How rPIE's defaults were chosen: a sweep over scenario families (prints a table; not a test).

    PYTHONPATH=src python benchmarks/recon_defaults.py [--iterations 100] [--only NAME ...]

The tuning scans (``recon_scenarios.TUNING``: five textbook-model optics and two of
ptychoflow's simulator, other seeds, objects, doses and patterns than the quality table)
each get their robust probe start once. Then every setting runs from that start and the
phase SSIM against the truth is read at several iteration counts from the same run, with the
seconds per iteration. Two stages, one knob at a time:

1. alpha (rPIE's regularisation of object and probe steps) at batch 8;
2. around the best alpha: the batch size, and the iteration where probe refinement starts;
3. (``--momentum-only``, added later) momentum on the object's steps at the chosen alpha and batch.

"Best" is the highest mean SSIM over the scans at the last count; the tables print the worst
scan's too, so a setting that buys the mean with one family's failure shows.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np


sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("PTYCHOFLOW_TORCH_THREADS", "1")

from recon_scenarios import TUNING, Scenario, by_name  # noqa: E402

from ptychoflow import metrics  # noqa: E402
from ptychoflow.recon import ptychi_engine  # noqa: E402
from ptychoflow.recon.api import engine_run  # noqa: E402
from ptychoflow.recon.base import RpieOptions, prepare_scan  # noqa: E402
from ptychoflow.recon.probe_start import choose_start  # noqa: E402
from ptychoflow.scan import load_scan  # noqa: E402

CHECKPOINTS = (20, 40, 80, 120)
ALPHAS = (0.1, 0.3, 0.6, 1.0)
BATCHES = (4, 16)
PROBE_STARTS = (0, 5, 10)
MOMENTA = (0.0, 0.3, 0.5, 0.65)


def stage_one(base: RpieOptions) -> dict[str, RpieOptions]:
    return {f"alpha {a:g}": replace(base, alpha=a) for a in ALPHAS}


def stage_two(best: RpieOptions) -> dict[str, RpieOptions]:
    out = {f"alpha {best.alpha:g}, batch {best.batch_size}, probe from {best.probe_refinement_start}": best}
    out.update({f"  batch {b}": replace(best, batch_size=b) for b in BATCHES})
    out.update({f"  probe from it {p}": replace(best, probe_refinement_start=p)
                for p in PROBE_STARTS if p != best.probe_refinement_start})
    return out


def stage_momentum(best: RpieOptions) -> dict[str, RpieOptions]:
    return {f"momentum {m:g}": replace(best, momentum=m) for m in MOMENTA}


@dataclass
class Prepared:
    """A tuning scan ready to run: prepared data from its robust start, truth and mask."""

    name: str
    prepared: Any
    truth: Any
    mask: np.ndarray


def prepare(scenario: Scenario, base: RpieOptions) -> Prepared:
    with tempfile.TemporaryDirectory() as tmp:
        path, truth = scenario.make(Path(tmp))
        scan = load_scan(path)
    prepared = prepare_scan(scan)
    prepared.probe = choose_start(prepared, base, engine_run("ptychi", "cpu")[1]).probe
    return Prepared(scenario.name, prepared, truth, truth.mask())


def ssim_curve(scan: Prepared, setting: RpieOptions, iterations: int) -> tuple[list[float], float]:
    """(SSIM at each checkpoint <= iterations, seconds per iteration) of one setting on one scan."""
    prepared, truth = scan.prepared, scan.truth
    setting = replace(setting, iterations=iterations, device="cpu")
    task = ptychi_engine.build_task(prepared, setting, "cpu")
    scores, spent = [], 0.0
    for done in range(1, iterations + 1):
        started = time.perf_counter()
        task.run(n_epochs=1)
        spent += time.perf_counter() - started
        if done in CHECKPOINTS:
            obj = task.get_data_to_cpu("object", as_numpy=True)[0]
            placed = metrics.place_on_grid(obj, prepared.object_origin_px - truth.origin_px, truth.object.shape)
            scores.append(metrics.score_against_truth(placed, truth.object, scan.mask).ssim)
    return scores, spent / iterations


def sweep(title: str, settings: dict[str, RpieOptions], scans: list[Prepared], iterations: int) -> dict[str, tuple]:
    """Run every setting on every scan; print per-scan lines, then the summary; returns the summary."""
    checkpoints = [c for c in CHECKPOINTS if c <= iterations]
    print(f"\n## {title}")
    print(f"  {'scan':<28}{'setting':<42}" + "".join(f"{'it ' + str(c):>7}" for c in checkpoints))
    runs: dict[str, list[tuple[list[float], float]]] = {name: [] for name in settings}
    for scan in scans:
        for name, setting in settings.items():
            scores, seconds = ssim_curve(scan, setting, iterations)
            runs[name].append((scores, seconds))
            print(f"  {scan.name:<28}{name:<42}" + "".join(f"{v:>7.3f}" for v in scores) + f"{seconds:>8.3f} s/it",
                  flush=True)
    print(f"{'setting':<44}" + "".join(f"{'mean@' + str(c):>9}{'worst@' + str(c):>10}" for c in checkpoints)
          + f"{'s/it (median)':>15}")
    summary = {}
    for name, results in runs.items():
        cells = ""
        for k in range(len(checkpoints)):
            values = [scores[k] for scores, _ in results]
            cells += f"{statistics.fmean(values):>9.3f}{min(values):>10.3f}"
        seconds = statistics.median(s for _, s in results)
        last = [scores[-1] for scores, _ in results]
        summary[name] = (min(last), statistics.fmean(last), seconds)
        print(f"{name:<44}{cells}{seconds:>15.3f}")
    return summary


def best_of(summary: dict[str, tuple], settings: dict[str, RpieOptions]) -> RpieOptions:
    name = max(summary, key=lambda k: summary[k][1])
    return settings[name]


def main() -> None:
    warnings.filterwarnings("ignore", category=UserWarning)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=80)
    parser.add_argument("--only", nargs="*", default=None, help="tuning scenario names (default: all)")
    parser.add_argument("--momentum-only", action="store_true",
                        help="only stage 3: the object momentum, at the current alpha and batch")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(ptychi_engine.cpu_threads())
    base = RpieOptions()
    print(f"# rPIE defaults sweep, {args.iterations} iterations, torch threads {ptychi_engine.cpu_threads()}; "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    scans = [prepare(by_name(n), base) for n in (args.only or [s.name for s in TUNING])]
    if args.momentum_only:
        third = stage_momentum(replace(base, momentum=0.0))
        final = best_of(sweep(f"stage 3: momentum at alpha {base.alpha:g}, batch {base.batch_size}", third, scans,
                              args.iterations), third)
        print(f"\nbest: momentum {final.momentum:g}")
        return
    first = stage_one(base)
    chosen = best_of(sweep("stage 1: alpha", first, scans, args.iterations), first)
    second = stage_two(chosen)
    final = best_of(sweep(f"stage 2: around alpha {chosen.alpha:g}", second, scans, args.iterations), second)
    print(f"\nbest: alpha {final.alpha:g}, batch {final.batch_size}, probe refinement from iteration "
          f"{final.probe_refinement_start}")


if __name__ == "__main__":
    main()
