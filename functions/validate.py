"""Remote function: score the current best model on a new scan against its rPIE product.

Self-contained for Globus Compute (imports inside the body, JSON-able in and out).

Arguments (keywords):
    registry_dir         model registry directory (required)
    scan_path            the new scan (HDF5, required)
    reconstruction_path  its rPIE product; omitted: the simulator truth beside the scan
    tolerance            retrain when SSIM < tolerance (default: the profile's policy.ssim_tolerance)

Returns: {ssim, needs_training, best_version, tolerance, scan_id, n_frames, reference};
with no model yet: {ssim: None, needs_training: True, best_version: None, reason}.
"""


def validate(**kwargs):
    from ptychoflow.nn.continual import validate_best

    return validate_best(**kwargs)
