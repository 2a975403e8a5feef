"""The model artifact at the edge: ``model.onnx`` + ``manifest.json`` (DESIGN.md contract),
and optionally two side files, each recorded in the manifest with its sha256:

- ``stitch_weight.npy``, the per-pixel weight each predicted patch is multiplied by when it
  is added to the mosaic (``ptychoflow.stitch.Mosaic``): an (H, W) float array, H and W those
  of ``input_shape``. Training sets it to |P|^2 / sigma^2 (``nn.evaluate.error_weighted``); a
  manifest without one is stitched with the default Gaussian (``stitch.probe_weight``).
- ``probe.npy``, the probe the model was trained for, as its input sees it
  (``nn.refine.network_probe``: band-limited to a centred crop of the frame): an (H, W)
  complex array (``probe_source`` says where it came from; ``probe_measured``, whether a
  reconstruction measured it or the optics' guess stands in for it). With it the edge polishes
  each finished scan's image across frames (``ptychoflow.polish``), refining a guessed probe
  on the way.

``publish_model`` is the one way files enter a model directory (staging on HPC, activation on
the edge). Each file is written under a temporary name, fsynced and renamed into place in
this order: the side files, then ``model.onnx``, then ``manifest.json``. The manifest is the
commit point: whoever sees a new manifest finds its files already in place, and checks their
sha256 (recorded in the manifest) to be sure.
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
PROBE_FILENAME = "probe.npy"
RETIRED_FIELDS = {"probe_weight_path": "stitch_weight"}  # old name -> what replaced it


@dataclass(frozen=True)
class SideFile:
    """The manifest's record of a file beside the model (the stitching weight, the probe)."""

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
    stitch_weight: SideFile | None = None  # filled in by publish_model
    probe: SideFile | None = None  # filled in by publish_model
    probe_source: str = ""  # where the probe came from, in words
    probe_measured: bool = False  # reconstructed from a scan (True) or the optics' guess (False)

    def side_files(self) -> dict[str, SideFile]:
        """The side files this manifest records, by field name."""
        return {name: record for name in SIDE_FILES if (record := getattr(self, name)) is not None}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _read_array(path: str | Path, field: str, what: str, *, source: str | Path) -> tuple[np.ndarray, str]:
    """(array, sha256 of the file) from the .npy file `path`, read once; a missing file is
    refused naming `source` (the manifest or file that asked for it) and `field`."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise InputError(source, field, f"{path} is missing") from None
    try:
        return np.load(io.BytesIO(blob), allow_pickle=False), sha256_bytes(blob)
    except (OSError, ValueError) as exc:
        raise InputError(path, "(file)", f"unreadable {what}: {exc}") from None


def _check_shape(path: str | Path, what: str, array: np.ndarray, input_shape: list[int]) -> None:
    expected = tuple(input_shape[-2:])
    if array.shape != expected:
        raise InputError(path, "shape", f"{what} is {list(array.shape)}, the model's patches are {list(expected)}")


def read_stitch_weight(path: str | Path, input_shape: list[int], *, source: str | Path) -> tuple[np.ndarray, str]:
    """(weight, sha256 of the file), refused unless a finite, non-negative, not all-zero
    float (H, W) array matching `input_shape`."""
    weight, digest = _read_array(path, "stitch_weight", "stitching weight", source=source)
    _check_shape(path, "stitching weight", weight, input_shape)
    if not np.issubdtype(weight.dtype, np.floating) or not np.all(np.isfinite(weight)) or weight.min() < 0 or weight.max() <= 0:
        raise InputError(path, "values", "stitching weight must be finite, non-negative floats, not all zero")
    return weight.astype(np.float32, copy=False), digest


def read_probe(path: str | Path, input_shape: list[int], *, source: str | Path) -> tuple[np.ndarray, str]:
    """(probe, sha256 of the file), refused unless a finite, not all-zero complex (H, W)
    array matching `input_shape`."""
    probe, digest = _read_array(path, "probe", "probe", source=source)
    _check_shape(path, "probe", probe, input_shape)
    if not np.iscomplexobj(probe) or not np.all(np.isfinite(probe)) or not np.abs(probe).any():
        raise InputError(path, "values", "probe must be finite complex numbers, not all zero")
    return probe.astype(np.complex64, copy=False), digest


# field name -> (file name, reader): each side file's one place
SIDE_FILES = {"stitch_weight": (STITCH_WEIGHT_FILENAME, read_stitch_weight), "probe": (PROBE_FILENAME, read_probe)}
MODEL_DIR_FILES = (MANIFEST_FILENAME, MODEL_FILENAME, *(name for name, _ in SIDE_FILES.values()))  # the commit point first


def publish_model(model_dir: str | Path, onnx_path: str | Path, manifest: ModelManifest,
                  stitch_weight: str | Path | None = None, probe: str | Path | None = None) -> Path:
    """Place a model (and its side files, if any) into `model_dir` atomically, manifest last;
    returns the manifest's path.

    The model's sha256 must match ``manifest.sha256``. A side file is checked, copied first and
    recorded in the manifest with its sha256; if the manifest already records one (it was
    staged before), the file must be that one.
    """
    model_dir = Path(model_dir)
    actual = sha256_file(onnx_path)
    if actual != manifest.sha256:
        raise InputError(onnx_path, "sha256", f"file hash {actual[:12]}… does not match manifest {manifest.sha256[:12]}…")
    given = {"stitch_weight": stitch_weight, "probe": probe}
    for name, record in manifest.side_files().items():
        if given[name] is None:
            raise InputError(onnx_path, name, f"the manifest records {record.file}, but no file was given")
    model_dir.mkdir(parents=True, exist_ok=True)
    for name, path in given.items():
        if path is None:
            continue
        file_name, read = SIDE_FILES[name]
        _, digest = read(path, manifest.input_shape, source=path)
        recorded = getattr(manifest, name)
        if recorded is not None and recorded.sha256 != digest:
            raise InputError(path, "sha256", f"is {digest[:12]}…, manifest says {recorded.sha256[:12]}…")
        atomic_copy(path, model_dir / file_name)
        manifest = replace(manifest, **{name: SideFile(file_name, digest)})
    atomic_copy(onnx_path, model_dir / MODEL_FILENAME)
    atomic_write_text(model_dir / MANIFEST_FILENAME, json.dumps(manifest.to_json(), indent=2))
    return model_dir / MANIFEST_FILENAME


def publish_from(model_dir: str | Path, source_dir: str | Path, manifest: ModelManifest) -> Path:
    """Publish the model `manifest` describes in `source_dir`, side files and all, into `model_dir`."""
    source_dir = Path(source_dir)
    sides = {name: source_dir / record.file for name, record in manifest.side_files().items()}
    return publish_model(model_dir, source_dir / MODEL_FILENAME, manifest, **sides)


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
    for name in SIDE_FILES:
        values[name] = _side_file_record(path, name, data.get(name))
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
    if not isinstance(values.get("probe_source", ""), str):
        raise InputError(path, "probe_source", f"expected a string, got {type(values['probe_source']).__name__}")
    if not isinstance(values.get("probe_measured", False), bool):
        raise InputError(path, "probe_measured", f"expected true or false, got {printable(values['probe_measured'])[:80]!r}")


def _side_file_record(path: Path, field: str, value: Any) -> SideFile | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"file", "sha256"}:
        raise InputError(path, field, 'expected {"file": NAME, "sha256": HEX} or null')
    name = safe_component(value["file"], source=path, field=f"{field}.file")
    if not isinstance(value["sha256"], str) or not _SHA256.fullmatch(value["sha256"]):
        raise InputError(path, f"{field}.sha256", f"expected 64 lowercase hex digits, got {printable(value['sha256'])[:80]!r}")
    return SideFile(name, value["sha256"])


def _verified_side_file(model_dir: str | Path, manifest: ModelManifest, field: str) -> np.ndarray | None:
    record = getattr(manifest, field)
    if record is None:
        return None
    path = Path(model_dir) / record.file
    _, read = SIDE_FILES[field]
    array, digest = read(path, manifest.input_shape, source=Path(model_dir) / MANIFEST_FILENAME)
    if digest != record.sha256:
        raise InputError(path, "sha256", f"is {digest[:12]}…, manifest says {record.sha256[:12]}…")
    return array


def verified_stitch_weight(model_dir: str | Path, manifest: ModelManifest) -> np.ndarray | None:
    """The manifest's stitching weight, checked against its sha256, shape and values; None
    when the manifest names none (the edge then stitches with the default Gaussian)."""
    return _verified_side_file(model_dir, manifest, "stitch_weight")


def verified_probe(model_dir: str | Path, manifest: ModelManifest) -> np.ndarray | None:
    """The manifest's probe, checked like the stitching weight; None when it names none (the
    edge then serves the network's image unpolished)."""
    return _verified_side_file(model_dir, manifest, "probe")


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
