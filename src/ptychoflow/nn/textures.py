"""Procedural textures for physics-made training pairs, independent of the test objects.

The simulator's test objects are photographs bundled with scikit-image and two synthetic
targets (``ptychoflow.simulate.objects``). Pretraining on those would score the network on
what it has seen, so this module never imports them: its textures come from two classic
models of natural-image statistics instead.

- **Dead leaves** (Matheron; Lee, Mumford & Huang 2001): opaque discs of random grey level,
  radii drawn from a power law r^-3, stacked until the plane is covered. The result has
  sharp occlusion edges and the 1/f^2 power spectrum of natural scenes, at every scale.
- **Power-law noise**: a Gaussian random field with spectrum 1/f^beta, for smooth gradients
  and grain (beta drawn from [1.5, 3]).

``texture`` blends the two with random weights and blur and normalises to [0, 1], so phase
and amplitude maps span edges, plateaus, gradients and fine grain.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage


def dead_leaves(size: int, rng: np.random.Generator, *, r_min: float = 2.0, r_max: float | None = None,
                layers: float = 4.0) -> np.ndarray:
    """(size, size) dead-leaves map in [0, 1]: discs of random grey level painted back to
    front (each occludes those below it), enough of them to cover the plane `layers` times
    on average, so almost no background shows."""
    r_max = r_max or size / 4
    a, b = r_min**-2, r_max**-2
    mean_area = math.pi * 2 * math.log(r_max / r_min) / (a - b)  # E[pi r^2] for p(r) ~ r^-3
    count = int(layers * (size + r_max) ** 2 / mean_area)
    radii = (a - rng.uniform(0, 1, count) * (a - b)) ** -0.5  # inverse CDF of p(r) ~ r^-3
    centres = rng.uniform(-r_max / 2, size + r_max / 2, (count, 2))
    values = rng.uniform(0, 1, count)
    image = np.full((size, size), rng.uniform(0, 1))
    for r, (cy, cx), value in zip(radii, centres, values):
        y0, y1 = max(int(cy - r), 0), min(int(cy + r) + 2, size)
        x0, x1 = max(int(cx - r), 0), min(int(cx + r) + 2, size)
        if y0 < y1 and x0 < x1:
            yy, xx = np.ogrid[y0:y1, x0:x1]
            image[y0:y1, x0:x1][(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = value
    return image


def power_law_noise(size: int, rng: np.random.Generator, beta: float) -> np.ndarray:
    """(size, size) Gaussian random field with power spectrum 1/f^beta, in [0, 1]."""
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    f = np.hypot(fy, fx)
    f[0, 0] = 1.0
    spectrum = (rng.standard_normal(f.shape) + 1j * rng.standard_normal(f.shape)) * f ** (-beta / 2)
    spectrum[0, 0] = 0
    return _unit_range(np.fft.irfft2(spectrum, s=(size, size)))


def texture(size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, size) map in [0, 1]: dead leaves and power-law noise, randomly blended and blurred."""
    leaves = dead_leaves(size, rng, r_max=size * rng.uniform(0.08, 0.3))
    noise = power_law_noise(size, rng, rng.uniform(1.5, 3.0))
    mix = rng.uniform(0.0, 1.0) ** 2  # mostly edges, sometimes mostly smooth
    blended = (1 - mix) * leaves + mix * noise
    blur = rng.uniform(0.0, 1.5)
    if blur > 0.3:
        blended = ndimage.gaussian_filter(blended, blur)
    return _unit_range(blended)


def _unit_range(image: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(image, [1, 99])
    return np.clip((image - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
