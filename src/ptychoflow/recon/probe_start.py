"""A probe start that holds across optics: try a few candidates, keep the one the data prefer.

rPIE refines a probe well only from a start near the truth. The wrong side of focus or a
wrong diameter leaves it in a poor local minimum (streaks, no object) and it fails silently.
So, before the reconstruction, each candidate (``probes``: the measured pupil defocused to
either side of focus at two diameters, and the scan's own guess if it has one) runs a few
rPIE iterations on a compact cluster of positions, and the candidate whose result best
predicts the cluster's held-out frames starts the real run. (A flat Gaussian of the scan's
size was a candidate too; it never won, on any scan tried, and was dropped.)

Held-out, because the loss on the frames a trial was fitted to rewards a probe that is too
small: it converges fastest at first, the object absorbing the error, and then stays wrong
(measured on the real Siemens star). Frames between the fitted ones are predicted well only
by a probe and object that are right. Which candidate won, why, and every candidate's
held-out loss are recorded in the product.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ptychoflow.errors import InputError
from ptychoflow.recon import probes
from ptychoflow.recon.base import PreparedScan, ReconstructionResult, RpieOptions, object_frame
from ptychoflow.simulate.probe import probe_diameter_px

if TYPE_CHECKING:
    from ptychoflow.product import ReconstructionProduct

log = logging.getLogger(__name__)
EngineRun = Callable[..., ReconstructionResult]  # (prepared, options[, progress]) -> result: the engine on its device

TRIAL_ITERATIONS = 4
TRIAL_POSITIONS = 64  # a compact cluster at the scan's centre: overlapping, so the loss means something
HELD_OUT_EVERY = 4  # every 4th position of the cluster (in scan order, so spread across it) is held out
# Trials take rPIE's most cautious step (alpha = 1: object and probe steps scaled by the largest
# |P|^2 and |O|^2): a start near the truth then improves steadily in a few iterations while a
# wrong one stalls, whatever step size the full run uses. With the default alpha the trials of
# too-large or wrong-side probes were erratic and a wrong side of focus could win (measured on
# tune-sim-zoneplate-fermat: held-out loss 0.335 vs 0.341 for the two sides at alpha 0.1,
# 0.252 for the right side against 0.283 at alpha 1).
TRIAL_ALPHA = 1.0
DIAMETERS_IN_STEPS = (2.5, 4.0)  # scans are designed with a probe 2-5 steps across (60-80 % overlap)
# On a scan far denser than designed (probes.is_dense) the half-frame pupil is a candidate too.
# A trial of a probe many steps across on the compact cluster diverges: its 64 positions all
# overlap, and a batch of them over-steps the object. Such a candidate is fitted instead on
# central positions spaced as designed for it (probes.DESIGNED_DIAMETER_IN_STEPS), and judged
# on the same held-out frames as every other candidate.


@dataclass
class Candidate:
    name: str
    probe: np.ndarray  # ortho-FFT convention, scaled to the mean frame's counts
    diameter_px: float  # what it was made for; for the scan's guess, the disc holding 90 % of its power


@dataclass
class ProbeStart:
    """The chosen start, why, and what every candidate scored (the product's record)."""

    chosen: str
    reason: str
    probe: np.ndarray = field(repr=False)
    losses: dict[str, float] = field(default_factory=dict)
    trial_iterations: int = 0
    trial_positions: int = 0
    seconds: float = 0.0
    source: str = ""  # the product whose probe was reused, if any

    def to_json(self) -> dict[str, Any]:
        return {"chosen": self.chosen, "reason": self.reason, "losses": self.losses,
                "trial_iterations": self.trial_iterations, "trial_positions": self.trial_positions,
                "seconds": round(self.seconds, 3), "source": self.source}


def candidates(intensities: np.ndarray, positions_px: np.ndarray, guess: np.ndarray | None = None) -> list[Candidate]:
    """The starts worth trying for these data, each scaled to the mean frame's counts."""
    n = intensities.shape[-1]
    step = probes.median_step_px(positions_px)
    amplitude = probes.pupil_amplitude(intensities)
    found = []
    if guess is not None:
        found.append(Candidate("scan's probe guess", guess, probe_diameter_px(np.asarray(guess))))
    diameters = {f"{steps:g} steps": min(0.7 * n, steps * step) for steps in DIAMETERS_IN_STEPS}
    if probes.is_dense(step, n):
        label, diameter = probes.untried_diameter(step, n)
        diameters[label] = diameter
    for label, diameter in diameters.items():
        for sign, side in ((-1, "-"), (1, "+")):
            found.append(Candidate(f"pupil defocus{side} {label}", probes.defocused_pupil(amplitude, diameter, sign),
                                   diameter))
    return [replace(c, probe=probes.scale_to_counts(c.probe, intensities)) for c in found]


def trial_cluster(positions_px: np.ndarray, count: int = TRIAL_POSITIONS) -> tuple[np.ndarray, np.ndarray]:
    """(fitted, held-out) indices: the `count` positions nearest the scan's centre, every
    HELD_OUT_EVERY-th of them (in scan order) held out. Small scans use all positions."""
    cluster = np.sort(central_first(positions_px)[:count])
    held = np.zeros(cluster.size, bool)
    held[HELD_OUT_EVERY // 2 :: HELD_OUT_EVERY] = True
    return cluster[~held], cluster[held]


def central_first(positions_px: np.ndarray) -> np.ndarray:
    """Position indices, nearest the scan's (median) centre first."""
    return np.argsort(np.hypot(*(positions_px - np.median(positions_px, axis=0)).T))


def fitted_for(candidate: Candidate, positions_px: np.ndarray, step_px: float, fitted: np.ndarray,
               held_out: np.ndarray) -> np.ndarray:
    """The positions a candidate's trial fits: the cluster's, unless the candidate is more than
    twice the designed probes.DESIGNED_DIAMETER_IN_STEPS across; then as many central positions,
    spaced a third of its diameter apart, none of them held out."""
    spacing = candidate.diameter_px / probes.DESIGNED_DIAMETER_IN_STEPS
    if spacing <= 2 * step_px:
        return fitted
    order = central_first(positions_px)
    kept: list[int] = []
    for index in order[~np.isin(order, held_out)]:
        if not kept or np.hypot(*(positions_px[kept] - positions_px[index]).T).min() >= spacing:
            kept.append(int(index))
        if len(kept) == len(fitted):
            break
    return np.sort(np.asarray(kept, int))


def predicted_intensities(obj: np.ndarray, probe: np.ndarray, positions_in_object: np.ndarray) -> np.ndarray:
    """Centred far-field intensities |F[P(r - c) O(r)]|^2 (ortho FFT) for probe centres in object pixels.

    The patch corner is c - n/2, as everywhere in ptychoflow; a fractional corner moves the
    probe by the fraction (Fourier shift) against the whole-pixel object patch, which leaves
    the far-field intensity exactly as a sub-pixel shifted patch would.
    """
    n = probe.shape[-1]
    corners = np.asarray(positions_in_object, np.float64) - n / 2
    whole = np.floor(corners).astype(int)
    fraction = corners - whole
    q = np.fft.fftfreq(n)
    ramp = np.exp(-2j * np.pi * (fraction[:, 0, None, None] * q[None, :, None] + fraction[:, 1, None, None] * q[None, None, :]))
    shifted = np.fft.ifft2(np.fft.fft2(probe)[None] * ramp)
    rows = whole[:, 0, None] + np.arange(n)
    cols = whole[:, 1, None] + np.arange(n)
    rows, cols = np.clip(rows, 0, obj.shape[0] - 1), np.clip(cols, 0, obj.shape[1] - 1)
    patches = obj[rows[:, :, None], cols[:, None, :]]
    return np.fft.fftshift(np.abs(np.fft.fft2(shifted * patches, norm="ortho")) ** 2, axes=(-2, -1))


def amplitude_loss(predicted: np.ndarray, measured: np.ndarray) -> float:
    """Mean squared difference of the amplitudes (Pty-chi's displayed rPIE loss, MSE of sqrt)."""
    return float(np.mean((np.sqrt(predicted) - np.sqrt(np.maximum(measured, 0))) ** 2))


def _subset_scan(prepared: PreparedScan, indices: np.ndarray, probe: np.ndarray) -> PreparedScan:
    positions = prepared.positions_px[indices]
    shape, origin = object_frame(positions, prepared.frame_size)
    return replace(prepared, intensities=prepared.intensities[indices], positions_px=positions, probe=probe,
                   object_shape=shape, object_origin_px=origin)


def choose_start(prepared: PreparedScan, options: RpieOptions, run: EngineRun) -> ProbeStart:
    """Fit every candidate for TRIAL_ITERATIONS on the central cluster; the best held-out prediction wins.

    `run(prepared, options)` is the chosen engine on its device, as the reconstruction uses it.
    """
    start = time.perf_counter()
    found = candidates(prepared.intensities, prepared.positions_px, prepared.probe_guess)
    fitted, held_out = trial_cluster(prepared.positions_px)
    step = probes.median_step_px(prepared.positions_px)
    trial = replace(options, iterations=TRIAL_ITERATIONS, alpha=TRIAL_ALPHA, time_limit_s=None,
                    position_refinement=False, probe_refinement_start=min(options.probe_refinement_start, 1))
    losses: dict[str, float] = {}
    for candidate in found:
        try:
            positions = fitted_for(candidate, prepared.positions_px, step, fitted, held_out)
            result = run(_subset_scan(prepared, positions, candidate.probe), trial)
        except FloatingPointError:
            losses[candidate.name] = float("inf")
            continue
        predicted = predicted_intensities(result.object, result.probe,
                                          prepared.positions_px[held_out] - result.object_origin_px)
        losses[candidate.name] = amplitude_loss(predicted, prepared.intensities[held_out])
        log.info("probe start: %s -> held-out loss %.4g", candidate.name, losses[candidate.name])
    finite = {name: loss for name, loss in losses.items() if np.isfinite(loss)}
    if not finite:
        raise FloatingPointError("rPIE diverged from every candidate probe start")
    best = min(finite, key=finite.get)
    runner_up = sorted(finite.values())[1] if len(finite) > 1 else None
    reason = (f"best prediction of {len(held_out)} held-out frames after {TRIAL_ITERATIONS} rPIE iterations on "
              f"{len(fitted)} central positions: loss {finite[best]:.4g}"
              + (f" (next best {runner_up:.4g})" if runner_up is not None else ""))
    chosen = next(c for c in found if c.name == best)
    return ProbeStart(best, reason, chosen.probe, losses, TRIAL_ITERATIONS, len(fitted) + len(held_out),
                      time.perf_counter() - start)


def reusable_product(path: str | Path, frame: int, pixel_size_m: float) -> ReconstructionProduct:
    """The product at `path` if its probe can start a scan of `frame`-pixel frames at this
    object pixel; else one InputError naming the product and the field (another frame size, or
    another pixel: energy, distance or detector changed)."""
    from ptychoflow.product import probe_misfit, read_product

    product = read_product(path)
    misfit = probe_misfit(product.probe.shape, product.pixel_size_m, frame, pixel_size_m)
    if misfit is not None:
        raise InputError(path, *misfit)
    if not np.isfinite(product.probe).all():
        raise InputError(path, "/reconstruction/probe", "contains NaN or infinite values")
    return product


def product_start(prepared: PreparedScan, path: str | Path) -> ProbeStart:
    """The probe of an earlier reconstruction (beamlines reuse the probe across a session's scans).

    Used as it is, rescaled to this scan's counts: no trials.
    """
    product = reusable_product(path, prepared.frame_size, prepared.pixel_size_m)
    reason = (f"the probe of {Path(path).name} (scan {product.scan_id}, {product.engine}, "
              f"{product.iterations_run} iterations), rescaled to this scan's counts")
    return ProbeStart(f"product {product.scan_id}", reason, probes.scale_to_counts(product.probe, prepared.intensities),
                      source=str(path))


def given_start(prepared: PreparedScan) -> ProbeStart:
    """No trials: the probe ``prepare_scan`` made (the scan's guess, else the untried pupil estimate)."""
    if prepared.probe_guess is not None:
        return ProbeStart("scan's probe guess", "given: probe_start='given' and the scan stores a guess", prepared.probe)
    label, _ = probes.untried_diameter(probes.median_step_px(prepared.positions_px), prepared.frame_size)
    return ProbeStart(f"pupil defocus+ {label}", "given: probe_start='given' and the scan stores no guess", prepared.probe)
