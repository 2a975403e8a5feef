"""Stitch per-position patches into a mosaic, each weighted per pixel by a stitching weight.

Only the lit centre of a patch is predictable from its diffraction pattern, so each pixel is
the weighted average of every patch covering it. The weight is the probe intensity |P|^2
(``probe_weight``), or a model's trained stitching weight (the manifest's ``stitch_weight``,
see ``ptychoflow.artifact``), which ``Mosaic`` multiplies in as is. Pixels no patch lights
stay NaN (no zero-weight division). The canvas grows as positions arrive, so the edge can stitch a
scan live without knowing its extent in advance.

Network phase patches are predicted up to a constant (a pattern is blind to the exit wave's
global phase; the training targets are de-meaned per patch). With ``align_offsets=True``
each patch is first shifted by its weighted mean difference to the mosaic where they
overlap, so neighbouring patches agree and low spatial frequencies survive the averaging.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def probe_weight(probe: np.ndarray | None, size: int, *, floor: float = 1e-3) -> np.ndarray:
    """|P|^2 resampled to the patch size and normalised to a peak of 1.

    Without a probe, a centred Gaussian covering the middle half of the patch stands in.
    """
    if probe is None:
        y, x = np.mgrid[:size, :size] - (size - 1) / 2
        weight = np.exp(-(x**2 + y**2) / (2 * (size / 6) ** 2))
    else:
        intensity = np.abs(np.asarray(probe)) ** 2
        if intensity.shape[0] != size:
            intensity = ndimage.zoom(intensity, size / intensity.shape[0], order=1)
        weight = intensity
    weight = weight / weight.max()
    return np.where(weight >= floor, weight, 0.0).astype(np.float32)


class Mosaic:
    """Weighted accumulation of patches placed by their centre positions (object pixels)."""

    def __init__(self, patch_size: int, weight: np.ndarray, *, margin: int = 0, align_offsets: bool = False) -> None:
        self.patch_size = patch_size
        self.align_offsets = align_offsets
        self.weight = np.asarray(weight, np.float32)
        self._origin = np.zeros(2, dtype=int)  # object pixel of canvas index (0, 0)
        self._sum = np.zeros((0, 0), np.float64)
        self._wsum = np.zeros((0, 0), np.float64)
        self.count = 0
        self._margin = margin

    def _ensure(self, corner_min: np.ndarray, corner_max: np.ndarray) -> None:
        """Grow the canvas so [corner_min, corner_max) is inside it."""
        if self._sum.size == 0:
            self._origin = corner_min - self._margin
            shape = corner_max - corner_min + 2 * self._margin
            self._sum = np.zeros(shape, np.float64)
            self._wsum = np.zeros(shape, np.float64)
            return
        lo = np.minimum(self._origin, corner_min)
        hi = np.maximum(self._origin + np.array(self._sum.shape), corner_max)
        if np.array_equal(lo, self._origin) and np.array_equal(hi - lo, self._sum.shape):
            return
        grown_sum = np.zeros(hi - lo, np.float64)
        grown_w = np.zeros(hi - lo, np.float64)
        off = self._origin - lo
        sl = (slice(off[0], off[0] + self._sum.shape[0]), slice(off[1], off[1] + self._sum.shape[1]))
        grown_sum[sl] = self._sum
        grown_w[sl] = self._wsum
        self._origin, self._sum, self._wsum = lo, grown_sum, grown_w

    def add(self, patches: np.ndarray, centres_px: np.ndarray) -> None:
        """Add (B, n, n) patches whose centres are at `centres_px` (B, 2), (y, x)."""
        patches = np.asarray(patches, np.float64)
        if patches.ndim == 2:
            patches, centres_px = patches[None], np.asarray(centres_px)[None]
        corners = np.rint(np.asarray(centres_px) - self.patch_size / 2).astype(int)
        self._ensure(corners.min(axis=0), corners.max(axis=0) + self.patch_size)
        local = corners - self._origin
        n = self.patch_size
        for patch, (r, c) in zip(patches, local):
            window = (slice(r, r + n), slice(c, c + n))
            if self.align_offsets:
                patch = patch + self._offset_to_mosaic(patch, window)
            self._sum[window] += self.weight * patch
            self._wsum[window] += self.weight
        self.count += len(patches)

    def _offset_to_mosaic(self, patch: np.ndarray, window: tuple[slice, slice]) -> float:
        """Weighted mean of (mosaic - patch) where both are lit; 0 for the first patch."""
        existing = self._wsum[window]
        both = self.weight * existing
        total = both.sum()
        if total <= 1e-6 * max(float(self.weight.sum()), 1e-12):
            return 0.0
        current = self._sum[window] / np.where(existing > 0, existing, 1)
        return float((both * (current - patch)).sum() / total)

    @property
    def origin(self) -> tuple[int, int]:
        """Object-pixel coordinates of the image's (0, 0)."""
        return int(self._origin[0]), int(self._origin[1])

    def image(self) -> np.ndarray:
        """The stitched image; NaN where no patch contributed."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self._wsum > 0, self._sum / np.where(self._wsum > 0, self._wsum, 1), np.nan)

    def coverage(self, threshold: float = 0.1) -> np.ndarray:
        """Pixels lit well enough to trust: summed weight above `threshold`."""
        return self._wsum >= threshold


def stitch(patches: np.ndarray, centres_px: np.ndarray, weight: np.ndarray, *, align_offsets: bool = False) -> Mosaic:
    mosaic = Mosaic(patches.shape[-1], weight, align_offsets=align_offsets)
    mosaic.add(patches, centres_px)
    return mosaic
