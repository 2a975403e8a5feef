"""Small simulated scans shared by the nn tests (cached per session: simulation is the slow part)."""

from __future__ import annotations

from functools import cache

from ptychoflow.nn.pairs import Pairs, ReconstructionLike, make_pairs
from ptychoflow.preprocess import PreprocessConfig
from ptychoflow.simulate.beamline import SimulatedScan, SimulationOptions, simulate_scan

PRE = PreprocessConfig(crop=64)


@cache
def small_sim(region: int = 0, step: float = 14.0) -> SimulatedScan:
    """A 160 px object, ~90 positions: enough to learn something in seconds."""
    return simulate_scan(SimulationOptions(object_size=160, step_px=step, seed=3), scan_id=f"r{region}", region=region)


@cache
def small_pairs(region: int = 0, step: float = 14.0) -> Pairs:
    sim = small_sim(region, step)
    return make_pairs(sim.scan.data, ReconstructionLike.from_simulation(sim), PRE)
