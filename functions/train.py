"""Remote function: continual PtychoNN training on the grown corpus (Globus Compute).

Self-contained for Globus Compute: every import is inside the body, arguments and results
are small JSON-able values, data stay on disk.

Arguments (all keywords; paths on the HPC side):
    registry_dir         model registry directory (required)
    scan_path            new scan (HDF5) whose pairs are appended first (optional)
    reconstruction_path  its rPIE product (HDF5); omitted: the simulator truth beside the scan
    corpus_path          default <registry_dir>/corpus.h5
    model_kind           "ptychonn2" (phase, 0.72 M) | "ptychonn" (phase + amplitude, 1.16 M)
    patch_size           64 | 128
    epochs (50), time_limit_s (3600), batch_size (32), lr_min, lr_max, promote_margin (0.005),
    val_fraction (0.1), warm_start (True), seed (0), threads, stage_dir

Returns: {promoted, version, best_version, parent, val_loss, ssim, best_ssim_before,
onnx_path, onnx_sha256, onnx_max_abs_diff, manifest_path, model_dir, epochs_run, best_epoch,
stopped_by, scan_id, pairs_added, corpus_pairs, train_pairs, val_pairs, split, reference,
samples_per_s, seconds}. ``model_dir`` holds model.onnx + manifest.json for the edge.
"""


def train(**kwargs):
    from ptychoflow.nn.continual import continual_train

    kwargs.setdefault("progress", False)
    return continual_train(**kwargs)
