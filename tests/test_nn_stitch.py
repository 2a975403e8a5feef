import numpy as np
from nn_helpers import small_pairs

from ptychoflow.nn.evaluate import stitched_ssim
from ptychoflow.stitch import Mosaic


def test_truth_patches_stitch_back_to_the_reference():
    pairs = small_pairs(0, 10.0)
    for align in (False, True):
        score = stitched_ssim(pairs.phase, pairs.positions_px, pairs.weight, pairs.reference_phase, align_offsets=align)
        assert score > 0.75  # (0.95+ on a 256 px object; this one is mostly edge)


def test_offset_alignment_removes_per_patch_constants():
    rng = np.random.default_rng(0)
    truth = rng.random((40, 40))
    weight = np.ones((8, 8), np.float32)
    centres = np.array([[8, 8], [8, 12], [12, 8], [12, 12], [16, 16]], float)
    corners = (centres - 4).astype(int)
    patches = np.stack([truth[r : r + 8, c : c + 8] + rng.normal() for r, c in corners])
    mosaic = Mosaic(8, weight, align_offsets=True)
    mosaic.add(patches, centres)
    image = mosaic.image()
    r0, c0 = mosaic.origin
    lit = np.isfinite(image)
    diff = image[lit] - truth[r0 : r0 + image.shape[0], c0 : c0 + image.shape[1]][lit]
    assert np.ptp(diff) < 1e-9  # one global constant left, nothing else


def test_unlit_pixels_are_nan_not_zero_division():
    weight = np.zeros((4, 4), np.float32)
    weight[1:3, 1:3] = 1
    mosaic = Mosaic(4, weight)
    mosaic.add(np.ones((1, 4, 4)), np.array([[10.0, 10.0]]))
    image = mosaic.image()
    assert np.isnan(image[0, 0]) and image[1, 1] == 1.0
