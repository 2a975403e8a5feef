"""Probe shapes a reconstruction can start from, made from the data alone.

The mean diffraction amplitude is the modulus of the probe's Fourier transform (the optics'
bright-field pupil, blurred a little by the object). What the data do not show is the
pupil's phase. For the usual optics (a lens or zone plate, a Gaussian beam, KB mirrors) that
phase is mostly defocus: a quadratic whose strength sets the illuminated diameter and whose
sign says whether the sample sits before or after the focus. Neither is known in advance,
so candidates span both signs and a few diameters; ``probe_start`` tries them on the data.

All probes follow the ortho-FFT convention and are scaled so their power equals the mean
frame's counts (with |O| ~ 1 each frame sums to the probe's power).
"""

from __future__ import annotations

import math

import numpy as np

PUPIL_POWER_FRACTION = 0.9  # the pupil's edge: the radius holding this share of the bright field
DESIGNED_DIAMETER_IN_STEPS = 3.0  # scans are designed with a probe about 3 steps across (67 % overlap)
# A scan much denser than designed (a probe 5-10 steps across, 80-90 % overlap) defeats
# step-based diameters: all are far too small, and rPIE collapses the probe to a few pixels
# (benchmarks/sparse.py's scans: SSIM 0.49 at 80 and 90 % overlap; 0.93 and 0.94 from half the
# frame). So when the step is under 1/12 of the frame, half the frame (the largest probe a
# detector samples twice over) is the diameter to start from. Every scan of recon_quality's
# table and tuning set is coarser (step >= frame / 9.7).
DENSE_STEP_FRACTION = 1 / 12
HALF_FRAME = 0.5


def is_dense(step_px: float, frame: int) -> bool:
    """True for a scan far denser than designed (step under DENSE_STEP_FRACTION of the frame)."""
    return step_px < DENSE_STEP_FRACTION * frame


def untried_diameter(step_px: float, frame: int) -> tuple[str, float]:
    """(label, diameter in px) of the one start used when no candidates are tried: the designed
    3 steps (at most 0.7 of the frame), or half the frame on a dense scan."""
    if is_dense(step_px, frame):
        return "half frame", HALF_FRAME * frame
    return f"{DESIGNED_DIAMETER_IN_STEPS:g} steps", min(0.7 * frame, DESIGNED_DIAMETER_IN_STEPS * step_px)


def frequency_radius(n: int) -> np.ndarray:
    """Distance from the centre (index n // 2) of an n x n centred array, in pixels."""
    q = np.arange(n) - n // 2
    return np.hypot(*np.meshgrid(q, q, indexing="ij"))


def median_step_px(positions_px: np.ndarray) -> float:
    """Median nearest-neighbour distance of the scan: the scan step, whatever the pattern."""
    from scipy.spatial import cKDTree

    distances, _ = cKDTree(positions_px).query(positions_px, k=2)
    steps = distances[:, 1]
    return float(np.median(steps[steps > 0])) if (steps > 0).any() else 1.0


def pupil_amplitude(intensities: np.ndarray) -> np.ndarray:
    """sqrt of the mean (centred) diffraction pattern: |F[P]| up to the object's blur."""
    return np.sqrt(np.maximum(intensities.mean(axis=0, dtype=np.float64), 0.0))


def pupil_radius(amplitude: np.ndarray) -> float:
    """Radius (px) of the centred disk holding PUPIL_POWER_FRACTION of the bright field; at least 2."""
    radius = frequency_radius(amplitude.shape[-1]).ravel()
    order = np.argsort(radius)
    power = np.cumsum(amplitude.ravel()[order] ** 2)
    return max(2.0, float(radius[order][np.searchsorted(power, PUPIL_POWER_FRACTION * power[-1])]))


def defocused_pupil(amplitude: np.ndarray, diameter_px: float, sign: int) -> np.ndarray:
    """The measured pupil with the defocus that spreads it over `diameter_px`, on one side of focus.

    A pupil phase a (rho / R)^2 moves the edge rays by a n / (pi R) pixels, so the geometric
    spot is 2 a n / (pi R) across; `sign` = +1 or -1 picks the side of the focus.
    """
    n = amplitude.shape[-1]
    radius = pupil_radius(amplitude)
    strength = math.pi * radius * diameter_px / (2.0 * n)
    pupil = amplitude * np.exp(1j * sign * strength * (frequency_radius(n) / radius) ** 2)
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(pupil), norm="ortho"))


def scale_to_counts(probe: np.ndarray, intensities: np.ndarray) -> np.ndarray:
    """`probe` scaled so its power equals the mean frame's counts (a stored guess has any scale)."""
    probe = np.asarray(probe, np.complex128)
    power = float(np.sum(np.abs(probe) ** 2))
    if not power > 0:
        raise ValueError("probe has zero power")
    target = float(intensities.reshape(intensities.shape[0], -1).sum(axis=1).mean())
    return (probe * math.sqrt(target / power)).astype(np.complex64)
