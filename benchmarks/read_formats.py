"""Scan reading speed by layout, side by side in one run (issue 17).

The same simulated 128x128 frames (Poisson counts, uint32) are written three ways: our own
layout (uncompressed chunks, one frame each), and the Eiger/NeXus layout (master file, data
files of 1,000 frames, an APS position file) with and without bitshuffle/LZ4. Each is read
whole through the reader registry (``load_scan``: frames validated, positions matched),
alternating layouts so load on the machine hits them alike.

Prints frames/s (median of 15) and the ratio to our layout.
Target: Eiger with bitshuffle >= 0.8 x the frame rate of our own layout.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (puts src/ on sys.path)
import numpy as np
from _common import header, median, row, timed

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from foreign_files import write_eiger  # noqa: E402  (the Eiger layout as the detector writes it)

from ptychoflow.scan import load_scan, write_scan  # noqa: E402
from ptychoflow.simulate.beamline import SimulationOptions, simulate_scan  # noqa: E402

COPIES = 3  # the simulated scan, repeated: 1,134 frames (74 MB of uint32)
TARGET = 0.8
REPEATS = 15


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=COPIES,
                        help=f"the simulated scan repeated this many times (default {COPIES}: about 1,100 frames)")
    copies = parser.parse_args().copies
    sim = simulate_scan(SimulationOptions(frame_size=128, object_size=512, step_px=20, probe_diameter_px=72), scan_id="bench")
    frames = np.concatenate([np.asarray(sim.scan.data, np.uint32)] * copies)
    positions = np.concatenate([sim.scan.positions_m + k * 1e-7 for k in range(copies)])
    scan = sim.scan
    scan.data, scan.positions_m = frames, positions
    n = len(frames)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = {
            "ptychoflow (uncompressed)": write_scan(tmp / "ours.h5", scan),
            "eiger bitshuffle/LZ4": write_eiger(tmp / "bslz4", "bench", frames, positions, frames_per_file=1000),
            "eiger uncompressed": write_eiger(tmp / "plain", "bench", frames, positions, frames_per_file=1000,
                                              compression="none"),
        }
        sizes = {name: sum(p.stat().st_size for p in path.parent.glob(f"{path.name.split('_')[0]}*"))
                 for name, path in files.items()}
        times: dict[str, list[float]] = {name: [] for name in files}
        for _ in range(REPEATS):  # interleaved: each round reads every layout once
            for name, path in files.items():
                times[name] += timed(lambda path=path: load_scan(path), repeats=1, warmup=0)
        header(f"scan reading, {n} frames of 128x128 uint32, load_scan (validated): frames/s, median of {REPEATS}")
        row("layout", "MB on disk", "frames/s", "ratio to ours")
        base = n / median(times["ptychoflow (uncompressed)"])
        for name in files:
            fps = n / median(times[name])
            row(name, sizes[name] / 1e6, fps, fps / base)
        ratio = (n / median(times["eiger bitshuffle/LZ4"])) / base
        print(f"eiger bitshuffle/LZ4 reads at {ratio:.2f} x our layout (target >= {TARGET}): {'PASS' if ratio >= TARGET else 'FAIL'}")


if __name__ == "__main__":
    main()
