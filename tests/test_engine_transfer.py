"""Local Transfer family: atomic copies that honour verify_checksum and sync_level as Globus
Transfer does (resume, what an existing destination gets, corruption in flight), recursive
copies, delete/ls/stat/mkdir."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from engine_helpers import chain, make_env, run_flow
from ptychoflow.flowengine.providers import copying

T = "https://transfer.actions.globus.org"


def transfer_flow(items: list[dict], *, verify_checksum: bool | None = True, sync_level: str | int | None = "checksum",
                  **extra) -> dict:
    """One Transfer state; by default with the options the bundled flows send (verified, checksum sync)."""
    options = {key: value for key, value in (("verify_checksum", verify_checksum), ("sync_level", sync_level))
               if value is not None}
    return chain(("T", {"Type": "Action", "ActionUrl": f"{T}/transfer", "ResultPath": "$.T", "Parameters": {
        "source_endpoint": "beamline", "destination_endpoint": "hpc", "DATA": items, **options}, **extra}))


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


def _existing_destination(tmp_path: Path, *, destination: bytes, newer: bool) -> None:
    (tmp_path / "beamline").mkdir()
    source = tmp_path / "beamline" / "f.bin"
    source.write_bytes(b"source bytes")
    (tmp_path / "hpc").mkdir()
    (tmp_path / "hpc" / "f.bin").write_bytes(destination)
    then = time.time() - 100
    os.utime(source if newer else tmp_path / "hpc" / "f.bin", (then, then))


@pytest.mark.parametrize("sync_level, destination, newer, kept", [
    (None, b"source bytes", True, False),        # no sync level: Transfer always copies
    ("exists", b"other", False, True),           # any existing file is left alone
    ("size", b"same length!", False, True),      # same size: kept, even with other bytes
    ("size", b"other", False, False),
    ("mtime", b"newer edit", True, True),        # only an older destination is replaced
    ("mtime", b"older edit", False, False),
    ("checksum", b"newer edit", True, False),    # different bytes: replaced, whatever the times
    ("checksum", b"source bytes", False, True),
    (3, b"source bytes", False, True),           # the API's numbers work too
])
def test_sync_level_decides_what_an_existing_destination_gets(tmp_path: Path, sync_level, destination, newer, kept) -> None:
    _existing_destination(tmp_path, destination=destination, newer=newer)
    run, _ = run_flow(tmp_path, transfer_flow([{"source_path": "/f.bin", "destination_path": "/f.bin"}], sync_level=sync_level))
    assert run.status.value == "SUCCEEDED", run.error
    details = run.output["T"]["details"]
    assert (tmp_path / "hpc" / "f.bin").read_bytes() == (destination if kept else b"source bytes")
    assert (details["files_skipped"], details["files_transferred"]) == ((1, 0) if kept else (0, 1))


def test_bad_sync_level_or_verify_flag_cannot_run(tmp_path: Path) -> None:
    for options in ({"sync_level": "newest"}, {"verify_checksum": "yes"}):
        run, _ = run_flow(tmp_path, transfer_flow([{"source_path": "/f.bin", "destination_path": "/f.bin"}], **{
            "verify_checksum": True, "sync_level": None, **options}))
        assert run.status.value == "FAILED" and ("sync_level" in run.error or "verify_checksum" in run.error), run.error


def test_unverified_copies_are_not_read_back(tmp_path: Path, monkeypatch) -> None:
    """verify_checksum false (Transfer's default): a corrupted copy is not caught, as on Globus."""
    hook, calls = _corrupt(times=1)
    monkeypatch.setattr(copying, "after_write_hooks", [hook])
    (tmp_path / "beamline").mkdir()
    (tmp_path / "beamline" / "f.bin").write_bytes(os.urandom(50_000))
    run, _ = run_flow(tmp_path, transfer_flow([{"source_path": "/f.bin", "destination_path": "/f.bin"}],
                                              verify_checksum=None, sync_level=None))
    details = run.output["T"]["details"]
    assert run.status.value == "SUCCEEDED" and details["verify_checksum"] is False and details["checksum_retries"] == 0
    assert (tmp_path / "hpc" / "f.bin").read_bytes() != (tmp_path / "beamline" / "f.bin").read_bytes()


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
                 "Parameters": {"endpoint": "edge", "recursive": True, "DATA": [{"path": "/models"}]}}),
        ("Gone", {"Type": "Action", "ActionUrl": f"{T}/stat", "ResultPath": "$.gone",
                  "Parameters": {"endpoint_id": "edge", "path": "/models"}}),
    )
    run, _ = run_flow(tmp_path, flow)
    assert run.status.value == "SUCCEEDED", run.error
    listing = run.output["ls"]["details"]
    assert [e["name"] for e in listing["DATA"]] == ["v1"] and listing["total"] == listing["length"] == 1
    assert listing["DATA_TYPE"] == "file_list" and listing["DATA"][0]["DATA_TYPE"] == "file"
    stat = run.output["stat"]["details"]
    assert stat["type"] == "dir" and len(stat["permissions"]) == 4 and stat["user"]
    assert run.output["del"]["details"]["files_deleted"] == 1
    # a missing path is a successful stat that says NotFound (the Globus move example reads it so)
    assert run.output["gone"]["status"] == "SUCCEEDED" and run.output["gone"]["details"]["code"] == "NotFound"
    assert not (tmp_path / "edge" / "models").exists()


def test_ls_pages_with_limit_and_offset(tmp_path: Path) -> None:
    for name in "abcde":
        (tmp_path / "edge").mkdir(exist_ok=True)
        (tmp_path / "edge" / name).write_text(name)
    flow = chain(("Ls", {"Type": "Action", "ActionUrl": f"{T}/ls", "ResultPath": "$.ls",
                         "Parameters": {"endpoint_id": "edge", "path": "/", "limit": 2, "offset": 1}}))
    run, _ = run_flow(tmp_path, flow)
    details = run.output["ls"]["details"]
    assert [e["name"] for e in details["DATA"]] == ["b", "c"] and details["length"] == 2 and details["total"] == 5


def test_delete_takes_endpoint_as_the_delete_action_does(tmp_path: Path) -> None:
    flow = chain(("Del", {"Type": "Action", "ActionUrl": f"{T}/delete", "ResultPath": "$.del",
                          "Parameters": {"endpoint_id": "edge", "DATA": [{"path": "/x"}]}}))
    run, _ = run_flow(tmp_path, flow)
    assert run.status.value == "FAILED"
    assert "Del: ActionUnableToRun: request body: the Delete action takes the collection as 'endpoint'" in run.error


def test_a_cancelled_transfer_stops_at_a_file_boundary(tmp_path: Path, monkeypatch) -> None:
    """The copy asks before each file; once cancelled it stops there: complete files stay,
    no partial file exists under a final name, and no hidden temporary is left behind."""
    from ptychoflow.flowengine.providers.transfer import TransferProvider

    source = tmp_path / "beamline" / "many"
    source.mkdir(parents=True)
    for i in range(6):
        (source / f"f{i}.bin").write_bytes(os.urandom(50_000))
    env = make_env(tmp_path)
    provider = TransferProvider(env)
    copy = copying.copy_hashing
    written: list[Path] = []

    def copy_then_cancel_after_two(source_file: Path, temporary: Path) -> str:
        digest = copy(source_file, temporary)
        written.append(temporary)
        if len(written) == 2:
            provider.cancel("a.1")
        return digest

    monkeypatch.setattr(copying, "copy_hashing", copy_then_cancel_after_two)
    body = {"source_endpoint": "beamline", "destination_endpoint": "hpc",
            "DATA": [{"source_path": "/many", "destination_path": "/many", "recursive": True}]}
    try:
        provider.run("a.1", body)
        deadline = time.monotonic() + 20
        while provider.status("a.1")["status"] == "ACTIVE" and time.monotonic() < deadline:
            time.sleep(0.02)
        status = provider.status("a.1")
    finally:
        provider.close()
    assert status["status"] == "FAILED" and status["details"]["nice_status"] == "CANCELED"
    copied = sorted(p.name for p in (tmp_path / "hpc" / "many").iterdir())
    assert copied == ["f0.bin", "f1.bin"]  # the two files begun before the cancel are complete
    for name in copied:
        assert (tmp_path / "hpc" / "many" / name).read_bytes() == (source / name).read_bytes()
    assert leftovers(tmp_path / "hpc") == []


def test_finished_actions_are_recalled_not_repeated_after_a_restart(tmp_path: Path) -> None:
    """A new provider (a restarted engine) returns the stored outcome of a finished action."""
    from ptychoflow.flowengine.providers.transfer import MkdirProvider

    env = make_env(tmp_path)
    body = {"endpoint_id": "edge", "path": "/d"}
    first = MkdirProvider(env)
    first.run("r.1", body)
    deadline = time.monotonic() + 10
    while first.status("r.1")["status"] == "ACTIVE" and time.monotonic() < deadline:
        time.sleep(0.01)
    first.close()
    (tmp_path / "edge" / "d").rmdir()  # if the action ran again, it would make the directory again
    second = MkdirProvider(env)
    try:
        assert second.run("r.1", body)["status"] == "SUCCEEDED"
        assert not (tmp_path / "edge" / "d").exists()
        second.release("r.1")  # the engine committed the outcome: the record goes
        assert not list((env.state_dir / "actions").iterdir())
    finally:
        second.close()
