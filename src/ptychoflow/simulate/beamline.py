"""The virtual beamline: simulate scans and emit them exactly as a detector would.

Each scan file grows frame by frame under its final name and is marked complete when
closed; every frame is also published on the ZeroMQ frame stream. The ground truth (object,
probe, positions) is saved beside each scan as ``<scan>.truth.npz`` for quality checks.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ptychoflow.fs import atomic_write
from ptychoflow.scan.format import Instrument, Scan, ScanWriter
from ptychoflow.simulate import forward, objects, positions, probe
from ptychoflow.stream import FramePublisher

TRUTH_SUFFIX = ".truth.npz"


@dataclass
class SimulationOptions:
    """Everything that defines one simulated scan; defaults give ~370 positions at 72% overlap."""

    frame_size: int = 64
    object_size: int = 256
    amplitude: str = "camera"
    phase: str = "astronaut"
    phase_range: float = 1.0
    probe: str = "zoneplate"
    probe_diameter_px: float = 36.0
    trajectory: str = "spiral"
    step_px: float = 10.0
    dose: float = 1e6
    dark_current: float = 0.0
    energy_keV: float = 8.8
    detector_distance_m: float = 1.92
    detector_pixel_size_m: float = 75e-6
    seed: int = 0

    @property
    def instrument(self) -> Instrument:
        return Instrument(self.energy_keV, self.detector_distance_m, self.detector_pixel_size_m)

    @property
    def overlap(self) -> float:
        return positions.linear_overlap(self.step_px, self.probe_diameter_px)


@dataclass
class SimulatedScan:
    scan: Scan
    truth_object: np.ndarray
    truth_probe: np.ndarray
    positions_px: np.ndarray
    options: SimulationOptions = field(repr=False, default_factory=SimulationOptions)


def simulate_scan(options: SimulationOptions, *, scan_id: str, region: int = 0) -> SimulatedScan:
    """Run the forward model: object x probe at every position -> Poisson far-field counts."""
    rng = np.random.default_rng(options.seed + 7919 * region)
    obj = objects.complex_object(
        options.amplitude, options.phase, options.object_size, region=region, phase_range=options.phase_range,
        seed=options.seed,
    )
    illumination = probe.make_probe(options.probe, options.frame_size, diameter_px=options.probe_diameter_px)
    illumination = illumination * np.sqrt(options.dose)
    centres = positions.make_positions(options.trajectory, options.object_size, options.frame_size, options.step_px)
    centres = np.rint(centres)  # the forward model samples whole pixels; record exactly those
    intensity = forward.expected_intensity(obj, illumination, centres)
    counts = forward.detector_counts(intensity, rng, dark_current=options.dark_current)
    instrument = options.instrument
    pixel = instrument.object_pixel_size_m(options.frame_size)
    dark = np.full((options.frame_size,) * 2, options.dark_current, np.float32) if options.dark_current else None
    scan = Scan(
        path=None,
        scan_id=scan_id,
        data=counts,
        positions_m=centres * pixel,
        instrument=instrument,
        dark=dark,
        attrs={"simulated": True, "region": region, "object": f"{options.amplitude}/{options.phase}"},
    )
    return SimulatedScan(scan, obj, illumination.astype(np.complex64), centres, options)


def save_truth(sim: SimulatedScan, scan_path: Path) -> Path:
    target = scan_path.with_name(scan_path.name.removesuffix(".h5") + TRUTH_SUFFIX)
    arrays = {"object": sim.truth_object, "probe": sim.truth_probe, "positions_px": sim.positions_px,
              "pixel_size_m": sim.scan.pixel_size_m, "options": str(asdict(sim.options))}

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:  # a handle: np.savez would append ".npz" to the name
            np.savez(handle, **arrays)

    return atomic_write(target, write)


def load_truth(scan_path: str | Path) -> dict[str, np.ndarray] | None:
    """Ground truth saved beside a simulated scan, or None for a real scan."""
    scan_path = Path(scan_path)
    target = scan_path.with_name(scan_path.name.removesuffix(".h5") + TRUTH_SUFFIX)
    if not target.exists():
        return None
    with np.load(target) as f:
        return {key: f[key] for key in f.files}


def emit_scan(
    scan: Scan,
    path: str | Path,
    *,
    publisher: FramePublisher | None = None,
    frame_rate: float = 0.0,
    batch: int = 64,
    on_progress: Callable[[int], None] | None = None,
) -> Path:
    """Write `scan` to `path` frame by frame (file grows, then complete) and stream each frame.

    `frame_rate` (Hz) paces the detector; 0 emits as fast as the disk and socket allow.
    Frames are written in small batches of those already due, so pacing stays accurate at
    kHz rates without a syscall per frame.
    """
    path = Path(path)
    n = scan.n_frames
    if publisher is not None:
        publisher.send_start(
            scan.scan_id,
            n_frames=n,
            shape=list(scan.frame_shape),
            dtype=np.asarray(scan.data[:1]).dtype.str,
            pixel_size_m=scan.pixel_size_m,
            energy_keV=scan.instrument.energy_keV,
            detector_distance_m=scan.instrument.detector_distance_m,
            detector_pixel_size_m=scan.instrument.detector_pixel_size_m,
            file=path.name,
        )
    start = time.perf_counter()
    with ScanWriter.for_scan(path, scan) as writer:
        index = 0
        while index < n:
            if frame_rate > 0:
                due = int((time.perf_counter() - start) * frame_rate) + 1
                if due <= index:
                    time.sleep(max(0.0, (index / frame_rate) - (time.perf_counter() - start)))
                    continue
                stop = min(n, due, index + batch)
            else:
                stop = min(n, index + batch)
            frames = np.asarray(scan.data[index:stop])
            positions_m = scan.positions_m[index:stop]
            writer.append(frames, positions_m)
            if publisher is not None:
                for offset in range(stop - index):
                    publisher.send_frame(scan.scan_id, index + offset, positions_m[offset], frames[offset])
            index = stop
            if on_progress is not None:
                on_progress(index)
    if publisher is not None:
        publisher.send_end(scan.scan_id, n)
    return path


def scan_filename(number: int) -> str:
    return f"scan_{number:04d}.h5"
