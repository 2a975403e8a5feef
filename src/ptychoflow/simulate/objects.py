"""Complex test objects: amplitude and phase from bundled images or synthetic patterns.

Only images that ship inside scikit-image are used (nothing is downloaded at run time).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# Bundled with scikit-image (no network): name -> loader name in skimage.data.
_BUNDLED = ("camera", "astronaut", "coffee", "chelsea", "rocket", "coins", "moon", "text", "brick", "grass", "gravel")
SYNTHETIC = ("siemens", "spheres")
OBJECT_KINDS = _BUNDLED + SYNTHETIC


def _normalised(image: np.ndarray) -> np.ndarray:
    image = image.astype(np.float64)
    lo, hi = np.percentile(image, [1, 99])
    return np.clip((image - lo) / max(hi - lo, 1e-12), 0.0, 1.0)


def _bundled_image(name: str) -> np.ndarray:
    from skimage import color, data

    image = getattr(data, name)()
    if image.ndim == 3:
        image = color.rgb2gray(image[..., :3])
    return _normalised(image)


def siemens_star(size: int, spokes: int = 36) -> np.ndarray:
    """Binary Siemens star in [0, 1]: a resolution target with known angular periodicity."""
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    theta = np.arctan2(y, x)
    radius = np.hypot(y, x)
    star = (np.cos(spokes * theta) > 0) & (radius < 0.45 * size) & (radius > 0.03 * size)
    return ndimage.gaussian_filter(star.astype(np.float64), 0.7)


def spheres(size: int, rng: np.random.Generator, count: int = 60) -> np.ndarray:
    """Overlapping projected spheres (particles), normalised thickness."""
    y, x = np.mgrid[:size, :size]
    thickness = np.zeros((size, size))
    for _ in range(count):
        cy, cx = rng.uniform(0, size, 2)
        r = rng.uniform(0.02, 0.08) * size
        d2 = (y - cy) ** 2 + (x - cx) ** 2
        thickness += np.sqrt(np.clip(r**2 - d2, 0, None))
    return _normalised(thickness)


def pattern(kind: str, size: int, *, region: int = 0, seed: int = 0) -> np.ndarray:
    """A (size, size) map in [0, 1]. `region` picks a different crop of the same sample."""
    if kind == "siemens":
        return siemens_star(size)
    if kind == "spheres":
        return spheres(size, np.random.default_rng(seed + 1000 * region))
    if kind not in _BUNDLED:
        raise ValueError(f"unknown object kind {kind!r}; choose from {', '.join(OBJECT_KINDS)}")
    image = _bundled_image(kind)
    # Scale so that several non-overlapping regions of `size` fit, then pick one.
    scale = max(2 * size / min(image.shape), 1.0)
    if scale > 1.0:
        image = ndimage.zoom(image, scale, order=1)
    rows = (image.shape[0] - size) // size + 1
    cols = (image.shape[1] - size) // size + 1
    r, c = divmod(region % (rows * cols), cols)
    return image[r * size : (r + 1) * size, c * size : (c + 1) * size]


def complex_object(
    amplitude_kind: str,
    phase_kind: str,
    size: int,
    *,
    region: int = 0,
    phase_range: float = 1.0,
    amplitude_min: float = 0.7,
    seed: int = 0,
) -> np.ndarray:
    """Complex transmission exp(i phase) * amplitude with amplitude in [amplitude_min, 1]."""
    amplitude = amplitude_min + (1 - amplitude_min) * pattern(amplitude_kind, size, region=region, seed=seed)
    phase = phase_range * pattern(phase_kind, size, region=region, seed=seed + 7)
    return (amplitude * np.exp(1j * phase)).astype(np.complex64)
