"""Stitched-phase quality: predictions stitched with |P|^2 weights, compared with rPIE.

The network predicts patches whose mean phase is arbitrary (see nn.pairs), so the mosaic is
compared with the reference after offset and ramp removal (metrics.phase_ssim), and only
where the mosaic is well lit (summed |P|^2 weight above a threshold), which is the region
both rPIE and the network actually constrain.
"""

from __future__ import annotations

import numpy as np

from ptychoflow.metrics import phase_ssim
from ptychoflow.stitch import Mosaic

LIT_THRESHOLD = 0.5  # summed peak-normalised |P|^2 weight; ~ the probe's FWHM region of one patch


def stitch_phase(patches: np.ndarray, positions_px: np.ndarray, weight: np.ndarray, *, align_offsets: bool = True) -> Mosaic:
    """Mosaic of (N, n, n) phase patches placed at their centres (same convention as the corpus)."""
    patches = np.asarray(patches)
    if patches.ndim == 4:
        patches = patches[:, 0]
    mosaic = Mosaic(patches.shape[-1], weight, align_offsets=align_offsets)
    mosaic.add(patches, np.asarray(positions_px, float))
    return mosaic


def overlap_with_reference(
    mosaic: Mosaic, reference: np.ndarray, reference_origin_px=(0.0, 0.0), *, threshold: float = LIT_THRESHOLD,
    image: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mosaic crop, reference crop, lit mask) on the pixels both cover; `image` replaces the
    mosaic's own (an image on the same canvas: the polished one)."""
    image = mosaic.image() if image is None else image
    lit = mosaic.coverage(threshold)
    offset = np.array(mosaic.origin) - np.rint(np.asarray(reference_origin_px, float)).astype(int)
    lo = np.maximum(offset, 0)
    hi = np.minimum(offset + np.array(image.shape), np.array(reference.shape))
    if np.any(hi <= lo):
        raise ValueError("mosaic and reference do not overlap")
    ref = reference[lo[0] : hi[0], lo[1] : hi[1]]
    sl = (slice(lo[0] - offset[0], hi[0] - offset[0]), slice(lo[1] - offset[1], hi[1] - offset[1]))
    return image[sl], ref, lit[sl] & np.isfinite(image[sl])


def stitched_ssim(
    patches: np.ndarray,
    positions_px: np.ndarray,
    weight: np.ndarray,
    reference_phase: np.ndarray,
    reference_origin_px=(0.0, 0.0),
    *,
    align_offsets: bool = True,
    threshold: float = LIT_THRESHOLD,
) -> float:
    """Phase SSIM of the stitched patches vs the reference phase on the lit region."""
    mosaic = stitch_phase(patches, positions_px, weight, align_offsets=align_offsets)
    image, ref, mask = overlap_with_reference(mosaic, reference_phase, reference_origin_px, threshold=threshold)
    if mask.sum() < 16:
        raise ValueError("too few lit pixels to compare")
    filled = np.where(mask, image, 0.0)
    return phase_ssim(filled, ref, mask)


def error_weighted(weight: np.ndarray, predicted: np.ndarray, target: np.ndarray, *, smooth_px: float = 2.0,
                   floor: float = 1e-3) -> np.ndarray:
    """Stitching weight |P|^2 / sigma^2, sigma^2 the model's per-pixel squared error on
    held-out patches (after removing each patch's free offset).

    Inverse-variance weighting is the least-squares optimal way to average overlapping
    estimates; |P|^2 alone assumes the error grows exactly as the light fades. Measured on a
    model trained on 2 scans: unseen-region SSIM 0.393 vs 0.379 with |P|^2 alone.
    """
    from scipy import ndimage

    predicted = np.asarray(predicted, np.float64)
    if predicted.ndim == 4:
        predicted = predicted[:, 0]
    err = predicted - np.asarray(target, np.float64)
    offset = (err * weight).sum(axis=(1, 2), keepdims=True) / max(float(weight.sum()), 1e-12)
    mse = ndimage.gaussian_filter(((err - offset) ** 2).mean(axis=0), smooth_px)
    combined = weight / np.maximum(mse, 1e-6)
    combined = combined / combined.max()
    return np.where(combined >= floor, combined, 0.0).astype(np.float32)
