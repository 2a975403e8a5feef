"""Preprocessing: CuPy against NumPy on the same frames, through the one shared implementation
(``ptychoflow.preprocess``, which takes the array module).

Batches of 64 detector frames of 512² (counts, uint16) with a dark frame and a bad-pixel mask
become 128² network inputs (crop about the optical axis, square root, scale). The outputs
must agree to rtol 1e-6. Frames/s for NumPy; for CuPy with the frames already on the GPU;
for CuPy from host memory, ending on the GPU (the edge hands that to the torch backend);
and from host memory back to host memory.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gpucheck.measure import median_s
from gpucheck.record import Context, Record, figure, verdict
from ptychoflow.preprocess import PreprocessConfig, preprocess

FRAME, CROP, BATCH = 512, 128, 64
DRY_FRAME, DRY_CROP, DRY_BATCH = 128, 32, 16
RTOL = 1e-6


def detector_frames(count: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frames, dark, bad-pixel mask): Poisson counts of a bright centred pattern on a dark offset."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] - size / 2
    expected = 400.0 * np.exp(-(x**2 + y**2) / (2 * (size / 16) ** 2)) + 3.0
    frames = rng.poisson(expected, (count, size, size)).astype(np.uint16)
    dark = np.full((size, size), 3.0, np.float32)
    bad = rng.random((size, size)) < 1e-3
    return frames, dark, bad


def cupy_or_reason() -> tuple[Any, str]:
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None, "CuPy sees no CUDA device"
        return cupy, ""
    except Exception as exc:  # not installed, or no driver: the reason is the message
        return None, f"{type(exc).__name__}: {str(exc).splitlines()[0][:100]}"


def run(record: Record, context: Context) -> None:
    size, crop, batch = (DRY_FRAME, DRY_CROP, DRY_BATCH) if context.dry else (FRAME, CROP, BATCH)
    config = PreprocessConfig(crop=crop, transform="sqrt", scale=10.0)
    frames, dark, bad = detector_frames(batch, size)
    setting = f"{batch} frames of {size}² → {crop}² per call"
    record.set("setting", {"frame": size, "crop": crop, "batch": batch, "config": config.to_json()})
    expected = preprocess(frames, config, dark=dark, bad_pixels=bad)
    numpy_fps = batch / median_s(lambda: preprocess(frames, config, dark=dark, bad_pixels=bad))
    record.row("NumPy", f"{figure(numpy_fps)} frames/s", value=numpy_fps, unit="frames/s", reference=setting)
    cupy, reason = cupy_or_reason()
    if cupy is None:
        record.skip("CuPy (agreement and frames/s)", reason)
        return
    sync = cupy.cuda.get_current_stream().synchronize
    on_gpu = (cupy.asarray(frames), cupy.asarray(dark), cupy.asarray(bad))
    got = preprocess(*on_gpu[:1], config, dark=on_gpu[1], bad_pixels=on_gpu[2]).get()
    difference = float(np.max(np.abs(got - expected) / np.maximum(np.abs(expected), 1e-30)))
    record.row("CuPy = NumPy", f"max relative |Δ| {difference:.2g}", value=difference, reference=f"≤ {RTOL:g}",
               verdict=verdict(bool(np.allclose(got, expected, rtol=RTOL, atol=0))))
    cases = {
        "CuPy, frames on the GPU": lambda: preprocess(on_gpu[0], config, dark=on_gpu[1], bad_pixels=on_gpu[2]),
        "CuPy, host → GPU": lambda: preprocess(frames, config, dark=on_gpu[1], bad_pixels=on_gpu[2], xp=cupy),
        "CuPy, host → host": lambda: preprocess(frames, config, dark=on_gpu[1], bad_pixels=on_gpu[2], xp=cupy).get(),
    }
    for measure, call in cases.items():
        fps = batch / median_s(call, sync=sync)
        record.row(measure, f"{figure(fps)} frames/s ({fps / numpy_fps:.1f}× NumPy)", value=fps, unit="frames/s",
                   reference="NumPy, same run")
