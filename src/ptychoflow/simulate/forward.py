"""Far-field ptychography forward model with Poisson noise.

exit wave psi = P * O[patch]; intensity I = |F psi|^2 with an orthonormal FFT, so by
Parseval the expected counts of a frame equal the exit wave's power. The probe is scaled
to `dose` photons per frame, hence total counts = dose x mean |O|^2 under the probe.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.fft

_THREADS = max(1, min(4, os.cpu_count() or 1))


def extract_patches(obj: np.ndarray, centres_px: np.ndarray, n: int) -> np.ndarray:
    """(B, n, n) object patches whose centres are the integer-rounded positions."""
    corners = np.rint(centres_px - n / 2).astype(int)
    rows = corners[:, 0, None] + np.arange(n)
    cols = corners[:, 1, None] + np.arange(n)
    return obj[rows[:, :, None], cols[:, None, :]]


def expected_intensity(obj: np.ndarray, probe: np.ndarray, centres_px: np.ndarray, *, workers: int = -1) -> np.ndarray:
    """Noise-free far-field intensities (B, n, n), zero frequency centred (detector order)."""
    n = probe.shape[0]
    exit_waves = probe[None] * extract_patches(obj, centres_px, n)
    far_field = scipy.fft.fft2(exit_waves, norm="ortho", workers=workers)
    intensity = np.abs(far_field) ** 2
    return scipy.fft.fftshift(intensity, axes=(-2, -1))


def detector_counts(
    intensity: np.ndarray,
    rng: np.random.Generator,
    *,
    dark_current: float = 0.0,
    dtype: np.dtype = np.uint32,
) -> np.ndarray:
    """Poisson photon counts, plus Poisson dark current per pixel when asked.

    Sampling dominates the simulator's cost; numpy releases the GIL while sampling, so the
    frames are split across threads with independent child generators (reproducible per seed).
    """
    expected = intensity + dark_current if dark_current > 0 else intensity
    threads = min(_THREADS, max(1, expected.shape[0] // 32))
    if threads == 1:
        return rng.poisson(expected).astype(dtype, copy=False)
    out = np.empty(expected.shape, dtype=dtype)
    chunks = np.array_split(np.arange(expected.shape[0]), threads)

    def sample(child: np.random.Generator, rows: np.ndarray) -> None:
        out[rows[0] : rows[-1] + 1] = child.poisson(expected[rows[0] : rows[-1] + 1])

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(sample, rng.spawn(threads), chunks))
    return out
