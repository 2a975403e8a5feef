"""The edge model artifact: atomic publish, sha256-verified load."""

from __future__ import annotations

import json

import pytest

from ptychoflow.artifact import ModelManifest, publish_model, read_manifest, verified_model_bytes
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
