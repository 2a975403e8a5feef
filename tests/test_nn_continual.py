"""The remote functions end to end on two tiny simulated scans (truth as the rPIE stand-in)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from nn_helpers import small_sim

from ptychoflow.artifact import verified_model_bytes, verified_probe, verified_stitch_weight
from ptychoflow.nn import continual
from ptychoflow.nn.options import ContinualOptions
from ptychoflow.nn.registry import Registry
from ptychoflow.scan.format import write_scan
from ptychoflow.simulate.beamline import save_truth

ROOT = Path(__file__).resolve().parents[1]
TINY = {"width": 4, "epochs": 2, "batch_size": 16, "threads": 1, "time_limit_s": 30, "physics_pairs": 64}


def _function(name: str):
    spec = importlib.util.spec_from_file_location(f"fn_{name}", ROOT / "functions" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


SCANS = ("scans/scan_0000.h5", "scans/scan_0001.h5")  # relative to the HPC site root, as the flow sends them


@pytest.fixture
def site(tmp_path) -> Path:
    """An HPC site root holding two acquired scans (with their simulator truth)."""
    root = tmp_path / "hpc"
    (root / "scans").mkdir(parents=True)
    for region, name in enumerate(SCANS):
        sim = small_sim(region, 10.0)
        save_truth(sim, write_scan(root / name, sim.scan))
    return root


def test_validate_then_train_then_warm_start(site):
    validate, train = _function("validate"), _function("train")
    reg = site / "models"
    first = validate(str(site), registry_dir="models", scan_path=SCANS[0], tolerance=0.5)
    assert first == {"ssim": None, "needs_training": True, "best_version": None, "reason": "no model yet"}

    r1 = train(str(site), registry_dir="models", scan_path=SCANS[0], **TINY)
    assert r1["promoted"] and r1["version"] == r1["best_version"] == "v0001" and r1["parent"] is None
    assert r1["onnx_max_abs_diff"] <= 1e-4 and r1["reference"] == "simulator-truth"
    manifest, _ = verified_model_bytes(Path(r1["manifest_path"]).parent)
    assert manifest.version == "v0001" and manifest.preprocessing["crop"] == 64
    # one stitching weight from training to the edge: the staged file is the registry's, unchanged
    trained_weight = np.load(Registry(reg).get("v0001").stitch_weight_path)
    assert trained_weight.shape == (64, 64) and trained_weight.max() == 1.0
    np.testing.assert_array_equal(verified_stitch_weight(Path(r1["model_dir"]), manifest), trained_weight)
    # the probe the served model is refined through goes with it, for the edge's polish
    assert manifest.probe_source == "true probe of r0" and manifest.probe_measured
    np.testing.assert_array_equal(verified_probe(Path(r1["model_dir"]), manifest),
                                  np.load(Path(Registry(reg).get("v0001").checkpoint_path).parent / "probe.npy"))

    checked = validate(str(site), registry_dir="models", scan_path=SCANS[1], tolerance=0.99)
    assert checked["best_version"] == "v0001" and checked["needs_training"] and -1 <= checked["ssim"] <= 1

    r2 = train(str(site), registry_dir="models", scan_path=SCANS[1], promote_margin=0.0, **TINY)
    assert r2["version"] == "v0002" and r2["parent"] == "v0001"  # warm start
    assert r2["corpus_pairs"] == r1["corpus_pairs"] + r2["pairs_added"]
    assert r2["best_version"] == ("v0002" if r2["promoted"] else "v0001")
    assert Registry(reg).get("v0002").scans_seen == ["r0", "r1"]


def test_a_network_on_a_crop_of_the_frame_is_staged_with_the_probe_its_input_sees(tmp_path):
    """128-pixel frames, a 64-pixel network (the central crop): the staged probe is the beam's
    probe band-limited to the crop (nn.refine.network_probe), and the model is refined through it."""
    from ptychoflow.nn.refine import network_probe
    from ptychoflow.simulate.beamline import SimulationOptions, simulate_scan

    root = tmp_path / "hpc"
    (root / "scans").mkdir(parents=True)
    sim = simulate_scan(SimulationOptions(frame_size=128, object_size=200, probe_diameter_px=60, step_px=20, seed=5),
                        scan_id="wide")
    save_truth(sim, write_scan(root / "scans" / "wide.h5", sim.scan))
    result = _function("train")(str(root), registry_dir="models", scan_path="scans/wide.h5", **TINY)
    manifest, _ = verified_model_bytes(Path(result["manifest_path"]).parent)
    version = Registry(root / "models").get(result["version"])
    assert manifest.preprocessing["crop"] == 64 and manifest.probe_measured
    beam_probe = np.load(Path(version.checkpoint_path).parent / "probe.npy")
    assert beam_probe.shape == (128, 128)
    np.testing.assert_array_equal(verified_probe(Path(result["model_dir"]), manifest),
                                  network_probe(beam_probe, manifest.preprocessing))


def test_interrupted_training_never_replaces_best(site, monkeypatch):
    train = _function("train")
    reg = site / "models"
    train(str(site), registry_dir="models", scan_path=SCANS[0], **TINY)
    before = Registry(reg).best()

    import ptychoflow.nn.training as training

    real = training.train_model

    def interrupted(*args, **kwargs):
        kwargs["settings"].epochs = 1
        real(*args, **kwargs)  # writes a checkpoint for the new version...
        raise KeyboardInterrupt  # ...and dies before registering it

    monkeypatch.setattr(training, "train_model", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(str(site), registry_dir="models", scan_path=SCANS[1], **TINY)
    registry = Registry(reg)
    assert registry.best() == before and [v.version for v in registry.list()] == ["v0001"]
    assert torch.load(before.checkpoint_path, weights_only=True)["meta"]["version"] == "v0001"


def test_missing_reconstruction_is_a_clear_error(tmp_path):
    sim = small_sim(0, 10.0)
    path = write_scan(tmp_path / "scan.h5", sim.scan)  # no truth beside it, no product given
    with pytest.raises(continual.InputError, match="scan.h5: reconstruction: no reconstruction given"):
        continual.continual_train(ContinualOptions(registry_dir=tmp_path / "m", scan_path=path, **TINY))


def test_cli_train_by_hand(tmp_path, site):
    import json

    from click.testing import CliRunner

    from ptychoflow.cli.main import cli

    reg = tmp_path / "models"
    out = CliRunner().invoke(cli, ["train", "--registry", str(reg), "--scan", str(site / SCANS[0]), "--epochs", "1",
                                   "--time-limit", "5", "--threads", "1", "--json"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.output)
    assert result["promoted"] and Path(result["manifest_path"]).exists()
    listed = CliRunner().invoke(cli, ["models", "list", "--registry", str(reg), "--json"])
    assert json.loads(listed.output)[0]["version"] == "v0001"
    exported = CliRunner().invoke(cli, ["models", "export", "v0001", str(tmp_path / "out"), "--registry", str(reg)])
    assert exported.exit_code == 0, exported.output
    manifest, _ = verified_model_bytes(tmp_path / "out")
    np.testing.assert_array_equal(verified_stitch_weight(tmp_path / "out", manifest),
                                  np.load(Registry(reg).get("v0001").stitch_weight_path))
    missing = CliRunner().invoke(cli, ["models", "list", "--registry", str(tmp_path / "typo")])
    assert missing.exit_code != 0 and not (tmp_path / "typo").exists()
