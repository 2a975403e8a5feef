"""The model artifact at the edge: ``model.onnx`` + ``manifest.json`` (DESIGN.md contract).

Publishing writes each file under a temporary name, fsyncs, and renames it into place;
``model.onnx`` first, ``manifest.json`` last, so the manifest is the commit point: whoever
sees a new manifest finds its model already in place (and checks the sha256 to be sure).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ptychoflow.errors import InputError
from ptychoflow.fs import atomic_copy, atomic_write_text, sha256_file

MODEL_FILENAME = "model.onnx"
MANIFEST_FILENAME = "manifest.json"


@dataclass
class ModelManifest:
    version: str
    sha256: str
    input_shape: list[int]  # [C, H, W] per frame; the batch axis is dynamic
    preprocessing: dict[str, Any]  # PreprocessConfig.to_json()
    model_kind: str = "ptychonn2"
    outputs: list[str] = field(default_factory=lambda: ["phase"])
    parent: str | None = None
    created: float = field(default_factory=time.time)
    probe_weight_path: str | None = None  # optional |P|^2 weights (.npy) beside the model

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def publish_model(model_dir: str | Path, onnx_path: str | Path, manifest: ModelManifest) -> Path:
    """Place a model into `model_dir` atomically; the manifest's sha256 must match the file."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    actual = sha256_file(onnx_path)
    if actual != manifest.sha256:
        raise InputError(onnx_path, "sha256", f"file hash {actual[:12]}… does not match manifest {manifest.sha256[:12]}…")
    atomic_copy(onnx_path, model_dir / MODEL_FILENAME)
    atomic_write_text(model_dir / MANIFEST_FILENAME, json.dumps(manifest.to_json(), indent=2))
    return model_dir / MANIFEST_FILENAME


def read_manifest(model_dir: str | Path) -> ModelManifest:
    path = Path(model_dir) / MANIFEST_FILENAME
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(path, "(file)", "no manifest: no model has been activated here") from None
    except json.JSONDecodeError as exc:
        raise InputError(path, "(json)", f"corrupt manifest: {exc}") from None
    known = set(ModelManifest.__dataclass_fields__)
    missing = [k for k in ("version", "sha256", "input_shape", "preprocessing") if k not in data]
    if missing:
        raise InputError(path, missing[0], "missing field")
    return ModelManifest(**{k: v for k, v in data.items() if k in known})


def verified_model_bytes(model_dir: str | Path) -> tuple[ModelManifest, bytes]:
    """The manifest and the model's bytes, refusing a model whose sha256 does not match."""
    manifest = read_manifest(model_dir)
    model_path = Path(model_dir) / MODEL_FILENAME
    try:
        blob = model_path.read_bytes()
    except FileNotFoundError:
        raise InputError(model_path, "(file)", "manifest present but model file missing") from None
    digest = hashlib.sha256(blob).hexdigest()
    if digest != manifest.sha256:
        raise InputError(model_path, "sha256", f"is {digest[:12]}…, manifest says {manifest.sha256[:12]}…")
    return manifest, blob
