"""Metrics remove what a reconstruction cannot know (offset, ramp) and nothing else."""

from __future__ import annotations

import numpy as np

from ptychoflow import metrics


def _phase(n=96):
    """The whole camera image at n x n, spanning [0, 1] rad: real structure at every scale."""
    from skimage import data, transform

    image = transform.resize(data.camera().astype(float), (n, n), anti_aliasing=True)
    return (image - image.min()) / (image.max() - image.min())


def test_offset_and_ramp_are_invisible_to_rmse_and_ssim():
    truth = _phase()
    y, x = np.mgrid[:96, :96]
    shifted = truth + 2.5 + 0.01 * y - 0.02 * x
    assert metrics.phase_rmse(shifted, truth) < 1e-10
    assert metrics.phase_ssim(shifted, truth) > 0.999


def test_rmse_measures_real_errors():
    truth = _phase()
    noisy = truth + np.random.default_rng(0).normal(0, 0.1, truth.shape)
    assert 0.09 < metrics.phase_rmse(noisy, truth) < 0.11
    assert metrics.phase_ssim(noisy, truth) < 0.9


def test_masked_ssim_ignores_outside():
    truth = _phase()
    damaged = truth.copy()
    damaged[:, :40] = 0
    mask = np.zeros_like(truth, bool)
    mask[:, 50:] = True
    assert metrics.ssim(damaged, truth, mask) > 0.99
    assert metrics.ssim(damaged, truth) < 0.9


def test_psnr_and_frc():
    truth = _phase()
    noisy = truth + np.random.default_rng(1).normal(0, 0.05, truth.shape)
    assert metrics.psnr(truth, truth) == float("inf")
    assert 20 < metrics.psnr(noisy, truth) < 32
    freq, frc = metrics.fourier_ring_correlation(truth, truth)
    np.testing.assert_allclose(frc[1:], 1.0, atol=1e-9)
    blurred = __import__("scipy.ndimage", fromlist=["x"]).gaussian_filter(noisy, 2)
    assert metrics.frc_resolution(blurred, truth) < metrics.frc_resolution(noisy, truth) + 1e-9


def test_masked_ssim_of_identical_images_is_one_whatever_lies_outside():
    """Regression: zero-filling only one image outside the mask used to cost ~0.2 SSIM at
    the mask's edge, even for a perfect match inside."""
    truth = _phase()
    mask = np.zeros_like(truth, bool)
    mask[20:70, 15:80] = True
    outside_differs = np.where(mask, truth, 0.0)
    assert metrics.ssim(outside_differs, truth, mask) > 0.999
    assert metrics.phase_ssim(np.where(mask, truth + 0.3, np.nan), truth, mask) > 0.999


def test_frc_half_bit_threshold_and_cutoff():
    """Identical images correlate to the last ring; more noise pulls the 1/2-bit cutoff lower."""
    truth = _phase(128)
    curve = metrics.frc_curve(truth, truth)
    assert curve.cutoff() == curve.frequency[-1]  # never falls below: resolved to the last ring
    # van Heel & Schatz: the threshold falls towards 0.1716 as rings hold more pixels
    threshold = curve.half_bit()
    assert threshold[1] > threshold[-1] and abs(threshold[-1] - (0.2071 + 1.9102 / np.sqrt(curve.pixels[-1]))
                                                 / (1.2071 + 0.9102 / np.sqrt(curve.pixels[-1]))) < 1e-12
    rng = np.random.default_rng(3)

    def halves(noise: float) -> float:
        a, b = (truth + rng.normal(0, noise, truth.shape) for _ in range(2))
        return metrics.frc_curve(a, b).half_period_px()

    assert 1.0 < halves(0.05) < halves(0.3) < halves(1.0) < 30.0


def test_frc_on_a_rectangular_mask():
    truth = _phase(128)
    mask = np.zeros(truth.shape, bool)
    mask[20:70, 10:120] = True
    curve = metrics.frc_curve(truth, truth + 0.01 * np.random.default_rng(0).normal(size=truth.shape), mask)
    assert curve.frequency.size == 25  # rings one step of the shorter (50 px) side wide, to its Nyquist
    assert curve.correlation[2:].min() > 0.5


def test_registration_and_scoring_undo_shift_offset_and_ramp():
    """A sub-pixel shifted copy with a phase offset and ramp scores like the truth itself."""
    truth_phase = _phase(128)
    truth = 0.9 * np.exp(1j * truth_phase)
    y, x = np.mgrid[:128, :128]
    moved = metrics.shift_complex(truth, np.array([1.4, -2.3])) * np.exp(1j * (0.7 + 0.003 * y - 0.002 * x))
    mask = np.zeros(truth.shape, bool)
    mask[24:104, 24:104] = True
    np.testing.assert_allclose(metrics.registration_shift(np.angle(moved), truth_phase, mask), [-1.4, 2.3], atol=0.1)
    score = metrics.score_against_truth(moved, truth, mask)
    assert score.rmse_rad < 0.02 and score.ssim > 0.98 and score.frc_half_period_px < 1.5
    unregistered = metrics.phase_ssim(np.angle(moved), truth_phase, mask)
    assert unregistered < 0.8  # the shift alone would have cost this much


def test_place_on_grid_rounds_origin_and_fills_outside():
    image = np.arange(6.0).reshape(2, 3)
    out = metrics.place_on_grid(image, (1.2, -1.4), (4, 4))
    assert np.isnan(out[0]).all() and out[1, 0] == 1.0 and out[2, 1] == 5.0 and np.isnan(out[1, 2])
