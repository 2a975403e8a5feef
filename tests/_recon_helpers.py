"""Small scans for the reconstruction tests (shared by tests/test_recon_*.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ptychoflow.scan.format import Scan, write_scan
from ptychoflow.simulate.beamline import SimulationOptions, SimulatedScan, simulate_scan

TINY = SimulationOptions(object_size=72, frame_size=32, probe_diameter_px=18.0, step_px=5.0, dose=1e5)


def tiny_scan(scan_id: str = "tiny") -> SimulatedScan:
    """~60 positions of 32x32 frames: enough to exercise every code path in seconds."""
    return simulate_scan(TINY, scan_id=scan_id)


def write_tiny(tmp_path: Path, scan_id: str = "tiny", **changes) -> Path:
    """Write a tiny scan, optionally with fields replaced (data=..., positions_m=...)."""
    sim = tiny_scan(scan_id)
    scan = sim.scan
    fields = {**scan.__dict__, **changes}
    return write_scan(tmp_path / f"{scan_id}.h5", Scan(**fields))


def lit_mask_on_truth(sim: SimulatedScan, fraction: float = 0.1) -> np.ndarray:
    """Where the truth is well lit: sum of |probe|^2 over positions above `fraction` of its max."""
    from ptychoflow.product import illumination_map

    lit = illumination_map(sim.truth_probe, sim.positions_px, sim.truth_object.shape)
    return lit > fraction * lit.max()
