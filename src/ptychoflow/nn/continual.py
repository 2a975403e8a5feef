"""Continual learning (DESIGN.md policy): grow the corpus, warm-start, train, evaluate,
register, promote only when measurably better, export ONNX and stage the edge artifact.

This is what ``functions/train.py``, ``functions/validate.py`` and ``ptychoflow train``
call. Order of writes on training: checkpoint (atomic) -> ONNX (atomic) -> staged artifact
(manifest last) -> registry row and ``best`` pointer (one SQLite transaction, last). An
interruption at any point leaves ``best`` and its files untouched.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ptychoflow.artifact import STITCH_WEIGHT_FILENAME, read_stitch_weight
from ptychoflow.errors import InputError
from ptychoflow.fs import file_lock
from ptychoflow.nn.pairs import Pairs, ReconstructionLike, make_pairs
from ptychoflow.preprocess import PreprocessConfig
from ptychoflow.site import HpcLayout, staged_dir

log = logging.getLogger(__name__)
SYMMETRY_FOR_AUGMENT = 0.95  # nn.pairs.probe_symmetry needed to train with flips/transposes


def _reconstruction_for(scan_path: Path, reconstruction_path: str | Path | None) -> tuple[ReconstructionLike, str]:
    """The rPIE product when given; else the simulator's truth beside the scan (stand-in)."""
    if reconstruction_path is not None:
        return ReconstructionLike.from_file(reconstruction_path), str(reconstruction_path)
    from ptychoflow.simulate.beamline import TRUTH_SUFFIX, load_truth

    truth = load_truth(scan_path)
    if truth is None:
        raise InputError(scan_path, "reconstruction", f"no reconstruction given and no simulator truth ({TRUTH_SUFFIX}) beside the scan")
    recon = ReconstructionLike(truth["object"], truth["probe"], np.asarray(truth["positions_px"], float))
    return recon, "simulator-truth"


def scan_pairs(scan_path: str | Path, reconstruction_path: str | Path | None, preprocessing: PreprocessConfig) -> tuple[str, Pairs, str]:
    """(scan id, pairs, reference description) for one scan file and its reconstruction."""
    from ptychoflow.scan.format import read_scan

    scan = read_scan(scan_path)
    recon, reference = _reconstruction_for(Path(scan_path), reconstruction_path)
    if len(recon.positions_px) != scan.n_frames:
        raise InputError(reconstruction_path or scan_path, "positions_px", f"{len(recon.positions_px)} positions for {scan.n_frames} frames")
    return scan.scan_id, make_pairs(np.asarray(scan.data), recon, preprocessing, dark=scan.dark), reference


def heldout_ssim(predict: Callable[[np.ndarray], np.ndarray], data: Any, rows: np.ndarray,
                 weight: np.ndarray | None = None) -> float | None:
    """Row-weighted mean over scans of the stitched-phase SSIM vs the scan's reference, on
    the held-out rows only (a corner block or whole scans). `weight`: the model's stitching
    weight; default each scan's |P|^2."""
    from ptychoflow.nn.evaluate import stitched_ssim

    scores, counts = [], []
    for scan in data.scans:
        mine = rows[(rows >= scan.start) & (rows < scan.stop)]
        if len(mine) < 4:
            continue
        pred = predict(data.diffraction[mine])
        w = scan.weight if weight is None else weight
        try:
            scores.append(stitched_ssim(pred, data.positions_px[mine], w, scan.reference_phase, scan.reference_origin_px))
        except ValueError:
            continue
        counts.append(len(mine))
    return float(np.average(scores, weights=counts)) if scores else None


def stitch_weight_of(version: Any) -> np.ndarray | None:
    """The stitching weight trained with a registry version (None: stitch with the scan's |P|^2)."""
    path = version.stitch_weight_path
    if path is None:
        return None
    size = version.model_config["size"]
    return read_stitch_weight(path, [1, size, size], source=version.checkpoint_path)[0]


def continual_train(
    *,
    registry_dir: str | Path,
    corpus_path: str | Path | None = None,
    scan_path: str | Path | None = None,
    reconstruction_path: str | Path | None = None,
    model_kind: str = "ptychonn2",
    patch_size: int = 64,
    width: int = 32,
    preprocessing: dict | None = None,
    epochs: int = 50,
    time_limit_s: float = 3600.0,
    batch_size: int = 32,
    lr_min: float = 1e-4,
    lr_max: float = 1e-3,
    promote_margin: float = 0.005,
    val_fraction: float = 0.1,
    warm_start: bool = True,
    augment: bool | None = None,
    seed: int = 0,
    threads: int | None = None,
    progress: bool | None = None,
    stage_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Append a scan (if given), train a candidate, evaluate, register, maybe promote, stage.

    Returns a small JSON-able dict (see the keys at the end) for the flow's Choice state.
    """
    from ptychoflow.nn.checkpoint import load_model
    from ptychoflow.nn.corpus import append_scan, load_corpus
    from ptychoflow.nn.evaluate import error_weighted
    from ptychoflow.nn.export import atomic_write_npy, export_and_check, stage_version
    from ptychoflow.nn.infer import predict_torch
    from ptychoflow.nn.models import ModelConfig
    from ptychoflow.nn.registry import Registry
    from ptychoflow.nn.split import split_corpus
    from ptychoflow.nn.training import TrainConfig, train_model

    started = time.time()
    registry = Registry(registry_dir)
    corpus_path = Path(corpus_path) if corpus_path else HpcLayout(registry.root.parent).corpus_path
    with file_lock(registry.root / ".train.lock"):  # one training per registry: versions in order
        best = registry.best()
        config = ModelConfig(kind=model_kind, size=patch_size, width=width)
        added, scan_id, reference = 0, None, None
        if scan_path is not None:
            pre = _choose_preprocessing(preprocessing, corpus_path, best, patch_size)
            scan_id, pairs, reference = scan_pairs(scan_path, reconstruction_path, pre)
            added = append_scan(corpus_path, scan_id, pairs, pre.to_json())
        data = load_corpus(corpus_path)
        if data.phase.shape[-1] != patch_size:
            raise InputError(corpus_path, "/phase", f"patches are {data.phase.shape[-1]} px, model wants {patch_size}")
        split = split_corpus(data, fraction=val_fraction, seed=seed)
        if len(split.train) < 2:
            raise InputError(corpus_path, "/phase", f"only {len(split.train)} training pairs after the split")

        init_state, parent = None, None
        if warm_start and best is not None:
            if best.model_config == config.to_json() and best.preprocessing == data.preprocessing:
                init_state = load_model(best.checkpoint_path)[2]["state_dict"]
                parent = best.version
            else:
                log.warning("best %s is a different model or preprocessing; training from scratch", best.version)

        version = registry.next_version()
        vdir = registry.version_dir(version)
        checkpoint = vdir / "checkpoint.pt"
        scans_seen = [s.scan_id for s in data.scans]
        if augment is None:  # flips are physics only when every scan's probe is symmetric
            augment = bool(data.scans) and min(s.probe_symmetry for s in data.scans) >= SYMMETRY_FOR_AUGMENT
        settings = TrainConfig(augment=augment, epochs=epochs, time_limit_s=time_limit_s, batch_size=batch_size,
                               lr_min=lr_min, lr_max=lr_max, seed=seed, threads=threads, progress=progress)
        rows = lambda idx: (data.diffraction[idx], data.phase[idx], data.amplitude[idx])  # noqa: E731
        result = train_model(config, rows(split.train), rows(split.val), checkpoint_path=checkpoint,
                             preprocessing=data.preprocessing, settings=settings, init_state=init_state,
                             weight=np.mean([s.weight for s in data.scans], axis=0),  # |P|^2-weighted L1
                             meta={"version": version, "parent": parent, "scans_seen": scans_seen})

        candidate = load_model(checkpoint)[0]
        base_weight = np.mean([s.weight for s in data.scans], axis=0)
        val_pred = predict_torch(candidate, data.diffraction[split.val])
        stitch_weight = error_weighted(base_weight, val_pred, data.phase[split.val])
        atomic_write_npy(vdir / STITCH_WEIGHT_FILENAME, stitch_weight)
        ssim = heldout_ssim(lambda x: predict_torch(candidate, x), data, split.val, stitch_weight)
        best_ssim = None
        if best is not None and best.model_config["size"] == patch_size and best.preprocessing == data.preprocessing:
            best_model = load_model(best.checkpoint_path)[0]
            best_ssim = heldout_ssim(lambda x: predict_torch(best_model, x), data, split.val, stitch_weight_of(best))
        exported = export_and_check(candidate, config, vdir / "model.onnx", data.diffraction[split.val[:16]])

        registry.register(
            version, parent=parent, model_config=config.to_json(),
            preprocessing=data.preprocessing, scans_seen=scans_seen, val_loss=result.best_val_loss, ssim=ssim,
            checkpoint_path=checkpoint, onnx_path=exported["onnx_path"], onnx_sha256=exported["sha256"],
            extra={"best_when_trained": best.version if best else None, "augment": augment,
                   "stitch_weight": STITCH_WEIGHT_FILENAME,
                   "epochs_run": result.epochs_run, "best_epoch": result.best_epoch, "stopped_by": result.stopped_by, "split": split.mode, "seconds": result.seconds,
                   "best_ssim_same_data": best_ssim, "history": result.history},
        )
        promoted = registry.promote_if_better(version, ssim if ssim is not None else -1.0, best_ssim, promote_margin)
        current = registry.best()
        assert current is not None
        staged = stage_version(current, Path(stage_dir) / current.version if stage_dir else staged_dir(registry.root, current.version))
    return {
        "promoted": promoted,
        "version": version,
        "best_version": current.version,
        "parent": parent,
        "val_loss": result.best_val_loss,
        "ssim": ssim,
        "best_ssim_before": best_ssim,
        "onnx_path": exported["onnx_path"],
        "onnx_sha256": exported["sha256"],
        "onnx_max_abs_diff": exported["max_abs_diff"],
        "manifest_path": str(staged),
        "model_dir": str(staged.parent),
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "stopped_by": result.stopped_by,
        "scan_id": scan_id,
        "pairs_added": added,
        "corpus_pairs": len(data),
        "train_pairs": int(len(split.train)),
        "val_pairs": int(len(split.val)),
        "split": split.mode,
        "augment": augment,
        "reference": reference,
        "samples_per_s": result.samples_per_s,
        "seconds": time.time() - started,
    }


def _choose_preprocessing(explicit: dict | None, corpus_path: Path, best: Any, patch_size: int) -> PreprocessConfig:
    """Explicit > the corpus's own (a corpus has one preprocessing) > the best model's > a
    centred crop of the network size."""
    if explicit:
        return PreprocessConfig.from_json(explicit)
    if corpus_path.exists():
        from ptychoflow.nn.corpus import corpus_info

        return PreprocessConfig.from_json(corpus_info(corpus_path)["preprocessing"])
    if best is not None:
        return PreprocessConfig.from_json(best.preprocessing)
    return PreprocessConfig(crop=patch_size)


def validate_best(
    *,
    registry_dir: str | Path,
    scan_path: str | Path,
    reconstruction_path: str | Path | None = None,
    tolerance: float = 0.5,
    batch: int = 64,
) -> dict[str, Any]:
    """Run the best model (its ONNX, as the edge would) on a new scan, stitch with its
    stitching weight (the scan's |P|^2 for a model without one) and score against the scan's reconstruction on the lit region."""
    from ptychoflow.nn.evaluate import stitched_ssim
    from ptychoflow.nn.infer import ort_session, predict_onnx
    from ptychoflow.nn.registry import Registry

    best = Registry(registry_dir).best()
    if best is None:
        return {"ssim": None, "needs_training": True, "best_version": None, "reason": "no model yet"}
    pre = PreprocessConfig.from_json(best.preprocessing)
    scan_id, pairs, reference = scan_pairs(scan_path, reconstruction_path, pre)
    if best.onnx_path and Path(best.onnx_path).exists():
        session = ort_session(best.onnx_path, providers=["CPUExecutionProvider"])
        pred = predict_onnx(session, pairs.diffraction, batch=batch)
    else:  # pragma: no cover - every registered version has an ONNX file
        from ptychoflow.nn.checkpoint import load_model
        from ptychoflow.nn.infer import predict_torch

        pred = predict_torch(load_model(best.checkpoint_path)[0], pairs.diffraction, batch=batch)
    weight = stitch_weight_of(best)
    weight = pairs.weight if weight is None else weight
    ssim = stitched_ssim(pred, pairs.positions_px, weight, pairs.reference_phase, pairs.reference_origin_px)
    return {
        "ssim": ssim,
        "needs_training": bool(ssim < tolerance),
        "best_version": best.version,
        "tolerance": tolerance,
        "scan_id": scan_id,
        "n_frames": int(len(pred)),
        "reference": reference,
    }
