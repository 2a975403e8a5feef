"""The remote functions and activation: paths and versions from a flow input never choose
where anything is read or written, and activation reports the edge's real verdict."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

from edge_helpers import constant_model, preprocessing, publish, publish_wrong_sha, running_service, wait_for
from hostile_support import REPO, Tree, not_half_written, one_line_error
from ptychoflow.artifact import ModelManifest, publish_model, read_manifest
from ptychoflow.fs import sha256_file
from ptychoflow.site import EdgeLayout


def bundled(name: str):
    """The function as the local compute pool loads it: by file, the same-named function."""
    spec = importlib.util.spec_from_file_location(f"hostile_{name}", REPO / "functions" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def stage(directory: Path, blob: bytes, version: str, *, claimed_version: str | None = None) -> Path:
    """What the flow transfers: model.onnx + manifest.json in <edge>/staging/<version>/."""
    source = directory.parent / f".source-{version}.onnx"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_bytes(blob)
    config = preprocessing()
    manifest = ModelManifest(claimed_version or version, sha256_file(source), [1, 64, 64], config.to_json())
    publish_model(directory, source, manifest)
    source.unlink()
    return directory


@pytest.fixture
def sites(tmp_path):
    """An HPC and an edge site with a scan, a staged model, and a victim file outside both."""
    hpc, edge = tmp_path / "hpc", tmp_path / "edge"
    (hpc / "scans").mkdir(parents=True)
    (hpc / "scans" / "scan_0001.h5").write_bytes(b"not read")
    stage(EdgeLayout(edge).staged_model_dir("v0001"), constant_model(64, 1.0), "v0001")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.h5").write_bytes(b"precious")
    return tmp_path, hpc, edge


SITE_ROOTS = {  # (site_root, field the error names)
    "relative root": ("hpc", "site_root"),
    "missing root": ("/nonexistent/hpc", "site_root"),
    "root with NUL": ("/tmp/a\x00b", "site_root"),
    "root is a number": (7, "site_root"),
    "root is empty": ("", "site_root"),
}
HPC_PATHS = {  # function -> kwargs that try to leave the site (field the error names)
    "reconstruct output_dir absolute": ("reconstruct", {"scan_path": "scans/scan_0001.h5", "output_dir": "{outside}"}, "output_dir"),
    "reconstruct output_dir ..": ("reconstruct", {"scan_path": "scans/scan_0001.h5", "output_dir": "../outside"}, "output_dir"),
    "reconstruct scan_path absolute": ("reconstruct", {"scan_path": "{outside}/victim.h5", "output_dir": "products/x"}, "scan_path"),
    "reconstruct scan_path ..": ("reconstruct", {"scan_path": "../outside/victim.h5", "output_dir": "products/x"}, "scan_path"),
    "reconstruct scan_path null": ("reconstruct", {"scan_path": None, "output_dir": "products/x"}, "scan_path"),
    "validate registry_dir absolute": ("validate", {"registry_dir": "{outside}", "scan_path": "scans/scan_0001.h5"}, "registry_dir"),
    "validate reconstruction_path ..": ("validate", {"registry_dir": "registry", "scan_path": "scans/scan_0001.h5",
                                                     "reconstruction_path": "../outside/victim.h5"}, "reconstruction_path"),
    "train registry_dir ..": ("train", {"registry_dir": "../outside"}, "registry_dir"),
    "train corpus_path absolute": ("train", {"registry_dir": "registry", "corpus_path": "{outside}/corpus.h5"}, "corpus_path"),
    "train stage_dir ..": ("train", {"registry_dir": "registry", "stage_dir": "../../outside"}, "stage_dir"),
}


@pytest.mark.parametrize("name, kwargs, field", HPC_PATHS.values(), ids=HPC_PATHS.keys())
def test_hpc_function_paths_stay_in_the_site(sites, name, kwargs, field):
    tmp_path, hpc, _ = sites
    kwargs = {k: v.format(outside=tmp_path / "outside") if isinstance(v, str) else v for k, v in kwargs.items()}
    tree = Tree(tmp_path)
    one_line_error(lambda: bundled(name)(str(hpc), **kwargs), name, field)
    assert tree.contained(hpc) == []


@pytest.mark.parametrize("root, field", SITE_ROOTS.values(), ids=SITE_ROOTS.keys())
@pytest.mark.parametrize("name", ["reconstruct", "validate", "train"])
def test_site_root_must_be_an_existing_absolute_directory(sites, name, root, field, monkeypatch):
    tmp_path, _, _ = sites
    monkeypatch.chdir(tmp_path)  # a relative root would otherwise mean the current directory
    tree = Tree(tmp_path)
    kwargs = {"scan_path": "scans/scan_0001.h5"}
    kwargs.update({"output_dir": "products/x"} if name == "reconstruct" else {"registry_dir": "registry"})
    one_line_error(lambda: bundled(name)(root, **kwargs), name, field)
    tree.contained()


VERSIONS = {
    "version ../": "../../model",
    "version absolute": "/etc",
    "version empty": "",
    "version null": None,
    "version with newline": "v1\nforged",
    "version hidden": ".v0001",
}


@pytest.mark.parametrize("version", VERSIONS.values(), ids=VERSIONS.keys())
def test_activate_refuses_unsafe_versions(sites, version):
    tmp_path, _, edge = sites
    tree = Tree(tmp_path)
    one_line_error(lambda: bundled("activate")(str(edge), version, wait_s=1), "version")
    assert tree.contained(edge) == []


def test_activate_refuses_a_relative_edge_root(sites, monkeypatch):
    tmp_path, _, _ = sites
    monkeypatch.chdir(tmp_path)
    one_line_error(lambda: bundled("activate")("edge", "v0001", wait_s=1), "activate", "site_root")


def test_activate_refuses_a_version_that_is_not_staged(sites):
    _, _, edge = sites
    one_line_error(lambda: bundled("activate")(str(edge), "v0009", wait_s=1), "staging/v0009", "manifest")


def test_activate_refuses_a_manifest_claiming_another_version(sites):
    _, _, edge = sites
    stage(EdgeLayout(edge).staged_model_dir("v0002"), constant_model(64, 2.0), "v0002", claimed_version="v0001")
    one_line_error(lambda: bundled("activate")(str(edge), "v0002", wait_s=1), "manifest.json", "version")
    not_half_written(not (edge / "model" / "manifest.json").exists(), "a refused model entered the slot")


def test_activate_refuses_a_damaged_transfer(sites):
    _, _, edge = sites
    staged = EdgeLayout(edge).staged_model_dir("v0001")
    (staged / "model.onnx").write_bytes(b"damaged in transfer")
    one_line_error(lambda: bundled("activate")(str(edge), "v0001", wait_s=1), "model.onnx", "sha256")
    not_half_written(not (edge / "model" / "manifest.json").exists(), "a damaged model entered the slot")


def test_activate_without_a_service_runs_the_edge_checks_first(sites):
    """No edge running: a model the edge would refuse is not put in the slot for its next start."""
    _, _, edge = sites
    stage(EdgeLayout(edge).staged_model_dir("v0002"), constant_model(64, float("nan")), "v0002")
    one_line_error(lambda: bundled("activate")(str(edge), "v0002", wait_s=1), "v0002", "non-finite")
    not_half_written(not (edge / "model" / "manifest.json").exists(), "a failing model entered the slot")


def test_activate_with_a_silent_service_times_out_truthfully(tmp_path):
    with running_service(tmp_path, model_poll_s=3600) as (service, _):  # it never looks at the slot again
        stage(service.config.layout.staged_model_dir("v0001"), constant_model(64, 1.0), "v0001")
        wait_for(lambda: service.config.status_file.exists(), what="status file")
        message = one_line_error(lambda: bundled("activate")(str(service.config.path), "v0001", wait_s=1),
                                 "edge-status.json", "gave no verdict", "v0001")
    assert "within 1 s" in message


def test_refused_model_never_stays_in_the_slot_and_a_restart_serves_the_last_good(tmp_path):
    with running_service(tmp_path) as (service, _):
        publish(service.config.model_dir, constant_model(64, 1.0), "v1")
        wait_for(lambda: service.models.current(), what="v1 serving")
        for bad in ("v2-badsha", "v3-nan"):
            refused = len([e for e in service.models.events if e["event"] == "refused"])
            if bad == "v2-badsha":
                publish_wrong_sha(service.config.model_dir, constant_model(64, 2.0), bad)
            else:
                publish(service.config.model_dir, constant_model(64, float("nan")), bad)
            wait_for(lambda: len([e for e in service.models.events if e["event"] == "refused"]) > refused, what=bad)
            not_half_written(read_manifest(service.config.model_dir).version == "v1",
                             f"refused {bad} stayed in the model slot")
    with running_service(tmp_path) as (service, _):  # restart on the same site
        assert service.models.current() is not None and service.models.current().version == "v1"


def test_a_refused_first_model_empties_the_slot(tmp_path):
    with running_service(tmp_path) as (service, _):
        publish(service.config.model_dir, constant_model(64, float("nan")), "v1-nan")
        wait_for(lambda: any(e["event"] == "refused" for e in service.models.events), what="refusal")
        not_half_written(not (service.config.model_dir / "manifest.json").exists(),
                         "a refused model stayed in the slot with nothing to restore")


def test_deploy_flow_fails_with_the_edges_reason_and_the_edge_keeps_serving(tmp_path):
    """The reported case end to end: the deploy flow said "activated" while the edge refused."""
    from ptychoflow.backends.local import LocalBackend
    from ptychoflow.flow_inputs import deploy_model_input
    from engine_helpers import run_bundled_flow
    from ptychoflow.local_site import prepare_local_site
    from ptychoflow.profile import load_profile, write_local_profile
    from ptychoflow.site import SiteLayout

    profile = load_profile(write_local_profile(tmp_path))
    prepare_local_site(profile, start_engine=False)
    backend = LocalBackend.from_profile(profile)
    staged_root = SiteLayout.from_profile(profile).hpc.registry_dir / "staged"

    def deploy(version: str):
        return run_bundled_flow(profile, backend, "deploy_model", deploy_model_input(profile, version), timeout=120)

    stage(staged_root / "v0001", constant_model(64, 1.0), "v0001")
    stage(staged_root / "v0002", constant_model(64, float("nan")), "v0002")
    with running_service(tmp_path) as (service, _):
        good = deploy("v0001")
        assert good.status.value == "SUCCEEDED", good.error
        assert good.output["outcome"]["edge"] == "serving" and service.models.current().version == "v0001"
        bad = deploy("v0002")
        assert bad.status.value == "FAILED"
        cause = bad.output["failure_report"]["cause"]
        assert "ActivationRefused" in cause and "refused by the edge: test inference produced non-finite" in cause
        assert service.models.current().version == "v0001"
    with running_service(tmp_path) as (service, _):
        assert service.models.current().version == "v0001"  # and after a restart
    not_half_written(read_manifest(tmp_path / "edge" / "model").version == "v0001", "v0002 stayed in the slot")
