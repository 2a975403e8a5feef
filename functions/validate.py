"""Remote function: score the current best model on a new scan against its rPIE product.

Self-contained for Globus Compute (imports inside the body, JSON-able in and out).

Arguments (keywords; paths relative to ``site_root``, absolute paths and escapes refused):
    site_root            the HPC site's root as this endpoint sees it (the profile's hpc.path)
    registry_dir         model registry directory (required)
    scan_path            the new scan (HDF5, required)
    reconstruction_path  its rPIE product; omitted: the simulator truth beside the scan
    tolerance            retrain when SSIM < tolerance (default: the profile's policy.ssim_tolerance)

Returns: {ssim, needs_training, best_version, tolerance, scan_id, n_frames, reference};
with no model yet: {ssim: None, needs_training: True, best_version: None, reason}.
"""


def validate(site_root, **kwargs):
    from ptychoflow.nn.continual import validate_best
    from ptychoflow.site import site_arguments

    _, kwargs = site_arguments(site_root, kwargs, source="validate")
    return validate_best(**kwargs)
