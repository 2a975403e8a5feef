"""The edge model artifact: atomic publish, sha256-verified load, one stitching-weight field."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ptychoflow.artifact import (STITCH_WEIGHT_FILENAME, ModelManifest, SideFile, publish_from, publish_model, read_manifest,
                                 verified_model_bytes, verified_probe, verified_stitch_weight)
from ptychoflow.fs import sha256_file
from ptychoflow.errors import InputError


def _manifest(sha: str) -> ModelManifest:
    return ModelManifest(version="v1", sha256=sha, input_shape=[1, 64, 64], preprocessing={"crop": 64})


def test_publish_then_verify(tmp_path):
    model = tmp_path / "candidate.onnx"
    model.write_bytes(b"onnx-bytes")
    publish_model(tmp_path / "edge", model, _manifest(sha256_file(model)))
    manifest, blob = verified_model_bytes(tmp_path / "edge")
    assert blob == b"onnx-bytes" and manifest.version == "v1"
    assert not [p for p in (tmp_path / "edge").iterdir() if p.name.startswith(".")]  # no temp files left


def test_publish_refuses_a_hash_mismatch_and_changes_nothing(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    with pytest.raises(InputError, match="sha256"):
        publish_model(tmp_path / "edge", model, _manifest("0" * 64))
    assert not (tmp_path / "edge" / "manifest.json").exists()


def test_tampered_model_is_refused(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"good")
    publish_model(tmp_path / "edge", model, _manifest(sha256_file(model)))
    (tmp_path / "edge" / "model.onnx").write_bytes(b"evil")
    with pytest.raises(InputError, match="model.onnx: sha256"):
        verified_model_bytes(tmp_path / "edge")


def test_corrupt_or_incomplete_manifest(tmp_path):
    (tmp_path / "manifest.json").write_text("{")
    with pytest.raises(InputError, match=r"manifest.json: \(json\)"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"version": "v"}))
    with pytest.raises(InputError, match="manifest.json: sha256: missing field"):
        read_manifest(tmp_path)


def _weight(tmp_path, shape=(64, 64), name="w.npy"):
    y, x = np.mgrid[: shape[0], : shape[1]]
    weight = np.exp(-((y - 30.0) ** 2 + (x - 34.0) ** 2) / 300).astype(np.float32)
    np.save(tmp_path / name, weight)
    return tmp_path / name, weight


def test_publish_commits_the_stitch_weight_with_its_sha256(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"onnx-bytes")
    weight_file, weight = _weight(tmp_path)
    publish_model(tmp_path / "staged", model, _manifest(sha256_file(model)), weight_file)
    staged = read_manifest(tmp_path / "staged")
    assert staged.stitch_weight == SideFile(STITCH_WEIGHT_FILENAME, sha256_file(weight_file))
    assert json.loads((tmp_path / "staged" / "manifest.json").read_text())["stitch_weight"] == {
        "file": "stitch_weight.npy", "sha256": sha256_file(weight_file)}
    np.testing.assert_array_equal(verified_stitch_weight(tmp_path / "staged", staged), weight)
    # staged -> edge, as activate does: the recorded weight travels with the manifest
    publish_from(tmp_path / "edge", tmp_path / "staged", staged)
    edge = read_manifest(tmp_path / "edge")
    assert edge.stitch_weight == staged.stitch_weight
    np.testing.assert_array_equal(verified_stitch_weight(tmp_path / "edge", edge), weight)
    assert sorted(p.name for p in (tmp_path / "edge").iterdir()) == ["manifest.json", "model.onnx", "stitch_weight.npy"]


@pytest.mark.parametrize("shape, values, field", [((32, 32), None, "shape"), ((64, 64), np.nan, "values"),
                                                  ((64, 64), -1.0, "values")])
def test_publish_refuses_a_bad_weight_and_writes_nothing(tmp_path, shape, values, field):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    weight_file, weight = _weight(tmp_path, shape)
    if values is not None:
        weight[3, 3] = values
        np.save(weight_file, weight)
    with pytest.raises(InputError, match=f"w.npy: {field}: "):
        publish_model(tmp_path / "edge", model, _manifest(sha256_file(model)), weight_file)
    assert not (tmp_path / "edge").exists() or not list((tmp_path / "edge").iterdir())


def test_a_weight_other_than_the_recorded_one_is_refused(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    weight_file, _ = _weight(tmp_path)
    manifest = _manifest(sha256_file(model))
    manifest.stitch_weight = SideFile(STITCH_WEIGHT_FILENAME, "0" * 64)
    with pytest.raises(InputError, match="w.npy: sha256"):
        publish_model(tmp_path / "edge", model, manifest, weight_file)
    with pytest.raises(InputError, match="stitch_weight: the manifest records stitch_weight.npy, but no file was given"):
        publish_model(tmp_path / "edge", model, manifest)
    assert not (tmp_path / "edge" / "manifest.json").exists()


@pytest.mark.parametrize("field, value, message", [
    ("stitch_weight", {"file": "../../etc/passwd", "sha256": "0"}, r"stitch_weight.file: "),
    ("stitch_weight", "stitch_weight.npy", r"stitch_weight: expected"),
    ("probe", {"file": "../probe.npy", "sha256": "0" * 64}, r"probe.file: "),
    ("probe", {"file": "probe.npy", "sha256": "zz"}, r"probe.sha256: expected 64"),
    ("probe_source", 3, r"probe_source: expected a string"),
    ("probe_weight_path", "probe_weight.npy", r"probe_weight_path: retired field \(now stitch_weight\)"),
])
def test_manifest_weight_fields_are_checked(tmp_path, field, value, message):
    document = _manifest("0" * 64).to_json()
    document[field] = value
    (tmp_path / "manifest.json").write_text(json.dumps(document))
    with pytest.raises(InputError, match="manifest.json: " + message):
        read_manifest(tmp_path)


def _probe(tmp_path, shape=(64, 64), dtype=np.complex64, bad=None):
    y, x = np.mgrid[: shape[0], : shape[1]]
    probe = np.exp(-((y - 32.0) ** 2 + (x - 32.0) ** 2) / 200 + 0.01j * x)
    probe = (probe if np.dtype(dtype).kind == "c" else probe.real).astype(dtype)
    if bad is not None:
        probe[5, 5] = bad
    np.save(tmp_path / "p.npy", probe)
    return tmp_path / "p.npy", probe


def test_the_probe_travels_with_its_model_and_sha256(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    probe_file, probe = _probe(tmp_path)
    manifest = _manifest(sha256_file(model))
    manifest.probe_source = "rPIE probe of scan_0001"
    publish_model(tmp_path / "staged", model, manifest, probe=probe_file)
    staged = read_manifest(tmp_path / "staged")
    assert staged.probe == SideFile("probe.npy", sha256_file(probe_file)) and staged.probe_source == "rPIE probe of scan_0001"
    publish_from(tmp_path / "edge", tmp_path / "staged", staged)  # staged -> edge, as activate does
    np.testing.assert_array_equal(verified_probe(tmp_path / "edge", read_manifest(tmp_path / "edge")), probe)
    (tmp_path / "edge" / "probe.npy").write_bytes((tmp_path / "edge" / "probe.npy").read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(InputError, match="probe.npy: sha256"):
        verified_probe(tmp_path / "edge", read_manifest(tmp_path / "edge"))


@pytest.mark.parametrize("shape, dtype, bad, field", [((32, 32), np.complex64, None, "shape"),
                                                      ((64, 64), np.float32, None, "values"),
                                                      ((64, 64), np.complex64, np.nan, "values")])
def test_publish_refuses_a_bad_probe_and_writes_nothing(tmp_path, shape, dtype, bad, field):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    probe_file, _ = _probe(tmp_path, shape, dtype, bad)
    with pytest.raises(InputError, match=f"p.npy: {field}: "):
        publish_model(tmp_path / "edge", model, _manifest(sha256_file(model)), probe=probe_file)
    assert not (tmp_path / "edge").exists() or not list((tmp_path / "edge").iterdir())
