"""Each preprocessing step on CPU, and CuPy == NumPy on a GPU (skipped here with the reason)."""

from __future__ import annotations

import numpy as np
import pytest

from ptychoflow.preprocess import PreprocessConfig, bad_pixel_mask, crop_window, preprocess


def _frames(n: int = 4, size: int = 16) -> np.ndarray:
    return np.random.default_rng(0).poisson(20.0, (n, size, size)).astype(np.uint32)


def test_dark_subtraction_clips_at_zero():
    frames = np.full((2, 8, 8), 5, np.uint16)
    dark = np.full((8, 8), 7.0, np.float32)
    dark[0, 0] = 2.0
    out = preprocess(frames, PreprocessConfig(crop=8, transform="none"), dark=dark)
    assert out.dtype == np.float32 and out[:, 0, 0].tolist() == [3.0, 3.0]
    assert (out[:, 1:, :] == 0).all()


def test_bad_pixels_are_zeroed():
    frames = _frames()
    mask = np.zeros((16, 16), bool)
    mask[3, 4] = True
    out = preprocess(frames, PreprocessConfig(crop=16, transform="none"), bad_pixels=mask)
    assert (out[:, 3, 4] == 0).all()
    np.testing.assert_array_equal(out[:, ~mask], frames[:, ~mask].astype(np.float32))


def test_bad_pixel_mask_finds_dead_and_hot_pixels():
    frames = _frames(40).astype(np.float32)
    frames[:, 2, 2] = 0  # dead
    frames[:, 9, 9] = 1e6  # hot
    mask = bad_pixel_mask(frames)
    assert mask[2, 2] and mask[9, 9] and mask.sum() == 2


def test_crop_about_the_optical_axis():
    frames = np.arange(16 * 16, dtype=np.float32).reshape(1, 16, 16)
    out = preprocess(frames, PreprocessConfig(crop=8, transform="none"))
    np.testing.assert_array_equal(out[0], frames[0, 4:12, 4:12])
    rows, cols = crop_window((16, 16), PreprocessConfig(crop=4, center=(5.0, 9.0)))
    assert (rows, cols) == (slice(3, 7), slice(7, 11))
    with pytest.raises(ValueError):
        crop_window((16, 16), PreprocessConfig(crop=8, center=(2.0, 2.0)))


def test_binning_sums_blocks_and_keeps_counts():
    frames = _frames()
    out = preprocess(frames, PreprocessConfig(crop=16, bin_factor=4, transform="none"))
    assert out.shape == (4, 4, 4)
    np.testing.assert_allclose(out.sum(axis=(1, 2)), frames.sum(axis=(1, 2)))
    np.testing.assert_allclose(out[0, 0, 0], frames[0, :4, :4].sum())


def test_fft_shift_convention_round_trips_tike_frames():
    centred = _frames().astype(np.float32)
    tike_frames = np.fft.ifftshift(centred, axes=(-2, -1))  # zero frequency at the corners
    out = preprocess(tike_frames, PreprocessConfig(crop=16, transform="none", input_fft_shifted=True))
    np.testing.assert_array_equal(out, centred)


def test_transforms_and_single_frame():
    frame = _frames(1)[0]
    np.testing.assert_allclose(preprocess(frame, PreprocessConfig(crop=16, transform="sqrt")), np.sqrt(frame))
    np.testing.assert_allclose(preprocess(frame, PreprocessConfig(crop=16, transform="log1p", scale=2.0)),
                               np.log1p(frame) / 2.0, rtol=1e-6)


def _cupy_or_skip():
    cupy = pytest.importorskip("cupy", reason="cupy is not installed (the 'gpu' extra); GPU preprocessing untested here")
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("cupy is installed but sees no CUDA device")
    except Exception as exc:  # no driver
        pytest.skip(f"cupy cannot reach a CUDA device: {exc}")
    return cupy


@pytest.mark.gpu
def test_cupy_matches_numpy_for_the_full_pipeline():
    cupy = _cupy_or_skip()
    frames = _frames(8, 32)
    dark = np.full((32, 32), 3.0, np.float32)
    bad = np.zeros((32, 32), bool)
    bad[5, 7] = True
    config = PreprocessConfig(crop=16, bin_factor=2, input_fft_shifted=True, transform="sqrt", scale=3.0)
    cpu = preprocess(frames, config, dark=dark, bad_pixels=bad)
    gpu = preprocess(cupy.asarray(frames), config, dark=cupy.asarray(dark), bad_pixels=cupy.asarray(bad))
    assert isinstance(gpu, cupy.ndarray)
    np.testing.assert_allclose(cupy.asnumpy(gpu), cpu, rtol=1e-6, atol=1e-6)
