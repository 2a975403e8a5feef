"""Illumination models: a defocused zone-plate-like probe, or a Gaussian with curvature."""

from __future__ import annotations

import numpy as np


def _frequency_radius(n: int) -> np.ndarray:
    q = np.fft.fftshift(np.fft.fftfreq(n)) * n
    qy, qx = np.meshgrid(q, q, indexing="ij")
    return np.hypot(qy, qx)


def zone_plate_probe(n: int, *, diameter_px: float, central_stop: float = 0.3, defocus_rad: float = 25.0) -> np.ndarray:
    """A defocused zone-plate focus: an annular pupil with a quadratic (defocus) phase.

    The pupil radius sets the focal spot; `defocus_rad` (phase at the pupil edge) spreads it
    into the ring-like, structured probe typical of zone plates. The pupil radius is chosen
    so the defocused probe spans about `diameter_px`.
    """
    radius = _frequency_radius(n)
    # A quadratic pupil phase a*rho^2 displaces rays by up to a*n/(pi*R) pixels, so the
    # geometric spot diameter is 2*a*n/(pi*R): solve for R.
    pupil_radius = max(2.0, 2.0 * defocus_rad * n / (np.pi * diameter_px))
    rho = radius / pupil_radius
    pupil = ((rho <= 1.0) & (rho >= central_stop)).astype(np.complex128)
    pupil *= np.exp(1j * defocus_rad * rho**2)
    probe = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(pupil)))
    return _unit_power(probe)


def gaussian_probe(n: int, *, diameter_px: float, curvature: float = 0.002) -> np.ndarray:
    """Gaussian of FWHM `diameter_px` with a quadratic phase (a probe slightly off focus)."""
    y, x = np.mgrid[:n, :n] - (n - 1) / 2
    r2 = x**2 + y**2
    sigma = diameter_px / 2.3548
    probe = np.exp(-r2 / (2 * sigma**2)) * np.exp(1j * np.pi * curvature * r2)
    return _unit_power(probe)


def _unit_power(probe: np.ndarray) -> np.ndarray:
    return (probe / np.sqrt(np.sum(np.abs(probe) ** 2))).astype(np.complex64)


def make_probe(kind: str, n: int, *, diameter_px: float) -> np.ndarray:
    if kind == "zoneplate":
        return zone_plate_probe(n, diameter_px=diameter_px)
    if kind == "gaussian":
        return gaussian_probe(n, diameter_px=diameter_px)
    raise ValueError(f"unknown probe kind {kind!r}; choose zoneplate or gaussian")


def probe_diameter_px(probe: np.ndarray, fraction: float = 0.9) -> float:
    """Diameter of the smallest centred disk holding `fraction` of the probe's power."""
    intensity = np.abs(probe) ** 2
    radius = _frequency_radius(probe.shape[0])
    order = np.argsort(radius.ravel())
    cumulative = np.cumsum(intensity.ravel()[order]) / intensity.sum()
    return 2.0 * float(radius.ravel()[order][np.searchsorted(cumulative, fraction)])
