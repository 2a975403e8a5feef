"""The GaussianBlur stand-in matches torchvision's semantics (checked against scipy)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from scipy import ndimage

from ptychoflow.recon import torchvision_compat as compat


def _scipy_blur(image: np.ndarray, kernel_size: tuple[int, int], sigma: tuple[float, float]) -> np.ndarray:
    # torchvision pads with torch "reflect" (edge not repeated) == scipy "mirror"; the kernel
    # spans exactly k pixels, i.e. radius (k-1)/2 per axis. kernel_size is (x, y), scipy is (y, x).
    kx, ky = kernel_size
    sx, sy = sigma
    return ndimage.gaussian_filter(image, sigma=(sy, sx), mode="mirror", radius=((ky - 1) // 2, (kx - 1) // 2))


@pytest.mark.parametrize("kernel_size,sigma", [((9, 9), (3.0, 3.0)), ((5, 7), (1.0, 2.5)), ((3, 3), (0.5, 0.5))])
def test_blur_matches_scipy_mirror(kernel_size, sigma):
    rng = np.random.default_rng(1)
    image = rng.normal(size=(23, 31))
    ours = compat.gaussian_blur(torch.tensor(image), kernel_size, sigma).numpy()
    np.testing.assert_allclose(ours, _scipy_blur(image, kernel_size, sigma), atol=1e-12)


def test_kernel_is_the_sampled_normalised_gaussian():
    kernel = compat.gaussian_kernel1d(5, 1.5, dtype=torch.float64).numpy()
    t = np.arange(-2, 3)
    expected = np.exp(-0.5 * (t / 1.5) ** 2)
    np.testing.assert_allclose(kernel, expected / expected.sum(), rtol=1e-12)


def test_transform_keeps_batch_shape_and_dtype_like_torchvision():
    images = torch.rand(2, 3, 16, 12)
    out = compat.GaussianBlur(kernel_size=(9, 9), sigma=(3, 3))(images)
    assert out.shape == images.shape and out.dtype == images.dtype
    # blurring preserves the mean of a constant image exactly (normalised kernel, reflect pad)
    flat = torch.full((1, 1, 10, 10), 2.5)
    torch.testing.assert_close(compat.GaussianBlur(3, sigma=1.0)(flat), flat)


def test_sigma_range_is_sampled_within_bounds():
    blur = compat.GaussianBlur(5, sigma=(0.5, 2.0))
    draws = [blur.get_params(*blur.sigma) for _ in range(50)]
    assert min(draws) >= 0.5 and max(draws) <= 2.0 and len(set(draws)) > 1


@pytest.mark.parametrize("kwargs", [{"kernel_size": 4}, {"kernel_size": 0}, {"kernel_size": 3, "sigma": -1.0},
                                    {"kernel_size": 3, "sigma": (2.0, 1.0)}])
def test_invalid_arguments_are_rejected_like_torchvision(kwargs):
    with pytest.raises(ValueError):
        compat.GaussianBlur(**kwargs)


def test_ptychi_imports_with_a_working_blur_and_torchvision_stays_honest():
    source = compat.ensure_ptychi_importable()
    import ptychi.utils

    assert source in ("torchvision", "shim")
    if source == "shim":
        assert ptychi.utils.GaussianBlur is compat.GaussianBlur
        assert "torchvision" not in sys.modules  # the stand-in was only visible during the import
    image = ptychi.utils.generate_gaussian_random_image((16, 16), loc=1.0, sigma=0.1, smoothing=1.0)
    assert image.shape == (16, 16) and torch.isfinite(image).all()


def test_shim_context_restores_sys_modules():
    before = sys.modules.get("torchvision")
    with compat.shim_installed():
        from torchvision.transforms import GaussianBlur

        assert GaussianBlur is compat.GaussianBlur
    assert sys.modules.get("torchvision") is before
