"""Remote function: continual PtychoNN training on the grown corpus (Globus Compute).

Self-contained for Globus Compute: every import is inside the body, arguments and results
are small JSON-able values, data stay on disk.

Arguments: ``site_root``, the HPC site's root as this endpoint sees it (the profile's
``hpc.path``), then the fields of ``ptychoflow.nn.options.ContinualOptions``, as keywords;
every path (``*_dir``, ``*_path``) is relative to ``site_root``, and an absolute path or an
escape is refused. ``registry_dir`` is required; the rest default as documented there
(policy knobs to the profile's ``Policy``):
    registry_dir         model registry directory
    scan_path            new scan (HDF5) whose pairs are appended first
    reconstruction_path  its rPIE product (HDF5); omitted: the simulator truth beside the scan
    corpus_path          omitted: the site layout's corpus beside the registry (<hpc>/corpus/corpus.h5)
    model_kind           "ptychonn2" (phase) | "ptychonn" (phase + amplitude)
    width                channels of the first stage: 16 (nn.options.TRAIN_WIDTH, for CPUs);
                         32 is PtychoNN 2.0's size (0.72 M parameters)
    patch_size           64 | 128
    epochs, time_limit_s, batch_size, lr_min, lr_max, promote_margin, val_fraction,
    warm_start, augment, seed, threads, stage_dir
    probe_guess_path, reuse_from_dirs (a list of registry directories), counts_per_frame
                         with no scan_path: start an experiment (nn.start.start_or_train): reuse the
                         registry version whose beam is closest, else pretrain on physics pairs

Returns: {promoted, version, best_version, parent, val_loss, ssim, best_ssim_before,
onnx_path, onnx_sha256, onnx_max_abs_diff, manifest_path, model_dir, epochs_run, best_epoch,
stopped_by, scan_id, pairs_added, corpus_pairs, train_pairs, val_pairs, split, reference,
samples_per_s, seconds}. ``model_dir`` holds model.onnx + manifest.json (+ the stitching
weight) for the edge.
"""


def train(site_root, **kwargs):
    from ptychoflow.nn.start import start_or_train
    from ptychoflow.nn.options import ContinualOptions
    from ptychoflow.site import site_arguments

    _, kwargs = site_arguments(site_root, kwargs, source="train")
    kwargs.setdefault("progress", False)
    return start_or_train(ContinualOptions(**kwargs))
