"""The watcher sends the bundled flow's real input: valid against the flow's input schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from ptychoflow.local_site import prepare_local_site
from ptychoflow.profile import load_profile, write_local_profile
from ptychoflow.resources import flows_dir
from ptychoflow.watcher.journal import ScanRow
from ptychoflow.watcher.scheduler import build_run_body


def _row(path: str) -> ScanRow:
    fields = {name: None for name in ScanRow.__dataclass_fields__} if hasattr(ScanRow, "__dataclass_fields__") else {}
    fields.update(path=path, scan_id="scan_0007", checksum="ab" * 32)
    return ScanRow(**fields)


def test_body_for_reconstruct_and_train_matches_its_schema(tmp_path):
    write_local_profile(tmp_path)
    profile = load_profile(tmp_path)
    prepare_local_site(profile, start_engine=False)  # registers the bundled functions
    scan = str(profile.resolve(profile.beamline.path) / "scan_0007.h5")
    body = build_run_body(profile, _row(scan), "reconstruct_and_train")
    schema = json.loads((flows_dir() / "reconstruct_and_train.schema.json").read_text())
    jsonschema.validate(body, schema)
    assert body["beamline"]["scan_path"] == "/scan_0007.h5"
    assert body["hpc"]["scan_file"] == "scans/scan_0007.h5" and body["hpc"]["root"] == str(profile.resolve(Path("hpc")))
    assert set(body["functions"]) == {"reconstruct", "validate", "train", "activate"}
    assert body["watcher"]["checksum"] == "ab" * 32


def test_unknown_flow_gets_the_watcher_facts_only(tmp_path):
    write_local_profile(tmp_path)
    profile = load_profile(tmp_path)
    body = build_run_body(profile, _row("/data/scan_0001.h5"), "my_custom_flow")
    assert body["scan_path"] == "/data/scan_0001.h5" and "functions" not in body
