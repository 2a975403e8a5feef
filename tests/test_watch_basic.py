"""The watcher as a real process: scans while running, while stopped, growing, malformed, duplicate."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import h5py
import numpy as np

from watch_support import watch_backend  # noqa: F401 - the fixture
from watch_support import (
    INSTRUMENT, env, journal_rows, runs_by_scan, start_watcher, stop_watcher, wait_for, write_profile, write_scan,
)
from ptychoflow.scan.format import ScanWriter


def _states(profile, *names):
    rows = journal_rows(profile)
    return [rows.get(n, {}).get("state") for n in names]


def test_scans_while_running_and_while_stopped(watch_backend, tmp_path):
    profile = write_profile(tmp_path)
    acq = profile.resolve(profile.beamline.path)
    write_scan(acq / "scan_0001.h5")  # before the first start
    proc = start_watcher(profile, watch_backend)
    try:
        write_scan(acq / "scan_0002.h5")
        write_scan(acq / "scan_0003.h5")
        wait_for(lambda: _states(profile, "scan_0001.h5", "scan_0002.h5", "scan_0003.h5") == ["triggered"] * 3)
    finally:
        code, out = stop_watcher(proc)
    assert code == 0, out
    write_scan(acq / "scan_0004.h5")  # while stopped
    write_scan(acq / "scan_0005.h5")
    proc = start_watcher(profile, watch_backend)
    try:
        names = [f"scan_000{i}.h5" for i in range(1, 6)]
        wait_for(lambda: _states(profile, *names) == ["triggered"] * 5)
        time.sleep(0.5)  # nothing more must come
    finally:
        code, out = stop_watcher(proc)
    assert code == 0, out
    runs = runs_by_scan(profile, watch_backend)
    assert sorted(runs) == [f"scan_000{i}" for i in range(1, 6)]
    assert all(len(r) == 1 for r in runs.values())
    run = runs["scan_0004"][0]
    assert len(run.label) <= 64 and "2-ID-test" in run.label
    assert {"beamline:2-ID-test", "experiment:commissioning", "scan:scan_0004"} <= set(run.tags)
    body = run.output["body"] if run.output and "body" in run.output else None
    if body is not None:  # the test backend echoes the body
        assert body["scan_file"] == "scan_0004.h5" and body["scan_path"] == str(acq / "scan_0004.h5")
        assert len(body["checksum"]) == 64
    status = subprocess.run(
        [sys.executable, "-m", "ptychoflow", "watch", "status", "--json", "--profile", str(profile.root)],
        env=env(), capture_output=True, text=True, check=True,
    )
    info = json.loads(status.stdout)
    assert info["counts"]["running"] == 5 and info["latency_s"]["n"] == 5


def test_growing_scan_is_not_triggered_until_complete(watch_backend, tmp_path):
    profile = write_profile(tmp_path, settle_seconds=0.3)
    path = profile.resolve(profile.beamline.path) / "scan_0001.h5"
    proc = start_watcher(profile, watch_backend)
    try:
        time.sleep(1.0)  # let it start
        writer = ScanWriter(path, scan_id="scan_0001", frame_shape=(8, 8), instrument=INSTRUMENT)
        for i in range(8):  # grows for ~1.2 s, several settle delays
            writer.append(np.ones((8, 8), np.uint32), np.array([i * 1e-7, 0.0]))
            time.sleep(0.15)
        time.sleep(1.0)  # stable but not marked complete: still not a finished scan
        assert runs_by_scan(profile, watch_backend) == {}
        assert _states(profile, "scan_0001.h5") == ["seen"]
        writer.close()
        wait_for(lambda: _states(profile, "scan_0001.h5") == ["triggered"])
    finally:
        code, out = stop_watcher(proc)
    assert code == 0, out
    assert len(runs_by_scan(profile, watch_backend)["scan_0001"]) == 1


def test_malformed_scan_is_failed_with_reason_and_watcher_keeps_going(watch_backend, tmp_path):
    profile = write_profile(tmp_path)
    acq = profile.resolve(profile.beamline.path)
    proc = start_watcher(profile, watch_backend)
    try:
        with h5py.File(acq / "scan_0001.h5", "w") as f:  # marked complete, but no positions
            f.create_group("entry").attrs["complete"] = True
            f["entry/data/data"] = np.zeros((2, 8, 8), np.uint32)
        (acq / "scan_0002.h5").write_bytes(b"not an hdf5 file at all")
        (acq / "scan_0002.h5.complete").touch()  # completion by marker file
        write_scan(acq / "scan_0003.h5")
        wait_for(lambda: _states(profile, "scan_0001.h5", "scan_0002.h5", "scan_0003.h5")
                 == ["failed", "failed", "triggered"])
    finally:
        code, out = stop_watcher(proc)
    assert code == 0, out
    rows = journal_rows(profile)
    assert rows["scan_0001.h5"]["reason"] == "/entry/data/positions: missing dataset"
    assert "not a readable HDF5 file" in rows["scan_0002.h5"]["reason"]
    assert sorted(runs_by_scan(profile, watch_backend)) == ["scan_0003"]
    write_scan(acq / "scan_0001.h5")  # the operator fixes the file while the watcher is down
    proc = start_watcher(profile, watch_backend)
    try:
        wait_for(lambda: _states(profile, "scan_0001.h5", "scan_0002.h5") == ["triggered", "failed"])
        (acq / "scan_0002.h5.complete").unlink()
        write_scan(acq / "scan_0002.h5")  # ...or while it runs
        wait_for(lambda: _states(profile, "scan_0002.h5") == ["triggered"])
    finally:
        code, out = stop_watcher(proc)
    assert code == 0, out
    assert sorted(runs_by_scan(profile, watch_backend)) == ["scan_0001", "scan_0002", "scan_0003"]


def test_duplicate_copy_is_not_retriggered(watch_backend, tmp_path):
    profile = write_profile(tmp_path)
    acq = profile.resolve(profile.beamline.path)
    proc = start_watcher(profile, watch_backend)
    try:
        write_scan(acq / "scan_0001.h5")
        wait_for(lambda: _states(profile, "scan_0001.h5") == ["triggered"])
        shutil.copyfile(acq / "scan_0001.h5", acq / "scan_0001_copy.h5")
        wait_for(lambda: _states(profile, "scan_0001_copy.h5") == ["duplicate"])
    finally:
        code, out = stop_watcher(proc)
    assert code == 0, out
    rows = journal_rows(profile)
    assert rows["scan_0001_copy.h5"]["duplicate_of"] == str(acq / "scan_0001.h5")
    assert rows["scan_0001_copy.h5"]["checksum"] == rows["scan_0001.h5"]["checksum"]
    assert len(runs_by_scan(profile, watch_backend)["scan_0001"]) == 1
    assert len(watch_backend.open(profile).list_runs(limit=1000)) == 1


def test_poll_mode_for_nfs(watch_backend, tmp_path):
    profile = write_profile(tmp_path, poll=True, poll_interval_s=0.3)
    acq = profile.resolve(profile.beamline.path)
    write_scan(acq / "scan_0001.h5")
    proc = start_watcher(profile, watch_backend)
    try:
        time.sleep(0.5)
        write_scan(acq / "scan_0002.h5")
        wait_for(lambda: _states(profile, "scan_0001.h5", "scan_0002.h5") == ["triggered"] * 2)
    finally:
        code, out = stop_watcher(proc)
    assert code == 0, out
    assert "polling" in (profile.state_path / "watcher.log").read_text()
    assert all(len(r) == 1 for r in runs_by_scan(profile, watch_backend).values())


def test_in_process_service_in_a_thread(watch_backend, tmp_path):
    """How the demo can embed the watcher: a thread, request_stop(), no signal handlers."""
    import threading

    from watch_support import flow_file
    from ptychoflow.watcher import WatcherOptions, WatcherService

    profile = write_profile(tmp_path)
    service = WatcherService(profile, watch_backend.open(profile), WatcherOptions(flow_path=flow_file(profile)))
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(service.run(install_signals=False)))
    thread.start()
    try:
        write_scan(profile.resolve(profile.beamline.path) / "scan_0001.h5")
        wait_for(lambda: _states(profile, "scan_0001.h5") == ["triggered"])
    finally:
        service.request_stop()
        thread.join(10)
    assert result == [0]


def test_missing_acquisition_directory_is_one_line(watch_backend, tmp_path):
    profile = write_profile(tmp_path)
    shutil.rmtree(profile.resolve(profile.beamline.path))
    proc = start_watcher(profile, watch_backend)
    proc.wait(30)
    code, out = stop_watcher(proc)
    assert code == 2
    last = out.strip().splitlines()[-1]
    assert "ptychoflow.toml: beamline.path: " in last and last.endswith(": no such directory (not mounted yet?)")


def test_second_watcher_on_the_same_state_dir_is_refused(watch_backend, tmp_path):
    profile = write_profile(tmp_path)
    first = start_watcher(profile, watch_backend)
    try:
        wait_for(lambda: (profile.state_path / "watcher.log").exists())
        second = subprocess.run(
            [sys.executable, "-m", "ptychoflow", "watch", "--profile", str(profile.root), "--backend-factory",
             watch_backend.factory], env=env(), capture_output=True, text=True, timeout=30,
        )
        assert second.returncode == 2 and "another watcher is running" in second.stderr
        status = subprocess.run([sys.executable, "-m", "ptychoflow", "watch", "status", "--profile", str(profile.root)],
                                env=env(), capture_output=True, text=True, check=True)
        assert f"watcher running, pid {first.pid}" in status.stdout
    finally:
        code, out = stop_watcher(first)
    assert code == 0, out
