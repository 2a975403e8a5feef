"""A model before the first scan ends: reuse the closest one, or pretrain from a probe guess.

Without a model the edge can only queue the first scan's frames until that scan has been
reconstructed and trained on. Given the expected probe (a guess from the optics, an earlier
scan's, or an rPIE product's), ``start_model``:

1. looks for the version whose beam is closest (``nn.reuse``) in this registry and the
   registries of earlier experiments (``reuse_from_dirs``); within ``reuse_max_distance`` it is
   made best here (copied in first when it comes from elsewhere);
2. otherwise pretrains on physics-made pairs seen through the guess (``nn.physics``) for
   ``time_limit_s``, without the physics refinement (``nn.refine`` needs the exact probe),
   and registers the result as a version whose origin is "pretrained".

Either way the best version is staged for the edge, and the choice is recorded: in the
version's ``extra["origin"]`` / ``extra["reused_from"]`` and the registry's events.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np

from ptychoflow.fs import file_lock
from ptychoflow.nn.beam import Beam
from ptychoflow.nn.continual import (
    TRAIN_LOCK,
    GrownCorpus,
    choose_preprocessing,
    continual_train,
    finish_candidate,
    stage_best,
    train_candidate,
)
from ptychoflow.nn.options import ContinualOptions
from ptychoflow.nn.registry import Registry
from ptychoflow.nn.reuse import Match, adopt, closest


def guess_beam(options: ContinualOptions) -> Beam:
    """The probe guess with its photon count: given, else the guess's own power (an
    ortho-FFT probe of power p gives frames of about p photons through a clear object)."""
    assert options.probe_guess_path is not None
    beam = Beam.from_file(options.probe_guess_path)
    if options.counts_per_frame:
        beam.counts_per_frame = float(options.counts_per_frame)
    elif not beam.counts_per_frame:
        beam.counts_per_frame = float(np.sum(np.abs(beam.probe.astype(np.complex128)) ** 2))
    return beam


def start_or_train(options: ContinualOptions) -> dict[str, Any]:
    """The training step of the CLI and the remote function: with a probe guess and no scan,
    start an experiment (``start_model``); otherwise ``continual_train``."""
    if options.scan_path is None and options.probe_guess_path is not None:
        return start_model(options)
    return continual_train(options)


def start_model(options: ContinualOptions) -> dict[str, Any]:
    """Make sure the registry has a best model for the guessed beam; stage it for the edge.

    Returns the keys the flows read from a training (promoted, version, best_version,
    manifest_path, model_dir) plus origin ("reused" or "pretrained") and what was chosen.
    """
    started = time.time()
    beam = guess_beam(options)
    if options.refine_iterations:
        # The refinement projects onto the probe that made the pattern, and a guess is not it:
        # through the demo's guess (10 % too wide) it took the pretrained model's SSIM against
        # the truth from 0.43 / 0.58 to 0.12 / 0.11 (docs/benchmarks.md, "The live image").
        options = replace(options, refine_iterations=0)
    registry = Registry(options.registry_dir)
    with file_lock(registry.root / TRAIN_LOCK):
        best = registry.best()
        preprocessing = choose_preprocessing(options.preprocessing, options.corpus, best, options.patch_size)
        match = closest([registry.root, *options.reuse_from_dirs], beam, options.model, preprocessing.to_json())
        if match is not None and match.distance <= options.reuse_max_distance:
            return _reuse(registry, options, match, beam, started)
        from ptychoflow.nn.physics import SampleStats, physics_corpus
        from ptychoflow.nn.split import split_corpus

        version = registry.next_version()
        made = time.time()
        data = physics_corpus(beam.probe, SampleStats(beam.counts_per_frame), preprocessing, options.physics_pairs,
                              seed=options.seed)
        corpus = GrownCorpus(data, split_corpus(data, fraction=options.val_fraction, seed=options.seed),
                             np.mean([s.weight for s in data.scans], axis=0), reference=f"physics pairs through {beam.source}",
                             beam=beam, origin="pretrained")
        budget = options.time_limit_s - (time.time() - made)
        candidate = train_candidate(options, corpus, version, registry.version_dir(version), None, None,
                                    time_limit_s=max(budget, 1.0))
        summary = finish_candidate(registry, options, candidate, corpus, best, started)
    summary["closest"] = None if match is None else match.describe()
    return summary


def _reuse(registry: Registry, options: ContinualOptions, match: Match, beam: Beam, started: float) -> dict[str, Any]:
    """Make the matched version best here (copying it in from another registry first)."""
    own = match.registry.root.resolve() == registry.root.resolve()
    chosen = match.version if own else adopt(registry, match, registry.next_version())
    reason = f"closest beam to {beam.source}: {match.describe()}"
    if not chosen.is_best:
        registry.promote(chosen.version, reason=reason)
    current, staged = stage_best(registry, options)
    return {
        "promoted": True, "version": chosen.version, "best_version": current.version, "parent": None,
        "origin": "reused", "closest": match.describe(), "reason": reason,
        "manifest_path": str(staged), "model_dir": str(staged.parent), "seconds": time.time() - started,
    }
