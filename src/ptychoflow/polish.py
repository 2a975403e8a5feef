"""Cross-frame polish of a stitched network image: object-only rPIE sweeps through a known probe.

The network sees one frame at a time (its refinement, ``nn.refine``, too), so the overlap
between neighbouring frames, which is what makes ptychography well posed, goes unused and
the stitched image stays blurred. Once a scan's frames are in, a few rPIE sweeps over all of
them, started from the network's image and run through the probe the model was trained
for, recover what the overlap holds. Started from the network's image rather than a flat
object, they need far fewer sweeps (measured on the demo's unseen scans 2-4, against their
rPIE: network 0.795 / 0.503 / 0.719; + 10 sweeps 0.915 / 0.743 / 0.849, about 1.4 s each;
from a flat object the same 10 sweeps gave 0.884 / 0.876 / 0.895 against rPIE but less
against the truth on scans 2 and 4, and far less at 2-5 sweeps).

Only the object is updated: the probe is the model's, which must be a measured one (an rPIE
probe). Through a guessed probe the sweeps destroy the image (SSIM 0.01 on the demo's scan 1),
so a model without a measured probe is served unpolished.

Conventions as everywhere in ptychoflow: ortho FFT, detector order centred, probe centre
``c`` at patch corner ``c - n/2``; a fractional corner shifts the probe (Fourier shift).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

# rPIE's step regularisation (the step where the probe is weak is bounded by alpha * max |P|^2),
# here and in the network's own per-frame refinement (nn.refine), which imports it: this module
# must not need torch (the edge may serve with ONNX Runtime alone).
ALPHA = 0.1
POLISH_SWEEPS = 10  # scans 2-4 of the demo: 0.90 / 0.70 / 0.84 against rPIE at 5 sweeps, 0.92 / 0.74 / 0.85 at 10
POLISH_TIME_LIMIT_S = 10.0  # the image is saved when the limit is reached, whatever the sweeps done


@dataclass(frozen=True)
class PolishOptions:
    sweeps: int = POLISH_SWEEPS  # 0: no polish
    time_limit_s: float = POLISH_TIME_LIMIT_S
    alpha: float = ALPHA  # rPIE's step regularisation, as in the network's own refinement
    seed: int = 0


@dataclass
class Polished:
    phase: np.ndarray  # on the input's canvas; NaN where the input is NaN
    sweeps: int  # sweeps completed (fewer than asked when the time limit came first)
    seconds: float


def _shifted_probes(probe: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """The probe moved by each position's sub-pixel fraction (B, n, n)."""
    n = probe.shape[-1]
    q = np.fft.fftfreq(n)
    ramp = np.exp(-2j * np.pi * (fractions[:, 0, None, None] * q[None, :, None] + fractions[:, 1, None, None] * q[None, None, :]))
    return np.fft.ifft2(np.fft.fft2(probe)[None] * ramp)


def polish(phase: np.ndarray, origin_px: tuple[int, int], amplitudes: np.ndarray, centres_px: np.ndarray,
           probe: np.ndarray, options: PolishOptions = PolishOptions()) -> Polished:
    """Refine a stitched phase image (`phase`, whose [0, 0] is object pixel `origin_px`) with
    object-only rPIE sweeps over the frames' measured amplitudes (B, n, n; detector order,
    centred) at probe centres `centres_px` (B, 2, object pixels), through `probe` (n, n)."""
    start = time.perf_counter()
    amplitudes = np.asarray(amplitudes, np.float64)
    n = amplitudes.shape[-1]
    if probe.shape != (n, n) or len(amplitudes) == 0 or options.sweeps <= 0:
        return Polished(np.array(phase, copy=True), 0, 0.0)
    energy = float(np.mean(np.sum(amplitudes**2, axis=(-2, -1))))
    probe = np.asarray(probe, np.complex128)
    probe = probe * np.sqrt(energy / float(np.sum(np.abs(probe) ** 2)))  # so that |O| ~ 1
    corners = np.asarray(centres_px, np.float64) - n / 2 - np.asarray(origin_px, np.float64)
    whole = np.floor(corners).astype(int)
    pad = max(0, int(-whole.min()), int((whole + n - np.array(phase.shape)).max()))
    lit = np.isfinite(phase)
    obj = np.pad(np.exp(1j * np.where(lit, phase, 0.0)), pad, constant_values=1.0)
    whole += pad
    probes = _shifted_probes(probe, corners - np.floor(corners))
    power = np.abs(probes) ** 2
    steps = np.conj(probes) / ((1 - options.alpha) * power + options.alpha * power.max(axis=(-2, -1), keepdims=True))
    floor = 0.01 * np.sqrt(energy / (n * n))  # as nn.refine: a far field ~0 has no direction
    rng = np.random.default_rng(options.seed)
    done = 0
    while done < options.sweeps and time.perf_counter() - start < options.time_limit_s:
        for j in rng.permutation(len(amplitudes)):
            (y, x), view = whole[j], probes[j]
            patch = obj[y : y + n, x : x + n]
            psi = view * patch
            far = np.fft.fft2(psi, norm="ortho")
            measured = np.fft.ifftshift(amplitudes[j])
            corrected = np.fft.ifft2(far * measured / (np.abs(far) + floor), norm="ortho")
            patch += steps[j] * (corrected - psi)  # a view: updates obj in place
        done += 1
    refined = obj[pad : pad + phase.shape[0], pad : pad + phase.shape[1]]
    start_phase = np.where(lit, phase, 0.0)
    # the change, wrapped, on top of the start: an image whose phase spans more than 2 pi stays unwrapped
    change = np.angle(refined * np.exp(-1j * start_phase))
    return Polished(np.where(lit, start_phase + change, np.nan), done, time.perf_counter() - start)
