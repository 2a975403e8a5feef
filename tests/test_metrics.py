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
