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
    mosaic: Mosaic, reference: np.ndarray, reference_origin_px=(0.0, 0.0), *, threshold: float = LIT_THRESHOLD
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mosaic crop, reference crop, lit mask) on the pixels both cover."""
    image = mosaic.image()
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
