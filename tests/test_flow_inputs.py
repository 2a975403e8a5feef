"""Flow inputs come from the site layout: a collection path and its disk path name one file."""

from __future__ import annotations

from pathlib import Path

import pytest

from ptychoflow.errors import InputError
from ptychoflow.flow_inputs import deploy_model_input, reconstruct_and_train_input, reconstruct_input
from ptychoflow.profile import load_profile, write_local_profile
from ptychoflow.site import EdgeLayout


@pytest.fixture
def profile(tmp_path: Path):
    write_local_profile(tmp_path)
    profile = load_profile(tmp_path)
    profile.functions.update({name: f"id-{name}" for name in ("reconstruct", "validate", "train", "activate")})
    return profile


def _on_disk(site_root: Path, collection_path: str) -> Path:
    """What a local collection rooted at `site_root` means by `collection_path`."""
    assert collection_path.startswith("/")
    return site_root / collection_path.lstrip("/")


def test_collection_and_disk_paths_name_the_same_files(profile, tmp_path: Path) -> None:
    body = reconstruct_and_train_input(profile, "scan_0007.h5")
    hpc, edge = tmp_path / "hpc", tmp_path / "edge"
    assert body["hpc"]["root"] == str(hpc) and body["edge"]["root"] == str(edge)

    def below(site: str, relative: str) -> Path:  # what the functions make of a relative path
        assert not Path(relative).is_absolute()
        return Path(body[site]["root"]) / relative

    assert _on_disk(hpc, body["hpc"]["scan_path"]) == below("hpc", body["hpc"]["scan_file"]) == hpc / "scans" / "scan_0007.h5"
    assert below("hpc", body["hpc"]["output_dir"]) == hpc / "products" / "scan_0007"
    # the flow ships <staged_path>/<version> and the train function stages into <registry_dir>/staged/<version>
    assert _on_disk(hpc, body["hpc"]["staged_path"]) == below("hpc", body["hpc"]["registry_dir"]) / "staged"
    assert below("hpc", body["hpc"]["registry_dir"]) == hpc / "registry"
    assert below("hpc", body["hpc"]["corpus_path"]) == hpc / "corpus" / "corpus.h5"
    # the flow ships the model to <staging_path>/<version>, where activate looks for it
    assert _on_disk(edge, body["edge"]["staging_path"]) / "v0003" == EdgeLayout(edge).staged_model_dir("v0003")

    recon = reconstruct_input(profile, "scan_0007.h5")
    assert _on_disk(hpc, recon["hpc"]["output_path"]) == hpc / recon["hpc"]["output_dir"]
    assert recon["beamline"]["results_path"] == "/results/scan_0007"
    deploy = deploy_model_input(profile, "v0003")
    assert _on_disk(hpc, deploy["hpc"]["staged_path"]) == hpc / "registry" / "staged"


def test_absolute_scan_path_becomes_a_beamline_collection_path(profile, tmp_path: Path) -> None:
    body = reconstruct_and_train_input(profile, tmp_path / "acquisition" / "scan_0001.h5")
    assert body["beamline"]["scan_path"] == "/scan_0001.h5" and body["scan_id"] == "scan_0001"


@pytest.mark.parametrize("scan, scan_id, field", [
    ("scan_0001.h5", "../../etc", "scan_id"),
    ("-rf.h5", None, "scan file name"),
    ("scan 0001.h5", None, "scan file name"),
])
def test_names_that_could_escape_are_refused(profile, scan: str, scan_id: str | None, field: str) -> None:
    for build in (reconstruct_and_train_input, reconstruct_input):
        with pytest.raises(InputError, match=f": {field}: "):
            build(profile, scan, scan_id=scan_id)
    with pytest.raises(InputError, match=": version: "):
        deploy_model_input(profile, "../v0001")
