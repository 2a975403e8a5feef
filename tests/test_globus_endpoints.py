"""Transfer helpers and ``ptychoflow endpoints list|status`` against canned Globus responses."""

from __future__ import annotations

import json

import globus_sdk
import pytest
from globus_sdk.testing import RegisteredResponse, get_response_set, load_response, register_response_set

from globus_support import (  # noqa: F401
    BEAMLINE_COLLECTION, CLIENT_ID, EDGE_ENDPOINT, HPC_COLLECTION, HPC_ENDPOINT, SECRET_TOKEN,
    make_backend, make_profile, mocked_http, seed_tokens, write_profile,
)
from ptychoflow.backends.globus.auth import OwnerOnlyJSONTokenStorage, token_file
from ptychoflow.cli.main import main

TASK_ID = "42a6c2b4-5e9a-11ef-8f3a-0242ac110002"
register_response_set(
    "ptychoflow.transfer.get_task",
    {
        "default": {
            "service": "transfer",
            "path": f"/v0.10/task/{TASK_ID}",
            "json": {"DATA_TYPE": "task", "task_id": TASK_ID, "status": "ACTIVE", "nice_status": "Queued",
                     "label": "scan_0001", "files": 3, "files_transferred": 1, "bytes_transferred": 1024, "faults": 0},
        },
        "failed": {
            "service": "transfer",
            "path": f"/v0.10/task/{TASK_ID}",
            "json": {"DATA_TYPE": "task", "task_id": TASK_ID, "status": "FAILED", "nice_status": "PERMISSION_DENIED", "faults": 4},
        },
    },
    metadata={"task_id": TASK_ID},
)
COLLECTION_DOC = get_response_set(globus_sdk.TransferClient.get_endpoint).lookup("default").json


def test_transfer_task_status(tmp_path):
    load_response("ptychoflow.transfer.get_task")
    status = make_backend(make_profile(tmp_path)).transfer_task(TASK_ID)
    assert status["status"] == "ACTIVE" and status["files_transferred"] == 1
    load_response("ptychoflow.transfer.get_task", case="failed")
    assert make_backend(make_profile(tmp_path)).transfer_task(TASK_ID)["nice_status"] == "PERMISSION_DENIED"


def test_collection_status(tmp_path):
    meta = load_response(globus_sdk.TransferClient.get_endpoint).metadata
    status = make_backend(make_profile(tmp_path)).collection_status(meta["endpoint_id"])
    assert status["display_name"] == "myserver" and status["status"] == "ok"


def cli(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
        raise SystemExit(0)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def test_endpoints_list_json_needs_no_network(tmp_path, capsys):
    write_profile(tmp_path)
    code, out, _ = cli(["endpoints", "list", "--profile", str(tmp_path), "--json"], capsys)
    rows = json.loads(out)
    assert code == 0
    assert [(r["site"], r["kind"], r["id"]) for r in rows] == [
        ("beamline", "collection", BEAMLINE_COLLECTION),
        ("hpc", "compute", HPC_ENDPOINT),
        ("hpc", "collection", HPC_COLLECTION),
        ("edge", "compute", EDGE_ENDPOINT),
    ]


def test_endpoints_status_reports_each_row(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PTYCHOFLOW_TOKEN_DIR", str(tmp_path / "tokens"))
    write_profile(tmp_path)
    seed_tokens(OwnerOnlyJSONTokenStorage(token_file(), namespace=CLIENT_ID))
    status_doc = get_response_set(globus_sdk.ComputeClientV2.get_endpoint_status).lookup("default").json
    RegisteredResponse(service="compute", path=f"/v2/endpoints/{HPC_ENDPOINT}/status", json=status_doc).add()
    RegisteredResponse(service="compute", path=f"/v2/endpoints/{EDGE_ENDPOINT}/status", status=404,
                       json={"code": "ENDPOINT_NOT_FOUND", "reason": "no such endpoint"}).add()
    for collection in (BEAMLINE_COLLECTION, HPC_COLLECTION):
        RegisteredResponse(service="transfer", path=f"/v0.10/endpoint/{collection}", json=dict(COLLECTION_DOC, id=collection)).add()

    code, out, err = cli(["endpoints", "status", "--profile", str(tmp_path), "--json"], capsys)

    assert code == 0, err
    rows = {(r["site"], r["kind"]): r for r in json.loads(out)}
    assert rows[("hpc", "compute")]["status"] == "online"
    assert rows[("edge", "compute")]["status"] == "error" and "404" in rows[("edge", "compute")]["detail"]
    assert rows[("beamline", "collection")]["detail"].startswith("myserver")
    assert SECRET_TOKEN not in out + err


def test_help_has_examples(capsys):
    for command in (["login"], ["logout"], ["whoami"], ["endpoints"], ["endpoints", "status"]):
        code, out, _ = cli([*command, "--help"], capsys)
        assert code == 0 and "Example" in out


def test_endpoints_status_without_login_says_so_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PTYCHOFLOW_TOKEN_DIR", str(tmp_path / "tokens"))
    write_profile(tmp_path)
    code, out, err = cli(["endpoints", "status", "--profile", str(tmp_path)], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "ptychoflow login" in err
