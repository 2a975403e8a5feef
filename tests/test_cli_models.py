"""``ptychoflow models`` and ``train`` find the model registry where the flows put it: the
profile's <hpc>/registry. (They used to look in <state_dir>/models and said "no model
registry here" right after the demo had trained three models.)"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from nn_helpers import small_sim

from conftest import run_cli
from console_script import CONSOLE_SCRIPT, ptychoflow
from ptychoflow.flow_inputs import reconstruct_and_train_input
from ptychoflow.function_registry import bundled_functions
from ptychoflow.profile import load_profile
from ptychoflow.resources import flow_path
from ptychoflow.scan.format import write_scan
from ptychoflow.simulate.beamline import save_truth
from ptychoflow.site import SiteLayout

FAST = {"width": 4, "epochs": 1, "batch_size": 16, "threads": 1, "time_limit_s": 30}  # speed only, not place


def _remote_train():
    """functions/train.py loaded by path, exactly as the local compute pool runs it."""
    spec = importlib.util.spec_from_file_location("remote_train", bundled_functions()["train"])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.train


def _ptychoflow(*args: str) -> subprocess.CompletedProcess:
    """The installed console script where there is one (what users run), else ``python -m``."""
    return ptychoflow(*args) if CONSOLE_SCRIPT.exists() else run_cli(*args)


@pytest.fixture(scope="module")
def trained_site(tmp_path_factory) -> tuple[Path, list[dict]]:
    """A site from `ptychoflow init` whose registry the flow's TrainModel state filled, twice."""
    site = tmp_path_factory.mktemp("beamtime") / "site"
    run_cli("init", str(site))
    run_cli("functions", "register", "--profile", str(site))  # the flow input names the registered ids
    profile = load_profile(site)
    train_kwargs = json.loads(flow_path("reconstruct_and_train").read_text())["States"]["TrainModel"]["Parameters"]
    assert train_kwargs["tasks"][0]["kwargs"]["registry_dir.$"] == "$.hpc.registry_dir"  # where the flow trains
    train, results = _remote_train(), []
    for region in (0, 1):
        sim = small_sim(region, 10.0)
        acquired = write_scan(SiteLayout.from_profile(profile).beamline_root / f"scan_{region + 1:04d}.h5", sim.scan)
        flow_input = reconstruct_and_train_input(profile, acquired.name)
        hpc = flow_input["hpc"]
        scan_file = Path(hpc["root"]) / hpc["scan_file"]
        scan_file.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(acquired, scan_file)  # TransferScan's job
        save_truth(sim, scan_file)  # the reference training uses when no product is given
        results.append(train(site_root=hpc["root"], registry_dir=hpc["registry_dir"], corpus_path=hpc["corpus_path"],
                             scan_path=hpc["scan_file"], promote_margin=0.0, **FAST))
    return site, results


def test_models_list_with_the_profile_lists_what_the_flow_trained(trained_site):
    site, trained = trained_site
    listed = json.loads(_ptychoflow("models", "list", "--profile", str(site), "--json").stdout)
    assert [v["version"] for v in listed] == [r["version"] for r in trained] == ["v0001", "v0002"]
    best = [v["version"] for v in listed if v["is_best"]]
    assert best == [trained[-1]["best_version"]]
    table = _ptychoflow("models", "list", "--profile", str(site)).stdout
    assert "v0001" in table and "v0002" in table


def test_models_show_finds_the_profile_from_the_environment(trained_site, monkeypatch):
    site, trained = trained_site
    from click.testing import CliRunner

    from ptychoflow.cli.main import cli

    monkeypatch.setenv("PTYCHOFLOW_PROFILE", str(site))
    shown = CliRunner().invoke(cli, ["models", "show", "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["version"] == trained[-1]["best_version"]


def test_a_profile_without_models_yet_says_so_naming_the_registry(tmp_path):
    run_cli("init", str(tmp_path / "site"))
    result = run_cli("models", "list", "--profile", str(tmp_path / "site"))  # exit 0: an empty registry is no error
    registry = SiteLayout.from_profile(load_profile(tmp_path / "site")).hpc.registry_dir
    assert result.stdout.startswith(f"no models yet in {registry}")
    assert not registry.exists()  # asking does not create it
    shown = run_cli("models", "show", "--profile", str(tmp_path / "site"), check=False)
    assert shown.returncode == 2 and shown.stderr.strip().startswith(f"error: {registry}: ")
    typo = run_cli("models", "list", "--registry", str(tmp_path / "registyr"), check=False)  # a typo is an error
    assert typo.returncode == 2 and "no model registry here" in typo.stderr


def test_models_export_takes_just_an_output_directory(trained_site, tmp_path):
    site, trained = trained_site
    exported = json.loads(_ptychoflow("models", "export", str(tmp_path / "best"), "--profile", str(site), "--json").stdout)
    manifest = json.loads(Path(exported["manifest_path"]).read_text())
    assert exported["version"] == manifest["version"] == trained[-1]["best_version"]
    assert (tmp_path / "best" / "model.onnx").exists()
    older = json.loads(_ptychoflow("models", "export", "v0001", str(tmp_path / "v1"), "--profile", str(site),
                                   "--json").stdout)
    assert older["version"] == json.loads(Path(older["manifest_path"]).read_text())["version"] == "v0001"


def test_moving_best_says_what_the_edge_serves_and_how_to_ship_it(trained_site):
    """promote and rollback move a pointer; they ship nothing, and say so, with the command that does."""
    site, trained = trained_site
    best = trained[-1]["best_version"]
    other = next(version for version in ("v0001", "v0002") if version != best)
    promoted = json.loads(_ptychoflow("models", "promote", other, "--profile", str(site), "--json").stdout)
    assert promoted == {"best_version": other, "edge_serving": None,  # the flow never activated one here
                        "deploy_command": f"ptychoflow flows run deploy_model --set version={other} --wait --profile {site}"}
    text = _ptychoflow("models", "rollback", "--profile", str(site)).stdout
    assert text.splitlines()[0] == f"best -> {best} (rolled back)"
    assert "note: the edge does not serve it yet; the pointer moved, no model was shipped" in text
    assert f"ptychoflow flows run deploy_model --set version={best} --wait --profile {site}" in text
