"""Scan trajectories in object pixels (probe centres), kept inside the object."""

from __future__ import annotations

import numpy as np

GOLDEN_ANGLE = np.pi * (3 - np.sqrt(5))


def fermat_spiral(object_size: int, probe_size: int, step_px: float) -> np.ndarray:
    """Fermat spiral filling the area where the whole probe window stays inside the object.

    For r = c sqrt(k) each point owns an area pi c^2, and neighbours sit about 1.8 c apart,
    so c = step / 1.8.
    """
    half = probe_size / 2
    lo, hi = half, object_size - half
    centre = (lo + hi) / 2
    c = step_px / 1.8
    max_radius = (hi - lo) / np.sqrt(2)
    count = int((max_radius / c) ** 2) + 1
    k = np.arange(count)
    r = c * np.sqrt(k)
    theta = k * GOLDEN_ANGLE
    points = np.stack([centre + r * np.sin(theta), centre + r * np.cos(theta)], axis=1)
    inside = np.all((points >= lo) & (points <= hi), axis=1)
    return points[inside]


def raster(object_size: int, probe_size: int, step_px: float, *, jitter_px: float = 0.0, seed: int = 0) -> np.ndarray:
    """Raster grid with optional random jitter (breaks the raster-grid pathology)."""
    half = probe_size / 2
    axis = np.arange(half, object_size - half + 1e-9, step_px)
    yy, xx = np.meshgrid(axis, axis, indexing="ij")
    points = np.stack([yy.ravel(), xx.ravel()], axis=1)
    if jitter_px:
        rng = np.random.default_rng(seed)
        points = np.clip(points + rng.uniform(-jitter_px, jitter_px, points.shape), half, object_size - half)
    return points


def make_positions(kind: str, object_size: int, probe_size: int, step_px: float) -> np.ndarray:
    if kind == "spiral":
        return fermat_spiral(object_size, probe_size, step_px)
    if kind == "raster":
        return raster(object_size, probe_size, step_px, jitter_px=0.1 * step_px)
    raise ValueError(f"unknown trajectory {kind!r}; choose spiral or raster")


def linear_overlap(step_px: float, probe_diameter_px: float) -> float:
    """1 - step / diameter: the usual measure of how much neighbouring illuminations share."""
    return 1.0 - step_px / probe_diameter_px
