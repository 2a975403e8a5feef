"""Scenarios for the rPIE quality benchmark and the defaults sweep: scan files with their truth.

Two independent forward models make them:
- ``sim``: ptychoflow's own simulator (``ptychoflow.simulate``), written with its writer;
- ``tb``: the textbook model in ``textbook_model.py`` (own probes, objects, scans in metres,
  plain-h5py writer).

``SCENARIOS`` is the benchmark's table. ``TUNING`` is a separate set (other seeds, objects,
doses and scan patterns) on which ``recon_defaults.py`` chose the defaults, so the table stays a
check on data the defaults were not chosen on. ``SMALL`` holds one small scan per probe
family for the fast tests.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import textbook_model as tb  # noqa: E402

# Score where the true illumination is >= half its typical level (95th percentile): a spiral's
# dense centre or a diffuser's hot speckle must not shrink the region to a few pixels.
ILLUMINATED = 0.5
SSIM_GOAL = 0.80
SSIM_GOAL_DOSE = 1e4


@dataclass
class Truth:
    """What scoring needs: the true object, where the scan frame puts it, the true illumination."""

    object: np.ndarray
    origin_px: np.ndarray  # scan-frame pixel (positions_m / pixel) of object[0, 0]
    probe: np.ndarray
    positions_px: np.ndarray  # true probe centres, scan-frame pixels

    def mask(self) -> np.ndarray:
        from ptychoflow.product import illumination_map

        lit = illumination_map(self.probe, self.positions_px - self.origin_px, self.object.shape)
        return lit >= ILLUMINATED * np.percentile(lit[lit > 0], 95)

    def probe_width_px(self) -> float:
        return tb.power_diameter_px(self.probe)


@dataclass
class Scenario:
    name: str
    model: str  # "sim" or "tb"
    probe: str
    scan: str
    dose: float
    field: str  # "square" or "rect"
    frame: int
    make: Callable[[Path], tuple[Path, Truth]] = field(repr=False)
    position_error_px: float = 0.0

    def describe(self) -> str:
        error = f", {self.position_error_px:g} px RMS position error" if self.position_error_px else ""
        return f"{self.model} {self.probe} {self.scan} {self.dose:.0e} {self.field} {self.frame}^2{error}"


# --------------------------------------------------------------------------- scenarios


def _sim(name: str, *, probe: str, trajectory: str, dose: float, frame: int, object_size: int, diameter: float,
         step: float, phase: str = "astronaut", amplitude: str = "camera") -> Scenario:
    def make(directory: Path) -> tuple[Path, Truth]:
        from ptychoflow.scan.format import write_scan
        from ptychoflow.simulate.beamline import SimulationOptions, simulate_scan

        options = SimulationOptions(frame_size=frame, object_size=object_size, probe=probe, probe_diameter_px=diameter,
                                    trajectory=trajectory, step_px=step, dose=dose, phase=phase, amplitude=amplitude)
        sim = simulate_scan(options, scan_id=name)
        path = write_scan(directory / f"{name}.h5", sim.scan)
        return path, Truth(sim.truth_object, np.zeros(2), sim.truth_probe, sim.positions_px)

    scan = "fermat" if trajectory == "spiral" else trajectory  # ptychoflow's "spiral" is Fermat's
    return Scenario(name, "sim", probe, scan, dose, "square", frame, make)


def textbook_probe(kind: str, geometry: tb.Geometry, diameter_px: float, *, side: int = 1, seed: int = 0) -> np.ndarray:
    """One of the textbook model's optics, about `diameter_px` across (90 % of the power)."""
    if kind == "gaussian":  # a Gaussian beam well past its focus: strongly curved wavefront
        return tb.gaussian_focus(geometry, waist_px=geometry.frame / 25.6, diameter_px=diameter_px)
    if kind == "airy":  # an unobstructed lens off focus
        return tb.lens_focus(geometry, pupil_fraction=0.45, diameter_px=0.95 * diameter_px, defocus_sign=side)
    if kind == "zoneplate":  # a zone plate with its central stop, off focus
        return tb.lens_focus(geometry, pupil_fraction=0.6, diameter_px=0.95 * diameter_px, central_stop=0.4,
                             defocus_sign=side)
    if kind == "pinhole":
        return tb.pinhole(geometry, diameter_px=0.95 * diameter_px)
    if kind == "diffuser":
        return tb.diffuser(geometry, diameter_px=0.9 * diameter_px, seed=seed)
    raise ValueError(f"unknown textbook probe {kind!r}")


def _tb(name: str, *, probe: str, scan: str, dose: float, field_px: tuple[int, int], frame: int, step_px: float,
        diameter_px: float, obj: str, position_error_px: float = 0.0, side: int = 1, seed: int = 1) -> Scenario:
    def make(directory: Path) -> tuple[Path, Truth]:
        geometry = tb.Geometry(frame=frame)
        dx = geometry.pixel_m
        field_m = (field_px[0] * dx, field_px[1] * dx)
        scan_m = tb.raster(field_m, step_px * dx, seed=seed) if scan == "raster" else tb.SCANS[scan](field_m, step_px * dx)
        illumination = textbook_probe(probe, geometry, diameter_px, side=side, seed=seed)
        experiment = tb.simulate(geometry, illumination, scan_m, object_kind=obj, photons=dose,
                                 position_error_px=position_error_px, seed=seed)
        path = tb.write_scan(directory / f"{name}.h5", experiment, name)
        return path, Truth(experiment.object, experiment.object_origin_m / dx, experiment.probe,
                           experiment.true_positions_m / dx)

    shape = "square" if field_px[0] == field_px[1] else "rect"
    return Scenario(name, "tb", probe, scan, dose, shape, frame, make, position_error_px)


def by_name(name: str) -> Scenario:
    for scenario in (*SCENARIOS, *TUNING, *SMALL):
        if scenario.name == name:
            return scenario
    raise KeyError(f"no scenario {name!r}")


# The benchmark's table: 3 from ptychoflow's simulator, 7 from the textbook model. Probe
# diameters span 2.4-4.3 scan steps (overlap 58-77 %).
SCENARIOS = [
    _sim("sim-zoneplate-fermat", probe="zoneplate", trajectory="spiral", dose=1e6, frame=64, object_size=192,
         diameter=36, step=10),
    _sim("sim-gaussian-raster", probe="gaussian", trajectory="raster", dose=1e5, frame=64, object_size=192,
         diameter=30, step=10, phase="camera", amplitude="moon"),
    _sim("sim-zoneplate-raster-128", probe="zoneplate", trajectory="raster", dose=1e4, frame=128, object_size=320,
         diameter=72, step=20, phase="chelsea", amplitude="coins"),
    _tb("tb-gaussian-raster", probe="gaussian", scan="raster", dose=1e5, field_px=(120, 120), frame=64, step_px=9,
        diameter_px=28, obj="cells"),
    _tb("tb-airy-spiral-rect", probe="airy", scan="spiral", dose=1e4, field_px=(80, 160), frame=64, step_px=10,
        diameter_px=24, obj="fibres"),
    _tb("tb-zoneplate-fermat-128", probe="zoneplate", scan="fermat", dose=1e6, field_px=(160, 160), frame=128,
        step_px=12, diameter_px=52, obj="cells", side=-1),
    _tb("tb-pinhole-raster-rect", probe="pinhole", scan="raster", dose=1e3, field_px=(90, 150), frame=64, step_px=7,
        diameter_px=22, obj="cells"),
    _tb("tb-diffuser-fermat", probe="diffuser", scan="fermat", dose=1e5, field_px=(120, 120), frame=64, step_px=8,
        diameter_px=26, obj="fibres"),
    _tb("tb-zoneplate-spiral-poserr", probe="zoneplate", scan="spiral", dose=1e4, field_px=(120, 120), frame=64,
        step_px=9, diameter_px=28, obj="cells", position_error_px=1.0),
    _tb("tb-gaussian-fermat-128-rect", probe="gaussian", scan="fermat", dose=1e4, field_px=(160, 240), frame=128,
        step_px=18, diameter_px=56, obj="fibres"),
]

# The defaults were chosen on these (recon_defaults.py): other seeds, objects, doses, patterns.
TUNING = [
    _tb("tune-gaussian-fermat", probe="gaussian", scan="fermat", dose=3e4, field_px=(96, 96), frame=64, step_px=9,
        diameter_px=30, obj="fibres", seed=11),
    _tb("tune-airy-raster", probe="airy", scan="raster", dose=1e5, field_px=(96, 96), frame=64, step_px=8,
        diameter_px=26, obj="cells", side=-1, seed=12),
    _tb("tune-zoneplate-spiral", probe="zoneplate", scan="spiral", dose=1e4, field_px=(96, 96), frame=64, step_px=8,
        diameter_px=30, obj="cells", seed=13),
    _tb("tune-pinhole-fermat", probe="pinhole", scan="fermat", dose=1e5, field_px=(96, 96), frame=64, step_px=7,
        diameter_px=24, obj="fibres", seed=14),
    _tb("tune-diffuser-raster", probe="diffuser", scan="raster", dose=3e4, field_px=(96, 96), frame=64, step_px=8,
        diameter_px=28, obj="cells", seed=15),
    _sim("tune-sim-zoneplate-fermat", probe="zoneplate", trajectory="spiral", dose=1e5, frame=64, object_size=160,
         diameter=36, step=10, phase="chelsea", amplitude="camera"),
    _sim("tune-sim-gaussian-raster", probe="gaussian", trajectory="raster", dose=1e6, frame=64, object_size=160,
         diameter=32, step=9, phase="coins", amplitude="grass"),
]

# One small scan per probe family for the fast tests (32^2 frames, about 80 positions).
SMALL = [
    _tb(f"small-{kind}", probe=kind, scan="fermat", dose=1e5, field_px=(40, 40), frame=32, step_px=4.5,
        diameter_px=14, obj="cells", seed=21)
    for kind in ("gaussian", "airy", "zoneplate", "pinhole", "diffuser")
]

# A scan far denser than designed (a 14 px zone plate 7 steps across, overlap ~86 %): the fast
# test that the start still finds a probe of the right size (probes.DENSE_STEP_FRACTION).
DENSE_SMALL = _tb("small-dense-zoneplate", probe="zoneplate", scan="fermat", dose=1e5, field_px=(40, 40), frame=32,
                  step_px=2.0, diameter_px=14, obj="cells", seed=22)
