"""Shared preprocessing and |P|^2-weighted stitching."""

from __future__ import annotations

import numpy as np
import pytest

from ptychoflow.preprocess import PreprocessConfig, bad_pixel_mask, preprocess
from ptychoflow.simulate.forward import extract_patches
from ptychoflow.stitch import Mosaic, probe_weight


def test_dark_crop_bin_sqrt_in_order():
    frames = np.zeros((2, 8, 8), np.float32)
    frames[:, 2:6, 2:6] = 5.0
    dark = np.ones((8, 8), np.float32)
    out = preprocess(frames, PreprocessConfig(crop=4, bin_factor=2, transform="sqrt"), dark=dark)
    assert out.shape == (2, 2, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out, np.sqrt(4 * 4.0))  # (5 - 1) summed over 2x2 bins


def test_fft_shifted_input_is_centred_first():
    centred = np.zeros((1, 8, 8), np.float32)
    centred[0, 4, 4] = 9
    shifted = np.fft.ifftshift(centred, axes=(-2, -1))
    config = PreprocessConfig(crop=8, transform="none")
    np.testing.assert_array_equal(
        preprocess(shifted, PreprocessConfig(crop=8, transform="none", input_fft_shifted=True)),
        preprocess(centred, config),
    )


def test_bad_pixels_are_zeroed_and_found():
    rng = np.random.default_rng(0)
    frames = rng.poisson(20, (40, 16, 16)).astype(np.float32)
    frames[:, 3, 3] = 0  # dead
    frames[:, 10, 12] = 60000  # hot
    mask = bad_pixel_mask(frames)
    assert mask[3, 3] and mask[10, 12] and mask.sum() == 2
    out = preprocess(frames, PreprocessConfig(crop=16, transform="none"), bad_pixels=mask)
    assert out[:, 10, 12].max() == 0


def test_config_round_trips_through_json_and_validates():
    config = PreprocessConfig(crop=64, bin_factor=2, center=(60.0, 70.0))
    assert PreprocessConfig.from_json(config.to_json()) == config
    with pytest.raises(ValueError, match="multiple"):
        PreprocessConfig(crop=63, bin_factor=2).validate((128, 128))
    with pytest.raises(ValueError, match="outside"):
        preprocess(np.zeros((1, 32, 32)), PreprocessConfig(crop=64))


def test_stitching_true_patches_reproduces_the_object_exactly():
    rng = np.random.default_rng(0)
    obj = rng.normal(size=(80, 80))
    centres = rng.uniform(16, 64, (60, 2)).round()
    patches = extract_patches(obj, centres, 16)
    mosaic = Mosaic(16, probe_weight(None, 16))
    mosaic.add(patches[:30], centres[:30])
    mosaic.add(patches[30:], centres[30:])  # the canvas grows as positions arrive
    image, (oy, ox) = mosaic.image(), mosaic.origin
    covered = mosaic.coverage(1e-6)
    np.testing.assert_allclose(image[covered], obj[oy:oy + image.shape[0], ox:ox + image.shape[1]][covered])
    assert np.isnan(image[~(mosaic.coverage(0) | covered)]).all() or covered.all()


def test_weights_favour_the_lit_centre():
    weight = probe_weight(None, 32)
    assert weight[16, 16] == 1.0 and weight[0, 0] == 0.0
    probe = np.zeros((64, 64), complex)
    probe[24:40, 24:40] = 1
    resampled = probe_weight(probe, 32)
    assert resampled.shape == (32, 32) and resampled[16, 16] == 1.0 and resampled[2, 2] == 0.0


def test_unlit_pixels_are_nan_not_zero_division():
    mosaic = Mosaic(4, np.array([[0, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]], np.float32))
    mosaic.add(np.ones((1, 4, 4)), np.array([[10.0, 10.0]]))
    image = mosaic.image()
    assert np.isnan(image[0, 0]) and image[1, 1] == 1.0
