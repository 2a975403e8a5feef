"""The bundled flows end to end on the local engine, with tiny stand-in remote functions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine_helpers import run_bundled_flow, write_function, write_profile
from ptychoflow.backends.local import LocalBackend
from ptychoflow.cli.main import cli
from ptychoflow.flowengine.worker import stop_engine
from ptychoflow.flow_inputs import deploy_model_input, reconstruct_and_train_input, reconstruct_input
from ptychoflow.profile import load_profile

STAND_INS = {  # each takes its site's root and paths relative to it, as the real functions do
    "reconstruct": """
        import os
        root = kwargs['site_root']
        out = os.path.join(root, kwargs['output_dir'])
        os.makedirs(out, exist_ok=True)
        product = os.path.join(out, 'product.h5')
        with open(os.path.join(root, kwargs['scan_path']), 'rb') as src, open(product, 'wb') as dst:
            dst.write(b'RECON' + src.read())
        open(os.path.join(out, 'preview.png'), 'wb').write(b'png')
        relative = os.path.relpath(product, root)
        return {'product_path': relative, 'preview_path': relative[:-3] + '.png', 'iterations': kwargs['iterations']}
    """,
    "validate": """
        import os
        root = kwargs['site_root']
        good = os.path.exists(os.path.join(root, kwargs['registry_dir'], 'GOOD'))
        assert open(os.path.join(root, kwargs['reconstruction_path']), 'rb').read(5) == b'RECON'
        return {'ssim': 0.9 if good else 0.1, 'needs_training': not good}
    """,
    "train": """
        import os
        version_dir = os.path.join(kwargs['site_root'], kwargs['registry_dir'], 'staged', 'v0001')  # the staged edge artifact
        os.makedirs(version_dir, exist_ok=True)
        open(os.path.join(version_dir, 'model.onnx'), 'wb').write(b'onnx')
        open(os.path.join(version_dir, 'manifest.json'), 'w').write('{"version": "v0001"}')
        if kwargs['epochs'] == 13:
            raise RuntimeError('training diverged')
        return {'promoted': kwargs['epochs'] != 7, 'version': 'v0001', 'best_version': 'v0001', 'onnx_path': os.path.join(version_dir, 'model.onnx'),
                'manifest_path': os.path.join(version_dir, 'manifest.json')}
    """,
    "activate": """
        import os, shutil
        staged = os.path.join(kwargs['site_root'], 'staging', kwargs['version'])
        model_dir = os.path.join(kwargs['site_root'], 'model')
        os.makedirs(model_dir, exist_ok=True)
        for name in os.listdir(staged):
            shutil.copy(os.path.join(staged, name), os.path.join(model_dir, name))
        return {'version': kwargs['version'], 'verdict': 'serving'}
    """,
}


@pytest.fixture
def site(tmp_path: Path):
    """A local deployment with stand-in functions registered and one scan acquired."""
    profile = load_profile(write_profile(tmp_path))
    backend = LocalBackend.from_profile(profile)
    for name, body in STAND_INS.items():
        backend.register_function(write_function(tmp_path / "fns", name, body), name)
    (tmp_path / "beamline" / "scan_0001.h5").write_bytes(b"DIFFRACTION" * 100)
    return profile, backend




def test_reconstruct_flow(site, tmp_path: Path) -> None:
    profile, backend = site
    run = run_bundled_flow(profile, backend, "reconstruct", reconstruct_input(profile, "scan_0001.h5"))
    assert run.status.value == "SUCCEEDED", run.error
    assert [s.name for s in run.timeline] == ["TransferScan", "Reconstruct", "TransferResult", "Done"]
    product = tmp_path / "beamline" / "results" / "scan_0001" / "product.h5"
    assert product.read_bytes().startswith(b"RECONDIFFRACTION")
    assert run.output["outcome"]["product_path"] == "products/scan_0001/product.h5"  # relative to hpc.root


def test_reconstruct_and_train_promotes_and_activates(site, tmp_path: Path) -> None:
    profile, backend = site
    run = run_bundled_flow(profile, backend, "reconstruct_and_train", reconstruct_and_train_input(profile, "scan_0001.h5"))
    assert run.status.value == "SUCCEEDED", run.error
    assert [s.name for s in run.timeline] == ["TransferScan", "Reconstruct", "ValidateModel", "NeedsTraining", "TrainModel",
                                              "Promoted", "PlanModelTransfer", "TransferModel", "ActivateModel", "Done"]
    assert (tmp_path / "edge" / "model" / "model.onnx").read_bytes() == b"onnx"
    assert run.output["outcome"] == {"outcome": "model promoted and activated on the edge", "version": "v0001",
                                     "edge": "serving"}


def test_reconstruct_and_train_skips_training_when_the_model_is_good(site, tmp_path: Path) -> None:
    profile, backend = site
    (tmp_path / "hpc" / "registry").mkdir(parents=True)
    (tmp_path / "hpc" / "registry" / "GOOD").touch()
    run = run_bundled_flow(profile, backend, "reconstruct_and_train", reconstruct_and_train_input(profile, "scan_0001.h5"))
    assert run.timeline[-1].name == "ModelStillGood" and run.output["outcome"]["ssim"] == 0.9


def test_not_promoted_and_failure_report(site) -> None:
    profile, backend = site
    body = reconstruct_and_train_input(profile, "scan_0001.h5")
    body["policy"]["train_epochs"] = 7
    run = run_bundled_flow(profile, backend, "reconstruct_and_train", body)
    assert run.timeline[-1].name == "NotPromoted"
    body["policy"]["train_epochs"] = 13
    run = run_bundled_flow(profile, backend, "reconstruct_and_train", body)
    assert run.status.value == "FAILED" and run.error.startswith("PtychoflowFlowFailed: A state failed")
    report = run.output["failure_report"]
    assert report["error"] == "ActionFailedException" and "training diverged" in report["cause"]
    assert report["summary"] == f"run {run.run_id} failed on scan scan_0001: ActionFailedException"
    assert [s.name for s in run.timeline][-3:] == ["TrainModel", "ReportFailure", "Failed"]


def test_deploy_model_flow(site, tmp_path: Path) -> None:
    profile, backend = site
    version = tmp_path / "hpc" / "registry" / "staged" / "v0042"  # `ptychoflow models export` stages it
    version.mkdir(parents=True)
    (version / "model.onnx").write_bytes(b"42")
    run = run_bundled_flow(profile, backend, "deploy_model", deploy_model_input(profile, "v0042"))
    assert run.status.value == "SUCCEEDED", run.error
    assert (tmp_path / "edge" / "model" / "model.onnx").read_bytes() == b"42"


def test_cli_run_wait_show_list_logs_and_engine(site, tmp_path: Path) -> None:
    profile, _ = site
    toml = str(tmp_path / "ptychoflow.toml")
    (tmp_path / "input.json").write_text(json.dumps(reconstruct_input(profile, "scan_0001.h5")))
    runner = CliRunner()
    try:
        result = runner.invoke(cli, ["flows", "run", "reconstruct", "--input", f"@{tmp_path / 'input.json'}",
                                     "--wait", "--json", "--label", "s1", "--profile", toml])
        assert result.exit_code == 0, result.output
        status = runner.invoke(cli, ["engine", "status", "--profile", toml])
        assert "running, pid" in status.output
    finally:
        stop_engine(profile.state_path)
    runs = json.loads(runner.invoke(cli, ["runs", "list", "--json", "--profile", toml]).output)
    assert runs[0]["status"] == "SUCCEEDED" and runs[0]["label"] == "s1"
    shown = json.loads(runner.invoke(cli, ["runs", "show", runs[0]["run_id"][:8], "--json", "--profile", toml]).output)
    assert [t["name"] for t in shown["timeline"]] == ["TransferScan", "Reconstruct", "TransferResult", "Done"]
    assert all(t["duration"] is not None for t in shown["timeline"])
    table = runner.invoke(cli, ["runs", "show", runs[0]["run_id"], "--profile", toml]).output
    assert "Reconstruct" in table and "SUCCEEDED" in table
    logs = runner.invoke(cli, ["runs", "logs", runs[0]["run_id"], "--profile", toml]).output
    assert "FlowStarted" in logs and "FlowSucceeded" in logs
    missing = runner.invoke(cli, ["runs", "show", "zzzzzzzz", "--profile", toml])
    assert "run zzzzzzzz: not found" in str(missing.exception)
    bad_input = runner.invoke(cli, ["flows", "run", "reconstruct", "--input", '{"scan_id": "x"}', "--profile", toml])
    assert "'beamline' is a required property" in str(bad_input.exception)


def test_functions_register_cli(tmp_path: Path) -> None:
    toml = str(write_profile(tmp_path))
    write_function(tmp_path / "extra", "hello", "return 'hi'")
    result = CliRunner().invoke(cli, ["functions", "register", "--backend", "local", "--dir", str(tmp_path / "extra"),
                                      "--json", "--profile", toml])
    assert result.exit_code == 0, result.output
    ids = json.loads(result.output)
    assert "hello" in ids
    again = json.loads(CliRunner().invoke(cli, ["functions", "register", "--dir", str(tmp_path / "extra"), "--json",
                                                "--profile", toml]).output)
    assert again["hello"] == ids["hello"]
