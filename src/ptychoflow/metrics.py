"""Image-quality metrics for phase images: alignment, registration, SSIM, PSNR, FRC.

A reconstructed phase is defined only up to a global offset and a linear ramp (a shift of
the diffraction pattern's centre), so comparisons remove both before measuring.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

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


def apodisation(mask: np.ndarray, width_px: float = 3.0) -> np.ndarray:
    """A window that is 1 deep inside `mask` and falls smoothly to 0 at its edge (FRC needs no hard edges)."""
    from scipy import ndimage

    inside = ndimage.distance_transform_edt(mask.astype(bool))
    return np.sin(0.5 * np.pi * np.clip(inside / width_px, 0.0, 1.0)) ** 2


REGISTRATION_PASSES = 3


@dataclass
class FrcCurve:
    """Fourier ring correlation per ring: frequency (cycles/pixel), correlation, Fourier pixels in the ring."""

    frequency: np.ndarray
    correlation: np.ndarray
    pixels: np.ndarray

    def half_bit(self) -> np.ndarray:
        """The 1/2-bit information threshold per ring (van Heel & Schatz 2005)."""
        root = np.sqrt(np.maximum(self.pixels, 1))
        return (0.2071 + 1.9102 / root) / (1.2071 + 0.9102 / root)

    def cutoff(self, threshold: float | np.ndarray | None = None) -> float:
        """Frequency where the FRC first falls below `threshold` (default 1/2 bit) for good.

        The search starts where the curve first clears the threshold: the lowest rings hold a
        handful of pixels and the slowest-converging, largest-scale errors, which say nothing
        about resolution. A curve that never clears it has no resolution (frequency 0).
        """
        limit = self.half_bit() if threshold is None else np.broadcast_to(threshold, self.correlation.shape)
        above = np.nonzero(self.correlation[1:] >= limit[1:])[0]
        if not above.size:
            return 0.0
        first = 1 + above[0]
        below = np.nonzero(self.correlation[first:] < limit[first:])[0]
        return float(self.frequency[first + below[0]]) if below.size else float(self.frequency[-1])

    def half_period_px(self, threshold: float | np.ndarray | None = None) -> float:
        """Resolution as a half-period in pixels at the cutoff (1 px = Nyquist; inf = none)."""
        cutoff = self.cutoff(threshold)
        return 0.5 / cutoff if cutoff > 0 else float("inf")


def frc_curve(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> FrcCurve:
    """FRC of two equally shaped images (rectangles allowed) over `mask`, apodised at its edge.

    Rings are one frequency step of the shorter side wide; means inside the mask are removed
    first so the zero ring does not dominate.
    """
    if a.shape != b.shape:
        raise ValueError(f"FRC needs two images of one shape, got {a.shape} and {b.shape}")
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if mask is not None:
        box = _bounding_box(mask)
        window = apodisation(mask[box])
        a = (a[box] - a[box][mask[box]].mean()) * window
        b = (b[box] - b[box][mask[box]].mean()) * window
    h, w = a.shape
    fa, fb = np.fft.fft2(a), np.fft.fft2(b)
    qy, qx = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")
    side = min(h, w)
    ring = np.rint(np.hypot(qy, qx) * side).astype(int)
    rings = side // 2
    sel = ring < rings
    cross = np.bincount(ring[sel], (fa * np.conj(fb)).real[sel], minlength=rings)
    pa = np.bincount(ring[sel], (np.abs(fa) ** 2)[sel], minlength=rings)
    pb = np.bincount(ring[sel], (np.abs(fb) ** 2)[sel], minlength=rings)
    pixels = np.bincount(ring[sel], minlength=rings)
    return FrcCurve(np.arange(rings) / side, cross / np.sqrt(np.maximum(pa * pb, 1e-30)), pixels)


def fourier_ring_correlation(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FRC curve of two square images: (spatial frequency in cycles/pixel, correlation per ring)."""
    if a.shape != b.shape or a.shape[0] != a.shape[1]:
        raise ValueError("FRC needs two square images of the same shape")
    curve = frc_curve(a, b)
    return curve.frequency, curve.correlation


def frc_resolution(a: np.ndarray, b: np.ndarray, threshold: float = 1 / 7) -> float:
    """First spatial frequency (cycles/pixel) where the FRC drops below `threshold`."""
    return frc_curve(a, b).cutoff(threshold)


def _bounding_box(mask: np.ndarray) -> tuple[slice, slice]:
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    if not rows.size:
        raise ValueError("empty mask")
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def place_on_grid(image: np.ndarray, origin: tuple[float, float] | np.ndarray, shape: tuple[int, int],
                  fill: complex | float = np.nan) -> np.ndarray:
    """`image` (its [0, 0] at grid pixel `origin`, rounded) placed on a `shape` grid; `fill` elsewhere."""
    out = np.full(shape, fill, dtype=np.result_type(image.dtype, type(fill)))
    oy, ox = (int(round(float(o))) for o in origin)
    y0, x0 = max(oy, 0), max(ox, 0)
    y1, x1 = min(oy + image.shape[0], shape[0]), min(ox + image.shape[1], shape[1])
    if y1 > y0 and x1 > x0:
        out[y0:y1, x0:x1] = image[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
    return out


def registration_shift(phase: np.ndarray, reference: np.ndarray, mask: np.ndarray, *, max_shift_px: float = 8.0,
                       upsample: int = 20) -> np.ndarray:
    """Sub-pixel (dy, dx) that moves `phase` onto `reference` over `mask` (after offset/ramp removal).

    A reconstruction is defined only up to a global translation (shifting probe and object
    together leaves every diffraction pattern unchanged), so it is registered before scoring.
    Shifts beyond `max_shift_px` are not trusted and give (0, 0).
    """
    from skimage.registration import phase_cross_correlation

    box = _bounding_box(mask)
    inside = mask[box]
    window = apodisation(inside)
    ref = (reference[box] - reference[box][inside].mean()) * window
    wave = np.exp(1j * np.nan_to_num(phase))
    total = np.zeros(2)
    for _ in range(REGISTRATION_PASSES):  # the ramp fit is biased until the images line up: refine
        moved = np.angle(shift_complex(wave, total)) if total.any() else np.angle(wave)
        moving = remove_offset_and_ramp(moved, reference, mask)[box]
        moving = (moving - moving[inside].mean()) * window
        shift, _, _ = phase_cross_correlation(ref, moving, upsample_factor=upsample, normalization=None)
        total += shift
        if np.abs(total).max() > max_shift_px:
            return np.zeros(2)
        if np.abs(shift).max() < 1.0 / upsample:
            break
    return total


def shift_complex(image: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """`image` moved by a sub-pixel `shift` (Fourier shift theorem; the border wraps)."""
    from scipy import ndimage

    return np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(image), shift))


@dataclass
class PhaseScore:
    """A phase image against its truth: errors after registration, offset and ramp removal."""

    rmse_rad: float
    ssim: float
    frc_half_period_px: float  # 1/2-bit FRC against the truth
    shift_px: tuple[float, float]  # the registration applied

    def to_json(self) -> dict[str, float | tuple[float, float]]:
        return asdict(self)


def registered_phase(obj: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The phase of `obj` (on the truth's grid, NaN where it has no data) registered onto the
    truth's, offset and ramp removed: what ``score_against_truth`` compares, for pictures."""
    return _registered(obj, truth, mask)[0]


def _registered(obj: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    obj = np.where(np.isfinite(obj), obj, 1.0)
    truth_phase = np.angle(truth)
    shift = registration_shift(np.angle(obj), truth_phase, mask)
    if shift.any():
        obj = shift_complex(obj, shift)
    return remove_offset_and_ramp(np.angle(obj), truth_phase, mask), shift


def score_against_truth(obj: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> PhaseScore:
    """Score a complex object already placed on the truth's grid (NaN where it has no data).

    It is registered to the truth first (the global translation a reconstruction cannot
    know), then compared over `mask`: phase RMSE and SSIM after offset and ramp removal,
    and the 1/2-bit FRC resolution.
    """
    truth_phase = np.angle(truth)
    phase, shift = _registered(obj, truth, mask)
    return PhaseScore(
        rmse_rad=phase_rmse(phase, truth_phase, mask),
        ssim=phase_ssim(phase, truth_phase, mask),
        frc_half_period_px=frc_curve(phase, truth_phase, mask).half_period_px(),
        shift_px=(float(shift[0]), float(shift[1])),
    )
