"""Image-quality metrics for phase images: alignment, SSIM, PSNR, FRC.

A reconstructed phase is defined only up to a global offset and a linear ramp (a shift of
the diffraction pattern's centre), so comparisons remove both before measuring.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity


def remove_offset_and_ramp(phase: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Subtract the offset a + b*y + c*x that best maps `phase` onto `reference` over `mask`.

    The offset comes first from the complex mean of exp(i(phase - reference)), which is
    immune to 2-pi wrapping; the ramp is then a least-squares fit to the small remainder.
    """
    mask = np.ones(phase.shape, bool) if mask is None else mask.astype(bool)
    y, x = np.mgrid[: phase.shape[0], : phase.shape[1]]
    difference = phase[mask] - reference[mask]
    fitted = np.zeros(3)
    for _ in range(2):  # a second pass refines the offset once the ramp is gone
        model = fitted[0] + fitted[1] * y[mask] + fitted[2] * x[mask]
        remainder = difference - model
        offset = np.angle(np.mean(np.exp(1j * remainder)))
        residual = np.angle(np.exp(1j * (remainder - offset)))
        design = np.stack([np.ones(mask.sum()), y[mask], x[mask]], axis=1).astype(np.float64)
        coeffs, *_ = np.linalg.lstsq(design, residual, rcond=None)
        fitted += coeffs + np.array([offset, 0.0, 0.0])
    return phase - (fitted[0] + fitted[1] * y + fitted[2] * x)


def phase_rmse(phase: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None) -> float:
    """RMS phase error (rad) after offset and ramp removal, with 2-pi wrapping handled."""
    aligned = remove_offset_and_ramp(phase, reference, mask)
    diff = np.angle(np.exp(1j * (aligned - reference)))
    selected = diff if mask is None else diff[mask.astype(bool)]
    return float(np.sqrt(np.mean(selected**2)))


def ssim(image: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None) -> float:
    """SSIM with the reference's dynamic range; with a mask, the mean SSIM map inside it.

    Outside the mask both images are set to the same constant (the reference's mean inside),
    so a window straddling the mask's edge compares only what lies inside it: whatever the
    images hold outside (NaN, zeros, unlit noise) can neither help nor hurt the score.
    """
    image = np.asarray(image, np.float64)
    reference = np.asarray(reference, np.float64)
    if mask is not None:
        mask = mask.astype(bool)
        fill = float(reference[mask].mean())
        image = np.where(mask, image, fill)
        reference = np.where(mask, reference, fill)
    sel = reference if mask is None else reference[mask]
    data_range = float(sel.max() - sel.min()) or 1.0
    score, smap = structural_similarity(image, reference, data_range=data_range, full=True)
    if mask is None:
        return float(score)
    return float(smap[mask].mean())


def phase_ssim(phase: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None) -> float:
    """SSIM of two phase images after offset/ramp removal (the usual 'phase SSIM')."""
    return ssim(remove_offset_and_ramp(phase, reference, mask), reference, mask)


def psnr(image: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None) -> float:
    image = np.asarray(image, np.float64)
    reference = np.asarray(reference, np.float64)
    if mask is not None:
        image, reference = image[mask.astype(bool)], reference[mask.astype(bool)]
    mse = float(np.mean((image - reference) ** 2))
    data_range = float(reference.max() - reference.min()) or 1.0
    return float("inf") if mse == 0 else 10.0 * np.log10(data_range**2 / mse)


def fourier_ring_correlation(a: np.ndarray, b: np.ndarray, *, rings: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """FRC curve: (spatial frequency in cycles/pixel, correlation per ring) of two images."""
    if a.shape != b.shape or a.shape[0] != a.shape[1]:
        raise ValueError("FRC needs two square images of the same shape")
    n = a.shape[0]
    fa = np.fft.fftshift(np.fft.fft2(a))
    fb = np.fft.fftshift(np.fft.fft2(b))
    y, x = np.indices(a.shape) - n // 2
    radius = np.hypot(y, x).astype(int)
    rings = rings or n // 2
    sel = radius < rings
    cross = np.bincount(radius[sel], (fa * np.conj(fb)).real[sel], minlength=rings)
    pa = np.bincount(radius[sel], (np.abs(fa) ** 2)[sel], minlength=rings)
    pb = np.bincount(radius[sel], (np.abs(fb) ** 2)[sel], minlength=rings)
    frc = cross / np.sqrt(np.maximum(pa * pb, 1e-30))
    return np.arange(rings) / n, frc


def frc_resolution(a: np.ndarray, b: np.ndarray, threshold: float = 1 / 7) -> float:
    """First spatial frequency (cycles/pixel) where the FRC drops below `threshold`."""
    freq, frc = fourier_ring_correlation(a, b)
    below = np.nonzero(frc[1:] < threshold)[0]
    return float(freq[1 + below[0]]) if below.size else float(freq[-1])
