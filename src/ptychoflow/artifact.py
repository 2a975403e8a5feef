"""The model artifact at the edge: ``model.onnx`` + ``manifest.json`` (DESIGN.md contract),
and optionally ``stitch_weight.npy``, the model's stitching weight.

``publish_model`` is the one way files enter a model directory (staging on HPC, activation on
the edge). Each file is written under a temporary name, fsynced and renamed into place in
this order: the stitching weight, then ``model.onnx``, then ``manifest.json``. The manifest
is the commit point: whoever sees a new manifest finds its files already in place, and
checks their sha256 (recorded in the manifest) to be sure.

The stitching weight is the per-pixel weight each predicted patch is multiplied by when it is
added to the mosaic (``ptychoflow.stitch.Mosaic``): an (H, W) float array, H and W those of
``input_shape``. Training sets it to |P|^2 / sigma^2 (``nn.evaluate.error_weighted``); a
manifest without one is stitched with the default Gaussian (``stitch.probe_weight``).
"""

from __future__ import annotations

import io
import json
import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ptychoflow.errors import InputError
from ptychoflow.fs import atomic_copy, atomic_write_text, sha256_bytes, sha256_file
from ptychoflow.names import printable, safe_component

MODEL_FILENAME = "model.onnx"
MANIFEST_FILENAME = "manifest.json"
STITCH_WEIGHT_FILENAME = "stitch_weight.npy"
RETIRED_FIELDS = {"probe_weight_path": "stitch_weight"}  # old name -> what replaced it


@dataclass(frozen=True)
class StitchWeight:
    """The manifest's record of the stitching weight file beside the model."""

    file: str  # a file name in the model directory, never a path
    sha256: str


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
    stitch_weight: StitchWeight | None = None  # filled in by publish_model

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def read_stitch_weight(path: str | Path, input_shape: list[int], *, source: str | Path) -> tuple[np.ndarray, str]:
    """(weight, sha256 of the file) from the .npy file `path`, read once. Refused with an
    InputError (naming `source`, the manifest or file that asked for it, when the file is
    missing) unless it is a finite, non-negative, not all-zero float (H, W) array matching
    `input_shape`."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise InputError(source, "stitch_weight", f"{path} is missing") from None
    try:
        weight = np.load(io.BytesIO(blob), allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(path, "(file)", f"unreadable stitching weight: {exc}") from None
    expected = tuple(input_shape[-2:])
    if weight.shape != expected:
        raise InputError(path, "shape", f"stitching weight is {list(weight.shape)}, the model's patches are {list(expected)}")
    if not np.issubdtype(weight.dtype, np.floating) or not np.all(np.isfinite(weight)) or weight.min() < 0 or weight.max() <= 0:
        raise InputError(path, "values", "stitching weight must be finite, non-negative floats, not all zero")
    return weight.astype(np.float32, copy=False), sha256_bytes(blob)


def publish_model(model_dir: str | Path, onnx_path: str | Path, manifest: ModelManifest,
                  stitch_weight: str | Path | None = None) -> Path:
    """Place a model (and its stitching weight file, if any) into `model_dir` atomically,
    manifest last; returns the manifest's path.

    The model's sha256 must match ``manifest.sha256``. A weight file is checked, copied first
    and recorded in the manifest with its sha256; if the manifest already records one (it was
    staged before), the file must be that one.
    """
    model_dir = Path(model_dir)
    actual = sha256_file(onnx_path)
    if actual != manifest.sha256:
        raise InputError(onnx_path, "sha256", f"file hash {actual[:12]}… does not match manifest {manifest.sha256[:12]}…")
    if stitch_weight is None and manifest.stitch_weight is not None:
        raise InputError(onnx_path, "stitch_weight", f"the manifest records {manifest.stitch_weight.file}, but no file was given")
    model_dir.mkdir(parents=True, exist_ok=True)
    if stitch_weight is not None:
        _, digest = read_stitch_weight(stitch_weight, manifest.input_shape, source=stitch_weight)
        record = StitchWeight(STITCH_WEIGHT_FILENAME, digest)
        if manifest.stitch_weight is not None and manifest.stitch_weight.sha256 != record.sha256:
            raise InputError(stitch_weight, "sha256", f"is {record.sha256[:12]}…, manifest says {manifest.stitch_weight.sha256[:12]}…")
        atomic_copy(stitch_weight, model_dir / record.file)
        manifest = replace(manifest, stitch_weight=record)
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
    if not isinstance(data, dict):
        raise InputError(path, "(json)", f"expected an object, got {type(data).__name__}")
    missing = [k for k in ("version", "sha256", "input_shape", "preprocessing") if k not in data]
    if missing:
        raise InputError(path, missing[0], "missing field")
    for old, new in RETIRED_FIELDS.items():
        if old in data:
            raise InputError(path, old, f"retired field (now {new}); stage the model again (`ptychoflow models export`)")
    known = set(ModelManifest.__dataclass_fields__)
    values = {k: v for k, v in data.items() if k in known}
    _check_fields(path, values)
    values["stitch_weight"] = _stitch_weight_record(path, data.get("stitch_weight"))
    return ModelManifest(**values)


_SHA256 = re.compile(r"[0-9a-f]{64}")


def _check_fields(path: Path, values: dict[str, Any]) -> None:
    """Each manifest field has its type (a null or a string where a list belongs is refused
    here, not met as a TypeError inside the edge's checks); names from it are safe names."""
    safe_component(values["version"], source=path, field="version")
    if values.get("parent") is not None:
        safe_component(values["parent"], source=path, field="parent")
    if not isinstance(values["sha256"], str) or not _SHA256.fullmatch(values["sha256"]):
        raise InputError(path, "sha256", f"expected 64 lowercase hex digits, got {printable(values['sha256'])[:80]!r}")
    shape = values["input_shape"]
    if not (isinstance(shape, list) and len(shape) == 3
            and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)):
        raise InputError(path, "input_shape", f"expected [C, H, W] positive integers, got {printable(shape)[:80]}")
    if not isinstance(values["preprocessing"], dict):
        raise InputError(path, "preprocessing", f"expected an object, got {type(values['preprocessing']).__name__}")
    if "model_kind" in values and not isinstance(values["model_kind"], str):
        raise InputError(path, "model_kind", f"expected a string, got {type(values['model_kind']).__name__}")
    outputs = values.get("outputs", ["phase"])
    if not (isinstance(outputs, list) and all(isinstance(o, str) for o in outputs)):
        raise InputError(path, "outputs", f"expected a list of names, got {printable(outputs)[:80]}")
    created = values.get("created", 0.0)
    if isinstance(created, bool) or not isinstance(created, (int, float)):
        raise InputError(path, "created", f"expected a time in seconds, got {printable(created)[:80]!r}")


def _stitch_weight_record(path: Path, value: Any) -> StitchWeight | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"file", "sha256"}:
        raise InputError(path, "stitch_weight", 'expected {"file": NAME, "sha256": HEX} or null')
    name = safe_component(value["file"], source=path, field="stitch_weight.file")
    if not isinstance(value["sha256"], str) or not _SHA256.fullmatch(value["sha256"]):
        raise InputError(path, "stitch_weight.sha256", f"expected 64 lowercase hex digits, got {printable(value['sha256'])[:80]!r}")
    return StitchWeight(name, value["sha256"])


def stitch_weight_file(model_dir: str | Path, manifest: ModelManifest) -> Path | None:
    """The stitching weight file the manifest names, in `model_dir` (None when it names none)."""
    return None if manifest.stitch_weight is None else Path(model_dir) / manifest.stitch_weight.file


def verified_stitch_weight(model_dir: str | Path, manifest: ModelManifest) -> np.ndarray | None:
    """The manifest's stitching weight, checked against its sha256, shape and values; None
    when the manifest names none (the edge then stitches with the default Gaussian)."""
    path = stitch_weight_file(model_dir, manifest)
    if path is None or manifest.stitch_weight is None:
        return None
    weight, digest = read_stitch_weight(path, manifest.input_shape, source=Path(model_dir) / MANIFEST_FILENAME)
    if digest != manifest.stitch_weight.sha256:
        raise InputError(path, "sha256", f"is {digest[:12]}…, manifest says {manifest.stitch_weight.sha256[:12]}…")
    return weight


def verified_model_bytes(model_dir: str | Path) -> tuple[ModelManifest, bytes]:
    """The manifest and the model's bytes, refusing a model whose sha256 does not match."""
    manifest = read_manifest(model_dir)
    model_path = Path(model_dir) / MODEL_FILENAME
    try:
        blob = model_path.read_bytes()
    except FileNotFoundError:
        raise InputError(model_path, "(file)", "manifest present but model file missing") from None
    digest = sha256_bytes(blob)  # of the bytes that will be served, not of a second read
    if digest != manifest.sha256:
        raise InputError(model_path, "sha256", f"is {digest[:12]}…, manifest says {manifest.sha256[:12]}…")
    return manifest, blob
