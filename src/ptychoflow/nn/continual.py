"""Continual learning (DESIGN.md policy): grow the corpus, warm-start, train, evaluate,
register, promote only when measurably better, export ONNX and stage the edge artifact.

This is what ``functions/train.py``, ``functions/validate.py`` and ``ptychoflow train``
call. ``continual_train`` runs one step per function below, each doing one thing:
``grow_corpus`` -> ``warm_start`` -> ``train_candidate`` -> ``score_candidate`` ->
``save_candidate`` -> ``register_and_promote`` -> ``stage_best``.

Order of writes: checkpoint (atomic) -> stitching weight and ONNX (atomic) -> registry row
(one SQLite transaction) -> ``best`` pointer (another) -> the best version's staged edge
artifact (``artifact.publish_model``, manifest last). An interruption before the pointer
moves leaves ``best`` and its files untouched.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ptychoflow.artifact import MODEL_FILENAME, STITCH_WEIGHT_FILENAME, read_stitch_weight
from ptychoflow.errors import InputError
from ptychoflow.nn.beam import PROBE_FILENAME
from ptychoflow.fs import file_lock
from ptychoflow.nn.options import ContinualOptions, ModelConfig
from ptychoflow.nn.pairs import Pairs, ReconstructionLike, make_pairs
from ptychoflow.nn.registry import ModelVersion, Registry
from ptychoflow.preprocess import PreprocessConfig
from ptychoflow.profile import policy_default

if TYPE_CHECKING:
    from torch import nn

    from ptychoflow.nn.beam import Beam
    from ptychoflow.nn.corpus import CorpusData
    from ptychoflow.nn.split import Split
    from ptychoflow.nn.training import TrainResult

log = logging.getLogger(__name__)
SYMMETRY_FOR_AUGMENT = 0.95  # nn.pairs.probe_symmetry needed to train with flips/transposes
CHECKPOINT_FILENAME = "checkpoint.pt"  # in a version's directory, beside model.onnx and the stitching weight
TRAIN_LOCK = ".train.lock"  # in the registry: one training per registry at a time, versions in order
SIMULATOR_TRUTH = "simulator-truth"  # the reference of a scan trained on its simulator truth (no rPIE product)


def _reconstruction_for(scan_path: Path, reconstruction_path: str | Path | None) -> tuple[ReconstructionLike, str]:
    """The rPIE product when given; else the simulator's truth beside the scan (stand-in)."""
    if reconstruction_path is not None:
        return ReconstructionLike.from_file(reconstruction_path), str(reconstruction_path)
    from ptychoflow.simulate.beamline import TRUTH_SUFFIX, load_truth

    truth = load_truth(scan_path)
    if truth is None:
        raise InputError(scan_path, "reconstruction", f"no reconstruction given and no simulator truth ({TRUTH_SUFFIX}) beside the scan")
    recon = ReconstructionLike(truth["object"], truth["probe"], np.asarray(truth["positions_px"], float))
    return recon, SIMULATOR_TRUTH


def scan_pairs(scan_path: str | Path, reconstruction_path: str | Path | None, preprocessing: PreprocessConfig) -> tuple[str, Pairs, str]:
    """(scan id, pairs, reference description) for one scan file and its reconstruction; the
    scan is read the way the reconstruction read it (layout, crop, position file)."""
    from ptychoflow.product import read_product
    from ptychoflow.scan.registry import AUTO, load_scan, read_again

    scan_format, read_options = AUTO, None
    if reconstruction_path is not None:
        scan_format, read_options = read_again(read_product(reconstruction_path).parameters.get("scan_read", {}))
    scan = load_scan(scan_path, read_options, scan_format=scan_format)
    recon, reference = _reconstruction_for(Path(scan_path), reconstruction_path)
    if len(recon.positions_px) != scan.n_frames:
        raise InputError(reconstruction_path or scan_path, "positions_px", f"{len(recon.positions_px)} positions for {scan.n_frames} frames")
    pairs = make_pairs(np.asarray(scan.data), recon, preprocessing, dark=scan.dark)
    if pairs.beam is not None:
        pairs.beam = replace(pairs.beam.with_geometry(scan.instrument.energy_keV, scan.pixel_size_m),
                             source=f"{'rPIE' if reference != SIMULATOR_TRUTH else 'true'} probe of {scan.scan_id}")
    return scan.scan_id, pairs, reference


def heldout_ssim(predict: Callable[[np.ndarray], np.ndarray], data: CorpusData, rows: np.ndarray,
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


def stitch_weight_of(version: ModelVersion) -> np.ndarray | None:
    """The stitching weight trained with a registry version (None: stitch with the scan's |P|^2)."""
    path = version.stitch_weight_path
    if path is None:
        return None
    size = version.model_config["size"]
    return read_stitch_weight(path, [1, size, size], source=version.checkpoint_path)[0]


@dataclass
class GrownCorpus:
    """The corpus after this step's scan was appended, and its train/validation split."""

    data: CorpusData
    split: Split
    base_weight: np.ndarray  # mean |P|^2 of the corpus's scans: the L1 weight and the stitching weight's base
    pairs_added: int = 0
    scan_id: str | None = None
    reference: str | None = None  # what the new scan's targets came from
    physics: CorpusData | None = None  # physics-made pairs trained on beside the real training rows
    beam: Beam | None = None  # the beam the candidate is made for: the newest scan's (or the probe guess)
    origin: str = "trained"  # "trained" on real scans, or "pretrained" on physics-made pairs alone (nn.start)

    @property
    def physics_pairs(self) -> int:
        """How many physics-made pairs the candidate trains and validates on."""
        if self.origin == "pretrained":
            return len(self.data)
        return 0 if self.physics is None else len(self.physics)

    @property
    def scans_seen(self) -> list[str]:
        """The real scans behind the candidate (none for a pretrained one)."""
        return [] if self.origin == "pretrained" else [s.scan_id for s in self.data.scans]

    def rows(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.data.diffraction[index], self.data.phase[index], self.data.amplitude[index]

    def training_rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The real training rows, then the physics-made pairs (if any)."""
        real = self.rows(self.split.train)
        if self.physics is None:
            return real
        made = (self.physics.diffraction, self.physics.phase, self.physics.amplitude)
        return tuple(np.concatenate([a, b]) for a, b in zip(real, made))  # type: ignore[return-value]


@dataclass
class Candidate:
    """A trained, not yet registered version."""

    version: str
    directory: Path
    parent: str | None
    augment: bool
    model: nn.Module  # the trained network
    result: TrainResult
    served: nn.Module  # what is exported, scored and served: the network and its refinement (nn.refine)

    @property
    def refined(self) -> bool:
        return self.served is not self.model

    @property
    def checkpoint(self) -> Path:
        return self.directory / CHECKPOINT_FILENAME


@dataclass
class Scores:
    """Candidate and best scored on the same held-out rows, each with its own stitching weight."""

    ssim: float | None
    best_ssim: float | None  # None: no best, or one trained on other sizes or preprocessing
    stitch_weight: np.ndarray  # the candidate's: |P|^2 / sigma^2 of its held-out error


def grow_corpus(options: ContinualOptions, best: ModelVersion | None) -> GrownCorpus:
    """Append the new scan's pairs (if any), load the whole corpus, split it."""
    from ptychoflow.nn.corpus import append_scan, load_corpus
    from ptychoflow.nn.split import split_corpus

    corpus_path = options.corpus
    added, scan_id, reference = 0, None, None
    if options.scan_path is not None:
        pre = choose_preprocessing(options.preprocessing, corpus_path, best, options.patch_size)
        scan_id, pairs, reference = scan_pairs(options.scan_path, options.reconstruction_path, pre)
        added = append_scan(corpus_path, scan_id, pairs, pre.to_json())
    data = load_corpus(corpus_path)
    if data.phase.shape[-1] != options.patch_size:
        raise InputError(corpus_path, "/phase", f"patches are {data.phase.shape[-1]} px, model wants {options.patch_size}")
    split = split_corpus(data, fraction=options.val_fraction, seed=options.seed)
    if len(split.train) < 2:
        raise InputError(corpus_path, "/phase", f"only {len(split.train)} training pairs after the split")
    base_weight = np.mean([s.weight for s in data.scans], axis=0)
    beam = next((s.beam for s in reversed(data.scans) if s.beam is not None), None)
    return GrownCorpus(data, split, base_weight, added, scan_id, reference, beam=beam)


def add_physics(corpus: GrownCorpus, options: ContinualOptions, version: str) -> None:
    """Make ``options.physics_pairs`` pairs seen through the newest scan's beam, with that
    scan's photon count and contrast; fresh textures for every version (its number seeds
    them). Corpora without a stored beam train on their real pairs alone."""
    from ptychoflow.nn.physics import physics_corpus, scan_stats

    scan = next((s for s in reversed(corpus.data.scans) if s.beam is not None), None)
    if options.physics_pairs <= 0 or scan is None or scan.beam is None:
        return
    pre = PreprocessConfig.from_json(corpus.data.preprocessing)
    stats = scan_stats(corpus.data, scan)
    corpus.physics = physics_corpus(scan.beam.probe, stats, pre, options.physics_pairs, seed=_version_seed(options, version))


def warm_start(options: ContinualOptions, best: ModelVersion | None, preprocessing: dict) -> tuple[dict | None, str | None]:
    """(initial weights, parent version): the best model's when it has the same network and
    preprocessing, else none (training from scratch)."""
    if not options.warm_start or best is None:
        return None, None
    if not options.model.same_network(best.model_config) or best.preprocessing != preprocessing:
        log.warning("best %s is a different model or preprocessing; training from scratch", best.version)
        return None, None
    from ptychoflow.nn.checkpoint import load_model

    return load_model(best.checkpoint_path)[2]["state_dict"], best.version


def train_candidate(options: ContinualOptions, corpus: GrownCorpus, version: str, directory: Path,
                    init_state: dict | None, parent: str | None, *, time_limit_s: float | None = None) -> Candidate:
    """Train version `version` (best-validation checkpoint in `directory`) and load it back;
    `time_limit_s` (default the options') bounds the training."""
    from ptychoflow.nn import training
    from ptychoflow.nn.checkpoint import load_model

    augment = options.augment
    if augment is None:  # flips are physics only when every scan's probe is symmetric
        scans = corpus.data.scans
        augment = bool(scans) and min(s.probe_symmetry for s in scans) >= SYMMETRY_FOR_AUGMENT
    checkpoint = directory / CHECKPOINT_FILENAME
    settings = options.training(augment=augment)
    if time_limit_s is not None:
        settings.time_limit_s = time_limit_s
    beam, pre = corpus.beam, corpus.data.preprocessing
    refinement = None
    if options.train_through_refinement:  # the loss on what will be served: the network and its refinement
        from ptychoflow.nn.refine import refinement_for

        refinement = refinement_for(None if beam is None else beam.probe, pre, options.refine_iterations)
    result = training.train_model(
        options.model, corpus.training_rows(), corpus.rows(corpus.split.val), checkpoint_path=checkpoint,
        preprocessing=pre, settings=settings, init_state=init_state,
        weight=corpus.base_weight,  # |P|^2-weighted L1
        meta={"version": version, "parent": parent, "scans_seen": corpus.scans_seen}, refinement=refinement,
    )
    network = load_model(checkpoint)[0]
    return Candidate(version, directory, parent, augment, network, result, served_model(network, options.model, beam, pre))


def served_model(network: nn.Module, config: ModelConfig, beam: Beam | None, preprocessing: dict) -> nn.Module:
    """The network followed by its physics refinement for `beam` (nn.refine), when the
    config asks for one and the beam and preprocessing allow it; else the network."""
    from ptychoflow.nn.refine import with_refinement

    return with_refinement(network, None if beam is None else beam.probe, preprocessing, config.refine_iterations)


def load_served(version: ModelVersion) -> nn.Module:
    """A registry version as it is served (its network, refined for the beam it was trained for)."""
    from ptychoflow.nn.beam import version_beam
    from ptychoflow.nn.checkpoint import load_model

    network, config, _ = load_model(version.checkpoint_path)
    return served_model(network, config, version_beam(version), version.preprocessing)


def score_candidate(candidate: Candidate, corpus: GrownCorpus, best: ModelVersion | None) -> Scores:
    """The candidate's stitching weight, then candidate and best scored on the held-out rows,
    each as it is served (refined for its own beam)."""
    from ptychoflow.nn.evaluate import error_weighted
    from ptychoflow.nn.infer import predict_torch

    data, val = corpus.data, corpus.split.val
    served = candidate.served
    weight = error_weighted(corpus.base_weight, predict_torch(served, data.diffraction[val]), data.phase[val])
    ssim = heldout_ssim(lambda x: predict_torch(served, x), data, val, weight)
    best_ssim = None
    if best is not None and best.model_config["size"] == data.phase.shape[-1] and best.preprocessing == data.preprocessing:
        best_model = load_served(best)
        best_ssim = heldout_ssim(lambda x: predict_torch(best_model, x), data, val, stitch_weight_of(best))
    return Scores(ssim, best_ssim, weight)


def save_candidate(candidate: Candidate, corpus: GrownCorpus, scores: Scores, model: ModelConfig) -> dict[str, Any]:
    """Write the candidate's stitching weight and its checked ONNX export beside its checkpoint."""
    from ptychoflow.nn.export import atomic_write_npy, export_and_check

    atomic_write_npy(candidate.directory / STITCH_WEIGHT_FILENAME, scores.stitch_weight)
    if corpus.beam is not None:
        atomic_write_npy(candidate.directory / PROBE_FILENAME, corpus.beam.probe)
    return export_and_check(candidate.served, model, candidate.directory / MODEL_FILENAME,
                            corpus.data.diffraction[corpus.split.val[:16]])


def register_and_promote(registry: Registry, options: ContinualOptions, candidate: Candidate, corpus: GrownCorpus,
                         scores: Scores, exported: dict[str, Any], best: ModelVersion | None) -> bool:
    """Record the candidate (files already in place), then move ``best`` to it if it beats
    the current best by the promotion margin; True when promoted."""
    result = candidate.result
    registry.register(
        candidate.version, parent=candidate.parent, model_config=options.model.to_json(),
        preprocessing=corpus.data.preprocessing, scans_seen=corpus.scans_seen,
        val_loss=result.best_val_loss, ssim=scores.ssim, checkpoint_path=candidate.checkpoint,
        onnx_path=exported["onnx_path"], onnx_sha256=exported["sha256"],
        extra={"best_when_trained": best.version if best else None, "augment": candidate.augment, "refined": candidate.refined,
               "stitch_weight": STITCH_WEIGHT_FILENAME, "epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
               "stopped_by": result.stopped_by, "split": corpus.split.mode, "seconds": result.seconds,
               "best_ssim_same_data": scores.best_ssim, "history": result.history, "origin": corpus.origin,
               "physics_pairs": corpus.physics_pairs,
               "beam": None if corpus.beam is None else corpus.beam.to_json()},
    )
    ssim = scores.ssim if scores.ssim is not None else -1.0
    return registry.promote_if_better(candidate.version, ssim, scores.best_ssim, options.promote_margin)


def stage_best(registry: Registry, options: ContinualOptions) -> tuple[ModelVersion, Path]:
    """Stage the best version (new or not) for the edge; (best, its manifest path)."""
    from ptychoflow.nn.export import stage_version

    current = registry.best()
    if current is None:  # register_and_promote always leaves a best
        raise InputError(registry.db_path, "best", "no best version after training")
    return current, stage_version(current, options.staged(current.version))


def continual_train(options: ContinualOptions) -> dict[str, Any]:
    """Append a scan (if given), train a candidate, evaluate, register, maybe promote, stage.

    Returns a small JSON-able dict (see ``_summary``) for the flow's Choice state. A probe
    guess with no scan starts an experiment: ``nn.start.start_or_train``.
    """
    if options.scan_path is None and options.probe_guess_path is not None:
        raise ValueError("a probe guess without a scan starts an experiment: call nn.start.start_or_train")
    started = time.time()
    registry = Registry(options.registry_dir)
    with file_lock(registry.root / TRAIN_LOCK):
        best = registry.best()
        corpus = grow_corpus(options, best)
        version = registry.next_version()
        made = time.time()
        add_physics(corpus, options, version)
        budget = options.time_limit_s - (time.time() - made)  # the physics pairs come out of the training time
        init_state, parent = warm_start(options, best, corpus.data.preprocessing)
        candidate = train_candidate(options, corpus, version, registry.version_dir(version), init_state, parent,
                                    time_limit_s=max(budget, 1.0))
        return finish_candidate(registry, options, candidate, corpus, best, started)


def finish_candidate(registry: Registry, options: ContinualOptions, candidate: Candidate, corpus: GrownCorpus,
                     best: ModelVersion | None, started: float) -> dict[str, Any]:
    """Score, save, register (maybe promote) a trained candidate and stage the best; the summary."""
    scores = score_candidate(candidate, corpus, best)
    exported = save_candidate(candidate, corpus, scores, options.model)
    promoted = register_and_promote(registry, options, candidate, corpus, scores, exported, best)
    current, staged = stage_best(registry, options)
    return _summary(candidate, corpus, scores, exported, promoted, current, staged, time.time() - started)


def _version_seed(options: ContinualOptions, version: str) -> int:
    """A different seed for each version's physics pairs (fresh textures every training)."""
    return options.seed * 100_003 + int(version.lstrip("v"))


def _summary(candidate: Candidate, corpus: GrownCorpus, scores: Scores, exported: dict[str, Any], promoted: bool,
             current: ModelVersion, staged: Path, seconds: float) -> dict[str, Any]:
    result = candidate.result
    return {
        "promoted": promoted,
        "version": candidate.version,
        "best_version": current.version,
        "parent": candidate.parent,
        "val_loss": result.best_val_loss,
        "ssim": scores.ssim,
        "best_ssim_before": scores.best_ssim,
        "onnx_path": exported["onnx_path"],
        "onnx_sha256": exported["sha256"],
        "onnx_max_abs_diff": exported["max_abs_diff"],
        "manifest_path": str(staged),
        "model_dir": str(staged.parent),
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "stopped_by": result.stopped_by,
        "scan_id": corpus.scan_id,
        "pairs_added": corpus.pairs_added,
        "corpus_pairs": len(corpus.data),
        "train_pairs": int(len(corpus.split.train)),
        "val_pairs": int(len(corpus.split.val)),
        "split": corpus.split.mode,
        "augment": candidate.augment,
        "reference": corpus.reference,
        "origin": corpus.origin,
        "physics_pairs": corpus.physics_pairs,
        "samples_per_s": result.samples_per_s,
        "seconds": seconds,
    }


def choose_preprocessing(explicit: dict | None, corpus_path: Path, best: ModelVersion | None, patch_size: int) -> PreprocessConfig:
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
    tolerance: float = policy_default("ssim_tolerance"),
    batch: int = 64,
) -> dict[str, Any]:
    """Run the best model (its ONNX, as the edge would) on a new scan, stitch with its
    stitching weight (the scan's |P|^2 for a model without one) and score against the scan's
    reconstruction on the lit region; retraining is needed below `tolerance`."""
    from ptychoflow.nn.evaluate import stitched_ssim
    from ptychoflow.nn.infer import ort_session, predict_onnx

    best = Registry(registry_dir).best()
    if best is None:
        return {"ssim": None, "needs_training": True, "best_version": None, "reason": "no model yet"}
    pre = PreprocessConfig.from_json(best.preprocessing)
    scan_id, pairs, reference = scan_pairs(scan_path, reconstruction_path, pre)
    if best.onnx_path and Path(best.onnx_path).exists():
        session = ort_session(best.onnx_path, providers=["CPUExecutionProvider"])
        pred = predict_onnx(session, pairs.diffraction, batch=batch)
    else:  # pragma: no cover - every registered version has an ONNX file
        from ptychoflow.nn.infer import predict_torch

        pred = predict_torch(load_served(best), pairs.diffraction, batch=batch)
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
