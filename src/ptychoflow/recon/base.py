"""The engine interface: options, result, input validation and the shared data preparation.

Every engine receives the same ``PreparedScan`` (centred intensities, probe-centre positions in
object pixels, an initial probe in the ortho-FFT convention, an object frame) and converts to
its own conventions internally, so the result always comes back in ptychoflow's conventions:
object pixel coordinates in the scan's own position frame, ``object_origin_px`` locating the
object array's [0, 0], and a probe whose ortho FFT gives the measured intensities.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np

from ptychoflow.errors import ScanError
from ptychoflow.preprocess import PreprocessConfig, preprocess
from ptychoflow.recon import probes
from ptychoflow.recon.registry import DEVICES, Device
from ptychoflow.scan.format import Scan
from ptychoflow.scan.frames import require_real

MIN_POSITIONS = 10
OBJECT_PADDING_PX = 8  # margin around the scanned area so edge patches never touch the border
MAX_OBJECT_PX = 16384  # a larger frame almost always means positions in the wrong unit
ProbeStartMode = Literal["auto", "given"]
PROBE_START_MODES = ("auto", "given")


@dataclass
class RpieOptions:
    """rPIE settings shared by all engines (names follow Pty-chi's options).

    The defaults were chosen on seven scans of five probe families from two forward models
    (``benchmarks/recon_defaults.py``; the figures and the reasons are in docs/reconstruction.md).
    """

    # the slowest families (Gaussian probe on a raster, pinhole) still gain between 40 and 80
    iterations: int = 100
    # 16: best mean and worst-scan SSIM at 80 iterations (0.812 / 0.641 against 0.797 / 0.493 at 8), half the steps
    batch_size: int = 16
    # rPIE's regularisation of the object and probe steps; 1 (the most cautious step) was best on
    # noisy data: mean SSIM 0.797 at 80 iterations against 0.684 at the former 0.1
    alpha: float = 1.0
    # Momentum on the object's rPIE steps (mPIE's idea, Maiden et al. 2017). 0 (plain rPIE): momentum
    # lowered the mean SSIM at 80 iterations (0.765 at 0.5 against 0.816), carrying noise with signal
    momentum: float = 0.0
    probe_refinement: bool = True
    position_refinement: bool = False
    device: Device = "auto"
    time_limit_s: float | None = None  # stop cleanly between iterations once exceeded
    seed: int = 0
    probe_refinement_start: int = 1  # one iteration for the object first; 0, 5 and 10 were no better
    # "auto": try candidate probes on the data first (probe_start.choose_start); "given": start
    # from the scan's stored guess, or without one the measured pupil defocused over 3 steps.
    probe_start: ProbeStartMode = "auto"

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0.0 < self.alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {self.alpha}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.probe_start not in PROBE_START_MODES:
            raise ValueError(f"probe_start must be one of {', '.join(PROBE_START_MODES)}, got {self.probe_start!r}")
        if self.time_limit_s is not None and self.time_limit_s <= 0:
            raise ValueError(f"time_limit_s must be positive, got {self.time_limit_s}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class IterationInfo:
    """What an engine reports after each iteration (for progress bars and logs)."""

    iteration: int  # 1-based
    total: int
    loss: float
    elapsed_s: float


ProgressCallback = Callable[[IterationInfo], None]


@dataclass
class PreparedScan:
    """Engine-neutral input: validated, dark-subtracted, in ptychoflow conventions."""

    intensities: np.ndarray  # (N, n, n) float32, zero frequency centred
    positions_px: np.ndarray  # (N, 2) probe centres (y, x) in object pixels, scan frame
    probe: np.ndarray  # (n, n) complex64, ortho-FFT convention, power = mean frame counts
    object_shape: tuple[int, int]
    object_origin_px: np.ndarray  # (2,) scan-frame pixel coordinates of object[0, 0]
    pixel_size_m: float
    wavelength_m: float
    scan_id: str
    source: str
    probe_guess: np.ndarray | None = None  # the scan's own stored guess, as stored (a start candidate)

    @property
    def frame_size(self) -> int:
        return int(self.intensities.shape[-1])

    def positions_in_object(self) -> np.ndarray:
        """Probe centres in object-array pixel indices."""
        return self.positions_px - self.object_origin_px


@dataclass
class ReconstructionResult:
    """What an engine returns, in ptychoflow's conventions; ``reconstruct`` fills in the rest
    (scan id, source, why this engine, total wall time) before anyone sees it."""

    object: np.ndarray  # (H, W) complex64
    probe: np.ndarray  # (n, n) complex64 (first mode), ortho-FFT convention
    positions_px: np.ndarray  # (N, 2) refined probe centres (y, x), scan frame
    pixel_size_m: float
    loss_history: np.ndarray  # (iterations_run,)
    engine: str
    versions: dict[str, str]
    parameters: dict[str, Any]
    object_origin_px: np.ndarray  # (2,) scan-frame pixel coordinates of object[0, 0]
    iterations_run: int = 0
    stopped_early: bool = False
    stop_reason: str = "completed"
    engine_reason: str = ""
    wall_time_s: float = 0.0
    scan_id: str = ""
    source: str = ""

    @property
    def final_loss(self) -> float:
        return float(self.loss_history[-1]) if len(self.loss_history) else float("nan")


def validate_scan(scan: Scan) -> None:
    """Reject scans no engine can reconstruct, before any work is done (one ScanError)."""
    path = scan.path or Path(f"<scan {scan.scan_id}>")
    data_field, pos_field, probe_field = scan.fields  # as the user's file spells them (its reader says)
    data = np.asarray(scan.data)
    require_real(path, data_field, data.dtype, "counts")
    if data.ndim != 3 or data.shape[1] != data.shape[2]:
        raise ScanError(path, data_field, f"expected square frames (N, n, n), got shape {data.shape}")
    n = scan.n_frames
    if n < MIN_POSITIONS:
        raise ScanError(path, pos_field, f"only {n} positions; rPIE needs at least {MIN_POSITIONS} overlapping views")
    positions = np.asarray(scan.positions_m)
    if positions.shape != (n, 2):
        raise ScanError(path, pos_field, f"expected shape ({n}, 2), got {positions.shape}")
    if not np.isfinite(positions).all():
        raise ScanError(path, pos_field, "contains NaN or infinite values")
    if np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).all():
        bad = int(np.argmax(~np.isfinite(data).reshape(n, -1).all(axis=1)))
        raise ScanError(path, data_field, f"frame {bad} contains NaN or infinite counts")
    if (data < 0).any():
        bad = int(np.argmax((data < 0).reshape(n, -1).any(axis=1)))
        raise ScanError(path, data_field, f"frame {bad} contains negative counts")
    totals = data.reshape(n, -1).sum(axis=1, dtype=np.float64)
    if not totals.any():
        raise ScanError(path, data_field, "all frames are zero (no photons: shutter closed?)")
    if (totals == 0).any():
        bad = np.flatnonzero(totals == 0)
        raise ScanError(path, data_field, f"{bad.size} all-zero frame(s), first at index {int(bad[0])}")
    px = scan.positions_px()
    span = px.max(axis=0) - px.min(axis=0)
    frame = data.shape[-1]
    if span.max() < 1.0:
        raise ScanError(path, pos_field, "all positions coincide (span < 1 object pixel): nothing overlaps to solve")
    if span.max() + frame > MAX_OBJECT_PX:
        raise ScanError(
            path, pos_field,
            f"positions span {span.max():.3g} object pixels (pixel {scan.pixel_size_m:.3g} m): "
            "outside any plausible object (wrong unit?)",
        )
    unique = np.unique(np.round(px, 3), axis=0).shape[0]
    if unique < MIN_POSITIONS:
        raise ScanError(path, pos_field, f"only {unique} distinct positions; need at least {MIN_POSITIONS}")
    if scan.probe_guess is not None and not np.abs(np.asarray(scan.probe_guess)).any():
        # a stored guess of zeros would reach the probe start's scaling as a traceback
        raise ScanError(path, probe_field, "is all zero (no probe to start from)")


def initial_probe(intensities: np.ndarray, positions_px: np.ndarray, guess: np.ndarray | None) -> np.ndarray:
    """The scan's probe guess, else the measured pupil defocused over ``probes.untried_diameter``.

    Scaled to the mean frame's counts. This is the start when no candidates are tried
    (``probe_start.choose_start`` picks among several on the data).
    """
    if guess is None:
        _, diameter = probes.untried_diameter(probes.median_step_px(positions_px), intensities.shape[-1])
        guess = probes.defocused_pupil(probes.pupil_amplitude(intensities), diameter, 1)
    return probes.scale_to_counts(guess, intensities)


def object_frame(positions_px: np.ndarray, frame: int, padding: int = OBJECT_PADDING_PX) -> tuple[tuple[int, int], np.ndarray]:
    """Object shape and origin covering every patch (corner = centre - n/2) plus a margin."""
    corners = positions_px - frame / 2
    low = np.floor(corners.min(axis=0)) - padding
    high = np.ceil(corners.max(axis=0)) + frame + padding
    shape = tuple(int(v) for v in (high - low))
    return (shape[0], shape[1]), low.astype(np.float64)


def prepare_scan(scan: Scan) -> PreparedScan:
    """Validate, subtract the dark frame (shared preprocessing), choose the object frame."""
    validate_scan(scan)
    n = scan.frame_shape[0]
    intensities = preprocess(np.asarray(scan.data), PreprocessConfig(crop=n, transform="none"), dark=scan.dark)
    positions_px = scan.positions_px()
    shape, origin = object_frame(positions_px, n)
    return PreparedScan(
        intensities=intensities,
        positions_px=positions_px,
        probe=initial_probe(intensities, positions_px, scan.probe_guess),
        object_shape=shape,
        object_origin_px=origin,
        pixel_size_m=scan.pixel_size_m,
        wavelength_m=scan.instrument.wavelength_m,
        scan_id=scan.scan_id,
        source=str(scan.path) if scan.path else "<memory>",
        probe_guess=scan.probe_guess,
    )
