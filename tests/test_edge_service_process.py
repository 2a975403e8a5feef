"""The service as the demo runs it: `ptychoflow edge serve` in a subprocess, found through its
status file, stopped by SIGTERM; and the flow's `activate` function against it."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from edge_helpers import affine_model, constant_model, preprocessing
from ptychoflow.artifact import ModelManifest, publish_model, read_manifest
from ptychoflow.fs import sha256_file
from ptychoflow.errors import InputError
from ptychoflow.stitch import probe_weight
from ptychoflow_edge.activation import ActivationRefused
from ptychoflow_edge.statusfile import fetch_http_status, read_status, wait_until_ready

ROOT = Path(__file__).resolve().parents[1]


def _activate():
    spec = importlib.util.spec_from_file_location("activate_fn", ROOT / "functions" / "activate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.activate


def _profile(tmp_path: Path) -> Path:
    profile = tmp_path / "ptychoflow.toml"
    profile.write_text(textwrap.dedent("""\
        [beamline]
        path = "acquisition"
        [hpc]
        path = "hpc"
        [edge]
        path = "edge"
        stream_address = "tcp://127.0.0.1:1"
        results_address = "tcp://127.0.0.1:*"
        http_port = 0
        """))
    return profile


def _stage(directory: Path, blob: bytes, version: str, weight: np.ndarray | None = None) -> Path:
    """What the trainer stages: stitch_weight.npy (optional), model.onnx, manifest.json last."""
    sources = directory.with_name(directory.name + "-sources")
    sources.mkdir(parents=True)
    (sources / "model.onnx").write_bytes(blob)
    weight_file = None
    if weight is not None:
        weight_file = sources / "weight.npy"
        np.save(weight_file, weight)
    manifest = ModelManifest(version, sha256_file(sources / "model.onnx"), [1, 64, 64], preprocessing().to_json())
    publish_model(directory, sources / "model.onnx", manifest, weight_file)
    return directory


@pytest.fixture
def served(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "edge")])}
    proc = subprocess.Popen([sys.executable, "-m", "ptychoflow", "edge", "serve", "--profile", str(_profile(tmp_path)),
                             "--threads", "1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        status = wait_until_ready(tmp_path / "edge" / "edge-status.json", pid=proc.pid, timeout_s=60)
        yield proc, status, tmp_path
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)


def test_serve_subprocess_status_activate_and_sigterm(served):
    proc, status, tmp_path = served
    assert status["http_url"].startswith("http://127.0.0.1:")
    assert fetch_http_status(status["http_url"])["model"] is None
    edge = tmp_path / "edge"

    activate = _activate()
    good = _stage(edge / "staging" / "v7", constant_model(64, 0.5), "v7")
    result = activate(str(edge), "v7", wait_s=30)
    assert result["version"] == "v7" and result["serving_version"] == "v7" and result["verdict"] == "serving"
    assert result["sha256"] == sha256_file(good / "model.onnx")

    _stage(edge / "staging" / "v8", b"garbage, not onnx", "v8")
    with pytest.raises(ActivationRefused, match=r"model v8 .* refused by the edge: ONNX Runtime cannot load.*still serving v7"):
        activate(str(edge), "v8", wait_s=30)
    assert read_manifest(edge / "model").version == "v7"  # the refused file did not stay in the slot

    cli = subprocess.run([sys.executable, "-m", "ptychoflow", "edge", "status", "--profile", str(tmp_path)],
                         env={**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT / 'edge'}"}, capture_output=True,
                         text=True, timeout=60)
    assert cli.returncode == 0 and "v7" in cli.stdout, cli.stdout + cli.stderr

    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    assert "edge serving" in output and "refused model v8" in output
    assert read_status(edge / "edge-status.json")["state"] == "stopped"


def test_activate_without_service_and_bad_sha(tmp_path):
    activate = _activate()
    weight = probe_weight(None, 64) ** 2
    staged = _stage(tmp_path / "edge" / "staging" / "v1", affine_model(64), "v1", weight)
    result = activate(str(tmp_path / "edge"), "v1", wait_s=1)
    assert result["serving_version"] is None and "no edge service running" in result["verdict"]
    assert (tmp_path / "edge" / "model" / "manifest.json").exists()
    np.testing.assert_array_equal(np.load(tmp_path / "edge" / "model" / "stitch_weight.npy"), weight)

    edge2 = tmp_path / "edge2"
    shutil.copytree(staged, edge2 / "staging" / "v1")
    staged = edge2 / "staging" / "v1"
    np.save(staged / "stitch_weight.npy", weight * 0.5)  # a weight that is not the one staged
    with pytest.raises(InputError, match="stitch_weight.npy: sha256"):
        activate(str(edge2), "v1", wait_s=1)
    (staged / "stitch_weight.npy").unlink()
    with pytest.raises(InputError, match="stitch_weight: .*stitch_weight.npy is missing"):
        activate(str(edge2), "v1", wait_s=1)
    (staged / "model.onnx").write_bytes(b"tampered")
    with pytest.raises(InputError, match="sha256"):
        activate(str(edge2), "v1", wait_s=1)
    assert not (edge2 / "model").exists() or not list((edge2 / "model").iterdir())
