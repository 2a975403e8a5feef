"""Cross-frame polish of a stitched network image: rPIE sweeps over the scan's frames, started
from the network's image and the model's probe.

The network sees one frame at a time (its refinement, ``nn.refine``, too), so the overlap
between neighbouring frames, which is what makes ptychography well posed, goes unused and
the stitched image stays blurred. Once a scan's frames are in, a few rPIE sweeps over all of
them recover what the overlap holds. Started from the network's image rather than a flat
object they need few sweeps: on the demo's unseen scans 2-4, against their rPIE, the network
scored 0.795 / 0.503 / 0.719, and 10 object-only sweeps through the model's measured probe
0.915 / 0.743 / 0.849 (about 1.5 s each); from a flat object the same sweeps scored less
against the truth on scans 2 and 4, and far less at 2-5 sweeps.

The probe is refined with the object, at a step that depends on where it came from:
- a model trained before any scan only has the optics' guess, and through a fixed guess the
  sweeps destroy the image (SSIM 0.01 against rPIE on the demo's scan 1, whose guess is 10 %
  too wide: correlation 0.46 with the real probe). With ePIE's full probe step it moves far
  enough in 10 sweeps: 0.79 against rPIE (0.61 at half the step, 0.26 at a quarter);
- a measured probe is an earlier scan's rPIE probe, close but not exact (0.85 correlation
  between two rPIE probes of the slow acceptance test's scans). A quarter step corrects it
  without the noise of the full one: the acceptance test's unseen scan 0.595 held fixed,
  0.745 at the full step, 0.788 at a quarter; the demo's scans 2-4 0.896 / 0.744 / 0.844
  fixed, 0.840 / 0.741 / 0.793 full, 0.895 / 0.791 / 0.841 at a quarter.

Where the frames barely overlap (``MIN_OVERLAP``) they are nearly independent: a polish has
nothing to use, and rPIE itself fails there (benchmarks/sparse.py), so the network's image is
served as it is.

Conventions as everywhere in ptychoflow: ortho FFT, detector order centred, probe centre
``c`` at patch corner ``c - n/2``; a fractional corner shifts the probe (Fourier shift).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ptychoflow.nn.beam import fwhm_px
from ptychoflow.recon.probes import median_step_px

# rPIE's step regularisation: the object step where the probe is weak is bounded by
# alpha * max |P|^2. The network's per-frame refinement uses 0.1 (nn.refine); across frames that
# fits the noise: replayed on the demo's scans 1-4 and the slow test's unseen scan, against the
# truth, 0.743 / 0.896 / 0.895 / 0.710 / 0.890 at 0.1, 0.794 / 0.938 / 0.935 / 0.686 / 0.931 at
# 0.3 (against rPIE too, but for scan 3: 0.800 -> 0.784); demo scan 3 with 10x fewer photons:
# 0.58 at 0.1, 0.71 at 0.3. At 1.0 the truth scores rise further but rPIE's fall (scan 3: 0.730).
ALPHA = 0.3
POLISH_SWEEPS = 10
POLISH_TIME_LIMIT_S = 10.0  # the image is saved when the limit is reached, whatever the sweeps done
GUESSED_PROBE_STEP = 1.0  # ePIE's probe step, bounded by max |O|^2: a guess has far to go
MEASURED_PROBE_STEP = 0.25  # a measured probe only needs a correction
# Overlap ratio 1 - step / FWHM (benchmarks/sparse.py's definition) under which no polish is
# tried: rPIE alone fell to SSIM 0.29 against the truth at 0.2 and held 0.76 at 0.4 there.
MIN_OVERLAP = 0.3
SUBPIXEL = 1e-3  # a probe centre this close to a whole pixel is not Fourier-shifted


@dataclass(frozen=True)
class PolishOptions:
    sweeps: int = POLISH_SWEEPS  # 0: no polish
    time_limit_s: float = POLISH_TIME_LIMIT_S
    alpha: float = ALPHA
    probe_step: float = MEASURED_PROBE_STEP  # 0: the probe is held fixed (probe_step_for)
    min_overlap: float = MIN_OVERLAP
    seed: int = 0


@dataclass
class Polished:
    phase: np.ndarray  # on the input's canvas; NaN where the input is NaN
    sweeps: int  # sweeps completed (fewer than asked when the time limit came first)
    seconds: float
    overlap: float  # the scan's overlap ratio through the starting probe
    probe_change: float = 0.0  # 1 - |correlation| of the refined probe with the starting one
    skipped: str = ""  # why no sweep ran, in words


def probe_step_for(measured: bool) -> float:
    """The probe's step for a measured probe or for the optics' guess."""
    return MEASURED_PROBE_STEP if measured else GUESSED_PROBE_STEP


def overlap_ratio(probe: np.ndarray, centres_px: np.ndarray) -> float:
    """1 - median step / the probe's FWHM (``nn.beam.fwhm_px``)."""
    return 1.0 - median_step_px(np.asarray(centres_px, np.float64)) / fwhm_px(probe)


def _ramp(fraction: np.ndarray, n: int) -> np.ndarray:
    """The Fourier-domain factor that moves a patch by `fraction` (y, x) pixels."""
    q = np.fft.fftfreq(n)
    return np.exp(-2j * np.pi * fraction[0] * q)[:, None] * np.exp(-2j * np.pi * fraction[1] * q)[None, :]


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(abs(np.vdot(a, b)) / (np.linalg.norm(a) * np.linalg.norm(b)))


def polish(phase: np.ndarray, origin_px: tuple[int, int], amplitudes: np.ndarray, centres_px: np.ndarray,
           probe: np.ndarray, options: PolishOptions = PolishOptions()) -> Polished:
    """Refine a stitched phase image (`phase`, whose [0, 0] is object pixel `origin_px`) with
    rPIE sweeps over the frames' measured amplitudes (B, n, n; detector order, centred) at
    probe centres `centres_px` (B, 2, object pixels), starting from `probe` (n, n)."""
    start = time.perf_counter()
    amplitudes = np.asarray(amplitudes, np.float64)
    n = amplitudes.shape[-1]
    unchanged = np.array(phase, copy=True)
    if options.sweeps <= 0 or len(amplitudes) < 2 or probe.shape != (n, n):
        return Polished(unchanged, 0, 0.0, float("nan"), skipped="nothing to polish")
    overlap = overlap_ratio(probe, centres_px)
    if overlap < options.min_overlap:
        return Polished(unchanged, 0, 0.0, overlap,
                        skipped=f"overlap {overlap:.2f} is below {options.min_overlap:g}: the frames share too little")
    energy = float(np.mean(np.sum(amplitudes**2, axis=(-2, -1))))
    probe = np.asarray(probe, np.complex128)
    first = probe = probe * np.sqrt(energy / float(np.sum(np.abs(probe) ** 2)))  # so that |O| ~ 1
    corners = np.asarray(centres_px, np.float64) - n / 2 - np.asarray(origin_px, np.float64)
    whole = np.floor(corners).astype(int)
    fractions = corners - whole
    shifted = np.abs(fractions).max(axis=1) > SUBPIXEL
    pad = max(0, int(-whole.min()), int((whole + n - np.array(phase.shape)).max()))
    lit = np.isfinite(phase)
    start_phase = np.where(lit, phase, 0.0)
    obj = np.pad(np.exp(1j * start_phase), pad, constant_values=1.0)
    whole += pad
    floor = 0.01 * np.sqrt(energy / (n * n))  # as nn.refine: a far field ~0 has no direction
    rng = np.random.default_rng(options.seed)
    done = 0
    while done < options.sweeps and time.perf_counter() - start < options.time_limit_s:
        for j in rng.permutation(len(amplitudes)):
            ramp = _ramp(fractions[j], n) if shifted[j] else None
            view = probe if ramp is None else np.fft.ifft2(np.fft.fft2(probe) * ramp)
            (y, x) = whole[j]
            patch = obj[y : y + n, x : x + n]
            before = patch.copy()
            psi = view * patch
            far = np.fft.fft2(psi, norm="ortho")
            measured = np.fft.ifftshift(amplitudes[j])
            difference = np.fft.ifft2(far * measured / (np.abs(far) + floor), norm="ortho") - psi
            power = np.abs(view) ** 2
            patch += np.conj(view) * difference / ((1 - options.alpha) * power + options.alpha * power.max())
            if options.probe_step > 0:
                step = options.probe_step * np.conj(before) * difference / (np.abs(before) ** 2).max()
                probe = probe + (step if ramp is None else np.fft.ifft2(np.fft.fft2(step) * np.conj(ramp)))
        done += 1
    refined = obj[pad : pad + phase.shape[0], pad : pad + phase.shape[1]]
    # the change, wrapped, on top of the start: an image whose phase spans more than 2 pi stays unwrapped
    change = np.angle(refined * np.exp(-1j * start_phase))
    return Polished(np.where(lit, start_phase + change, np.nan), done, time.perf_counter() - start, overlap,
                    1.0 - _correlation(probe, first))
