"""The demo's rPIE column without the rest of the demo: its four scans, reconstructed and scored
as the demo report scores them (phase SSIM against the simulator's truth on the product's lit
region). For trying rPIE options on the demo's data (issue 18: the column stays >= 0.73-0.90).

    PYTHONPATH=src python benchmarks/demo_rpie.py [--iterations 60] [--alpha 1] [--momentum 0] [--scans 1 2 3 4]

Prints one row per scan: SSIM, RMSE (rad), the probe start chosen and seconds.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import _common  # noqa: F401  (puts src/ on sys.path)
import numpy as np

os.environ.setdefault("PTYCHOFLOW_TORCH_THREADS", "1")

from ptychoflow import metrics  # noqa: E402
from ptychoflow.demo.collect import OVERLAP_FRACTION, place  # noqa: E402
from ptychoflow.demo.scenario import DemoOptions  # noqa: E402
from ptychoflow.product import read_product  # noqa: E402
from ptychoflow.recon.api import reconstruct, write_reconstruction  # noqa: E402
from ptychoflow.recon.base import RpieOptions  # noqa: E402
from ptychoflow.simulate.beamline import simulate_scan  # noqa: E402


def score(number: int, options: RpieOptions) -> tuple[float, float, str, float]:
    """(SSIM, RMSE, probe start chosen, seconds) of the demo's scan `number` (1-based)."""
    sim = simulate_scan(DemoOptions().simulation, scan_id=f"scan_{number:04d}", region=number - 1)
    started = time.perf_counter()
    result = reconstruct(sim.scan, options, engine="ptychi")
    seconds = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        product = read_product(write_reconstruction(result, tmp).product_path)
    frame_origin = tuple(int(round(v)) for v in product.object_origin_px)
    truth = place(np.angle(sim.truth_object), (0, 0), frame_origin, product.phase.shape)
    usable = product.lit_mask(OVERLAP_FRACTION) & np.isfinite(truth)
    start = product.parameters.get("probe_start", {})
    chosen = start.get("chosen", "?") if isinstance(start, dict) else "?"
    return (metrics.phase_ssim(product.phase, np.nan_to_num(truth), usable),
            metrics.phase_rmse(product.phase, np.nan_to_num(truth), usable), str(chosen), seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=DemoOptions().iterations)
    parser.add_argument("--alpha", type=float, default=RpieOptions().alpha)
    parser.add_argument("--momentum", type=float, default=RpieOptions().momentum)
    parser.add_argument("--scans", type=int, nargs="*", default=[1, 2, 3, 4])
    args = parser.parse_args()
    options = RpieOptions(iterations=args.iterations, alpha=args.alpha, momentum=args.momentum)
    print(f"# the demo's scans, rPIE {args.iterations} iterations, alpha {args.alpha:g}, momentum {args.momentum:g}")
    print(f"{'scan':<10}{'SSIM':>7}{'RMSE':>8}  {'start chosen':<28}{'s':>6}")
    for number in args.scans:
        ssim, rmse, chosen, seconds = score(number, options)
        print(f"scan_{number:04d} {ssim:>7.3f}{rmse:>8.3f}  {chosen:<28}{seconds:>6.0f}", flush=True)


if __name__ == "__main__":
    main()
