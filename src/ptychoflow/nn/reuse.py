"""Model reuse across experiments (as fairDMS does): the registry version whose beam is closest.

Every version records the beam it was trained for (``nn.beam``). A new experiment names the
registries of earlier ones; the version with the smallest ``beam_distance`` to the new
beam, among those with the same network and preprocessing, is copied into the new registry
as a version of its own, with where it came from and how close it was in ``extra["origin"]``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ptychoflow.artifact import MODEL_FILENAME, STITCH_WEIGHT_FILENAME
from ptychoflow.fs import atomic_copy
from ptychoflow.nn.beam import PROBE_FILENAME, Beam, beam_distance, version_beam
from ptychoflow.nn.continual import CHECKPOINT_FILENAME
from ptychoflow.nn.options import ModelConfig
from ptychoflow.nn.registry import ModelVersion, Registry


@dataclass
class Match:
    registry: Registry
    version: ModelVersion
    beam: Beam
    distance: float

    def describe(self) -> dict[str, Any]:
        return {"registry": str(self.registry.root), "version": self.version.version, "distance": round(self.distance, 4),
                "beam_source": self.beam.source}


def closest(registries: list[Path], beam: Beam, model: ModelConfig, preprocessing: dict[str, Any]) -> Match | None:
    """The version nearest `beam` over `registries` (missing ones are skipped) with this
    network and preprocessing; ties go to the higher held-out SSIM, then the newer version."""
    best: tuple[tuple, Match] | None = None
    for root in registries:
        registry = Registry(root)
        if not registry.db_path.exists():
            continue
        for version in registry.list():
            if not model.same_network(version.model_config) or version.preprocessing != preprocessing:
                continue
            theirs = version_beam(version)
            if theirs is None:
                continue
            distance = beam_distance(beam, theirs)
            key = (round(distance, 3), -(version.ssim if version.ssim is not None else -1.0), -version.created)
            if best is None or key < best[0]:
                best = (key, Match(registry, version, theirs, distance))
    return None if best is None or not np.isfinite(best[1].distance) else best[1]


def adopt(registry: Registry, match: Match, version: str) -> ModelVersion:
    """Copy the matched version's files into `registry` as `version` and register it."""
    source = match.version
    source_dir = Path(source.checkpoint_path).parent
    target_dir = registry.version_dir(version)
    target_dir.mkdir(parents=True, exist_ok=True)
    names = [CHECKPOINT_FILENAME, MODEL_FILENAME, PROBE_FILENAME]
    if source.stitch_weight_path is not None:
        names.append(STITCH_WEIGHT_FILENAME)
    for name in names:
        atomic_copy(source_dir / name, target_dir / name)
    extra = {key: value for key, value in (source.extra or {}).items() if key not in ("history", "best_when_trained")}
    extra["stitch_weight"] = STITCH_WEIGHT_FILENAME if source.stitch_weight_path is not None else None
    extra["origin"] = "reused"
    extra["reused_from"] = {**match.describe(), "scans_seen": source.scans_seen}
    return registry.register(
        version, parent=None, model_config=source.model_config, preprocessing=source.preprocessing, scans_seen=[],
        val_loss=source.val_loss, ssim=source.ssim, checkpoint_path=target_dir / CHECKPOINT_FILENAME,
        onnx_path=target_dir / MODEL_FILENAME, onnx_sha256=source.onnx_sha256, extra=json.loads(json.dumps(extra)),
    )
