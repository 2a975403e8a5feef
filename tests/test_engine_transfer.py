"""Local Transfer family: checksummed atomic copy, resume, newer-destination refusal,
corruption in flight, recursive copies, delete/ls/stat/mkdir."""

from __future__ import annotations

import os
import time
from pathlib import Path


from engine_helpers import chain, make_env, run_flow
from ptychoflow.flowengine.providers import copying

T = "https://transfer.actions.globus.org"


def transfer_flow(items: list[dict], **extra) -> dict:
    return chain(("T", {"Type": "Action", "ActionUrl": f"{T}/transfer", "ResultPath": "$.T", "Parameters": {
        "source_endpoint": "beamline", "destination_endpoint": "hpc", "DATA": items}, **extra}))


def leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.rglob("*") if p.name.endswith(".part")]


def test_copy_file_and_directory_with_checksums(tmp_path: Path) -> None:
    beamline = tmp_path / "beamline"
    (beamline / "scan" / "sub").mkdir(parents=True)
    (beamline / "scan_0001.h5").write_bytes(os.urandom(300_000))
    (beamline / "scan" / "a.bin").write_bytes(b"a" * 10)
    (beamline / "scan" / "sub" / "b.bin").write_bytes(b"b" * 20)
    run, _ = run_flow(tmp_path, transfer_flow([
        {"source_path": "/scan_0001.h5", "destination_path": "/scans/scan_0001.h5"},
        {"source_path": "/~/scan", "destination_path": "~/tree", "recursive": True},
    ]))
    details = run.output["T"]["details"]
    assert run.status.value == "SUCCEEDED", run.error
    assert details["status"] == "SUCCEEDED" and details["files_transferred"] == 3 and details["bytes_transferred"] == 300_030
    hpc = tmp_path / "hpc"
    assert (hpc / "scans" / "scan_0001.h5").read_bytes() == (beamline / "scan_0001.h5").read_bytes()
    assert (hpc / "tree" / "sub" / "b.bin").read_bytes() == b"b" * 20
    assert not leftovers(hpc)


def test_resume_skips_files_that_already_match(tmp_path: Path) -> None:
    (tmp_path / "beamline").mkdir()
    (tmp_path / "beamline" / "f.bin").write_bytes(b"x" * 1000)
    (tmp_path / "hpc").mkdir()
    (tmp_path / "hpc" / "f.bin").write_bytes(b"x" * 1000)
    run, _ = run_flow(tmp_path, transfer_flow([{"source_path": "/f.bin", "destination_path": "/f.bin"}]))
    assert run.output["T"]["details"]["files_skipped"] == 1
    assert run.output["T"]["details"]["files_transferred"] == 0


def test_a_newer_different_destination_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "beamline").mkdir()
    source = tmp_path / "beamline" / "f.bin"
    source.write_bytes(b"old source")
    os.utime(source, (time.time() - 100, time.time() - 100))
    (tmp_path / "hpc").mkdir()
    (tmp_path / "hpc" / "f.bin").write_bytes(b"newer edit on HPC")
    run, _ = run_flow(tmp_path, transfer_flow([{"source_path": "/f.bin", "destination_path": "/f.bin"}]))
    assert run.status.value == "FAILED"
    assert "destination differs from" in run.error and "refusing to overwrite" in run.error
    assert (tmp_path / "hpc" / "f.bin").read_bytes() == b"newer edit on HPC"


def _corrupt(times: int):
    calls = {"n": 0}

    def hook(temporary: Path) -> None:
        if calls["n"] < times:
            calls["n"] += 1
            with open(temporary, "r+b") as handle:
                handle.seek(5)
                handle.write(b"\x00CORRUPT\x00")

    return hook, calls


def test_corruption_in_flight_is_detected_and_retried(tmp_path: Path, monkeypatch) -> None:
    hook, calls = _corrupt(times=1)
    monkeypatch.setattr(copying, "after_write_hooks", [hook])
    (tmp_path / "beamline").mkdir()
    (tmp_path / "beamline" / "f.bin").write_bytes(os.urandom(50_000))
    run, _ = run_flow(tmp_path, transfer_flow([{"source_path": "/f.bin", "destination_path": "/f.bin"}]))
    assert run.status.value == "SUCCEEDED" and calls["n"] == 1
    assert run.output["T"]["details"]["checksum_retries"] == 1
    assert (tmp_path / "hpc" / "f.bin").read_bytes() == (tmp_path / "beamline" / "f.bin").read_bytes()


def test_persistent_corruption_fails_clearly_and_leaves_nothing_half_written(tmp_path: Path, monkeypatch) -> None:
    hook, calls = _corrupt(times=99)
    monkeypatch.setattr(copying, "after_write_hooks", [hook])
    (tmp_path / "beamline").mkdir()
    (tmp_path / "beamline" / "f.bin").write_bytes(os.urandom(50_000))
    flow = transfer_flow([{"source_path": "/f.bin", "destination_path": "/out/f.bin"}],
                         Catch=[{"ErrorEquals": ["ActionFailedException"], "ResultPath": "$.err", "Next": "Report"}],
                         Next="Report")
    flow["States"]["Report"] = {"Type": "Pass", "End": True}
    run, _ = run_flow(tmp_path, flow)
    assert calls["n"] == copying.VERIFY_ATTEMPTS
    assert "VERIFY_CHECKSUM" in run.output["err"]["Cause"] and "sha256 of the copy did not match" in run.output["err"]["Cause"]
    assert not (tmp_path / "hpc" / "out" / "f.bin").exists()
    assert not leftovers(tmp_path / "hpc")


def test_unknown_collection_and_escaping_paths_cannot_run(tmp_path: Path) -> None:
    flow = transfer_flow([{"source_path": "/../../etc/passwd", "destination_path": "/x"}])
    run, _ = run_flow(tmp_path, flow)
    assert "ActionUnableToRun" in run.error and "escapes collection" in run.error
    flow["States"]["T"]["Parameters"]["source_endpoint"] = "mars"
    run, _ = run_flow(tmp_path, flow)
    assert "unknown local collection 'mars'" in run.error


def test_collection_ids_from_the_profile_map_to_site_directories(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    env.collections["0000-beam"] = tmp_path / "beamline"
    (tmp_path / "beamline" / "f").write_text("hi")
    flow = transfer_flow([{"source_path": "/f", "destination_path": "/g"}])
    flow["States"]["T"]["Parameters"]["source_endpoint"] = "0000-beam"
    run, _ = run_flow(tmp_path, flow, env=env)
    assert (tmp_path / "hpc" / "g").read_text() == "hi"


def test_mkdir_ls_stat_delete(tmp_path: Path) -> None:
    flow = chain(
        ("Mk", {"Type": "Action", "ActionUrl": f"{T}/mkdir", "ResultPath": "$.mk",
                "Parameters": {"endpoint_id": "edge", "path": "/models/v1"}}),
        ("Ls", {"Type": "Action", "ActionUrl": f"{T}/ls", "ResultPath": "$.ls",
                "Parameters": {"endpoint_id": "edge", "path": "/models"}}),
        ("Stat", {"Type": "Action", "ActionUrl": f"{T}/stat", "ResultPath": "$.stat",
                  "Parameters": {"endpoint_id": "edge", "path": "/models/v1"}}),
        ("Del", {"Type": "Action", "ActionUrl": f"{T}/delete", "ResultPath": "$.del",
                 "Parameters": {"endpoint_id": "edge", "recursive": True, "DATA": [{"path": "/models"}]}}),
        ("Gone", {"Type": "Action", "ActionUrl": f"{T}/stat", "ResultPath": "$.gone", "ExceptionOnActionFailure": False,
                  "Parameters": {"endpoint_id": "edge", "path": "/models"}}),
    )
    run, _ = run_flow(tmp_path, flow)
    assert run.status.value == "SUCCEEDED", run.error
    assert [e["name"] for e in run.output["ls"]["details"]["DATA"]] == ["v1"]
    assert run.output["stat"]["details"]["type"] == "dir"
    assert run.output["del"]["details"]["files_deleted"] == 1
    assert run.output["gone"]["status"] == "FAILED"
    assert run.output["gone"]["details"]["nice_status"] == "FILE_NOT_FOUND"
    assert not (tmp_path / "edge" / "models").exists()
