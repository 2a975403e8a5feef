"""ONNX export checked against PyTorch, and staging of the edge artifact.

The graph takes ``diffraction`` (B,1,H,W) float32 with a dynamic batch axis and returns
``phase`` (and ``amplitude`` for PtychoNN). Export uses the TorchScript exporter
(``dynamo=False``): it needs no extra package and folds BatchNorm into the convs.
"""

from __future__ import annotations

import dataclasses
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from ptychoflow.artifact import ModelManifest, publish_model
from ptychoflow.errors import InputError
from ptychoflow.fs import atomic_write, sha256_file
from ptychoflow.nn.infer import ort_session
from ptychoflow.nn.options import ModelConfig
from ptychoflow.nn.registry import ModelVersion

ONNX_OPSET = 17
TOLERANCE = 1e-4


class ExportMismatch(RuntimeError):
    """ONNX Runtime disagrees with PyTorch beyond the tolerance."""


def atomic_write_npy(path: str | Path, array: np.ndarray) -> Path:
    """Save an array as .npy atomically (through a handle: np.save would append .npy to a bare name)."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.save(handle, array)

    return atomic_write(path, write)


def export_onnx(model: torch.nn.Module, config: ModelConfig, path: str | Path) -> Path:
    """Write the model as ONNX (temporary name, then atomic rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().to("cpu", memory_format=torch.contiguous_format)
    example = torch.zeros(1, 1, config.size, config.size)
    outputs = config.outputs

    def write(tmp: Path) -> None:
        with warnings.catch_warnings():  # the TorchScript exporter is deprecated but needs no onnxscript
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                model, (example,), str(tmp), input_names=["diffraction"], output_names=outputs,
                dynamic_axes={name: {0: "batch"} for name in ["diffraction", *outputs]},
                opset_version=ONNX_OPSET, dynamo=False,
            )

    return atomic_write(path, write)


def check_onnx(model: torch.nn.Module, onnx_path: str | Path, inputs: np.ndarray, *, tolerance: float = TOLERANCE) -> float:
    """Max |ORT - PyTorch| over every output for `inputs` (B,1,H,W); raises above `tolerance`."""
    from ptychoflow.nn.models import predict_outputs

    session = ort_session(onnx_path, providers=["CPUExecutionProvider"])
    x = np.ascontiguousarray(inputs, np.float32)
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(names, {"diffraction": x})))
    model = model.eval().to("cpu")
    with torch.no_grad():
        want = {k: v.numpy() for k, v in predict_outputs(model, torch.from_numpy(x)).items()}
    if set(got) != set(want):
        raise ExportMismatch(f"{onnx_path}: outputs {sorted(got)} but PyTorch gives {sorted(want)}")
    diff = max(float(np.abs(_difference(k, got[k], want[k])).max()) for k in want)
    if diff > tolerance:
        raise ExportMismatch(f"{onnx_path}: ONNX Runtime differs from PyTorch by {diff:.2e} (> {tolerance:.0e})")
    return diff


def _difference(output: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a - b; for the phase, modulo 2 pi (a refined phase may sit at +pi in one and -pi in the other)."""
    if output == "phase":
        return np.angle(np.exp(1j * (a.astype(np.float64) - b)))
    return a - b


def export_and_check(model: torch.nn.Module, config: ModelConfig, path: str | Path, real_inputs: np.ndarray | None = None, *,
                     seed: int = 0) -> dict:
    """Export, then compare on random inputs (batch 3, so the batch axis is really dynamic)
    and on real patterns when given. Returns {onnx_path, sha256, max_abs_diff}.

    A model with a physics refinement (nn.refine) gets random patterns its probe could make
    (``Refinement.example_inputs``): on patterns no probe could make, the projection is
    chaotic and float32 rounding, not the graph, decides its answer."""
    from ptychoflow.nn.refine import RefinedModel

    path = export_onnx(model, config, path)
    if isinstance(model, RefinedModel):
        random = model.refinement.example_inputs(3, seed)
    else:
        random = np.random.default_rng(seed).random((3, 1, config.size, config.size), np.float32) * 5
    diff = check_onnx(model, path, random)
    if real_inputs is not None and len(real_inputs):
        diff = max(diff, check_onnx(model, path, real_inputs[:16]))
    return {"onnx_path": str(path), "sha256": sha256_file(path), "max_abs_diff": diff}


def stage_artifact(
    out_dir: str | Path,
    onnx_path: str | Path,
    *,
    version: str,
    config: ModelConfig,
    preprocessing: dict,
    parent: str | None = None,
    stitch_weight: str | Path | None = None,
    probe: str | Path | None = None,
    probe_source: str = "",
    probe_measured: bool = False,
    sha256: str | None = None,
) -> Path:
    """A directory with ``model.onnx`` + ``manifest.json`` (+ the stitching weight and probe
    files), ready to transfer to the edge; written by ``artifact.publish_model`` (manifest
    last), which refuses a file whose hash is not `sha256` (when given: the one recorded)."""
    manifest = ModelManifest(
        version=version, sha256=sha256 or sha256_file(onnx_path), input_shape=[1, config.size, config.size],
        preprocessing=preprocessing, model_kind=config.kind, outputs=config.outputs, parent=parent,
        probe_source=probe_source if probe is not None else "", probe_measured=probe is not None and probe_measured,
    )
    return publish_model(out_dir, onnx_path, manifest, stitch_weight, probe)


@dataclasses.dataclass(frozen=True)
class PolishProbe:
    """The probe the edge polishes a version's images with (ptychoflow.polish)."""

    probe: np.ndarray  # on the network's grid (nn.refine.network_probe): the size of its input
    source: str
    measured: bool  # reconstructed from a scan of this experiment; False: a guess, to be refined


def polish_probe(version: ModelVersion, config: ModelConfig) -> PolishProbe | None:
    """The beam's probe, as the network's input sees it, of a version whose input is a measured
    amplitude (what the polish needs), else None. It counts as measured when the served model
    is refined through it (nn.start pretrains through a guess without the refinement) and it is
    this experiment's: a model reused from another experiment (nn.reuse) brings a probe that is
    only close."""
    from ptychoflow.nn.beam import version_beam
    from ptychoflow.nn.refine import network_probe

    beam = version_beam(version)
    seen = None if beam is None else network_probe(beam.probe, version.preprocessing)
    if seen is None:
        return None
    measured = config.refine_iterations > 0 and (version.extra or {}).get("origin") != "reused"
    return PolishProbe(seen, beam.source, measured)


def stage_version(version: ModelVersion, out_dir: str | Path) -> Path:
    """Stage a registry version (its ONNX file and stitching weight) as an edge artifact,
    after checking the ONNX file is the one the registry recorded (its sha256)."""
    if not version.onnx_path or not Path(version.onnx_path).exists():
        raise InputError(version.onnx_path or version.checkpoint_path, "onnx_path", f"{version.version}: ONNX file missing")
    if not version.onnx_sha256:
        raise InputError(version.onnx_path, "onnx_sha256", f"{version.version}: the registry recorded no sha256, "
                         "so the file cannot be verified")
    actual = sha256_file(version.onnx_path)
    if actual != version.onnx_sha256:
        raise InputError(version.onnx_path, "sha256", f"is {actual[:12]}…, the registry recorded "
                         f"{version.onnx_sha256[:12]}… for {version.version}: the file was replaced or damaged")
    try:
        config = ModelConfig.from_json(version.model_config)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(version.checkpoint_path, "model_config", f"{version.version}: unusable: {exc}") from None
    probe = polish_probe(version, config)
    with tempfile.TemporaryDirectory() as scratch:
        extra: dict = {}
        if probe is not None:
            extra = {"probe": Path(scratch) / "polish_probe.npy", "probe_source": probe.source,
                     "probe_measured": probe.measured}
            np.save(extra["probe"], probe.probe)
        return stage_artifact(out_dir, version.onnx_path, version=version.version, config=config, sha256=actual,
                              preprocessing=version.preprocessing, parent=version.parent,
                              stitch_weight=version.stitch_weight_path, **extra)
