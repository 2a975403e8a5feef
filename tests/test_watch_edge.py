"""Odd entries in the acquisition directory never crash the watcher."""

from __future__ import annotations

import multiprocessing
import os
import time

import numpy as np

from watch_support import watch_backend  # noqa: F401 - the fixture
from watch_support import (
    INSTRUMENT, flow_file, journal_rows, run_with_denied_reads, runs_by_scan, start_watcher, stop_watcher,
    wait_for, write_profile, write_scan,
)
from ptychoflow.scan.format import ScanWriter


def _state(profile, name):
    return journal_rows(profile).get(name, {}).get("state")


def test_symlinks_fifo_and_deleted_before_settled(watch_backend, tmp_path):
    profile = write_profile(tmp_path, settle_seconds=1.0)
    acq = profile.resolve(profile.beamline.path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = start_watcher(profile, watch_backend)
    try:
        write_scan(elsewhere / "real.h5", scan_id="scan_0001")
        os.symlink(elsewhere / "real.h5", acq / "scan_0001.h5")  # followed to a regular file
        os.symlink(elsewhere / "missing.h5", acq / "scan_0002.h5")  # dangling
        os.mkfifo(acq / "scan_0003.h5")  # opening it would block: must never be opened
        write_scan(acq / "scan_0004.h5")  # complete, but deleted before it settles
        growing = ScanWriter(acq / "scan_0005.h5", scan_id="scan_0005", frame_shape=(8, 8), instrument=INSTRUMENT)
        growing.append(np.ones((8, 8), np.uint32), np.zeros(2))
        (acq / "scan_0005.h5").unlink()  # deleted while still growing
        growing.close(complete=False)
        (acq / "scan_0004.h5").unlink()
        write_scan(acq / "scan_0006.h5")  # the watcher keeps going
        wait_for(lambda: [_state(profile, f"scan_000{i}.h5") for i in (1, 2, 3, 6)]
                 == ["triggered", "skipped", "skipped", "triggered"])
        time.sleep(1.5)  # past the settle delay of the deleted ones
        assert proc.poll() is None
    finally:
        code, out = stop_watcher(proc)
    assert code == 0, out
    rows = journal_rows(profile)
    assert rows["scan_0002.h5"]["reason"] == f"dangling symlink -> {elsewhere / 'missing.h5'}"
    assert "not a regular file" in rows["scan_0003.h5"]["reason"]
    assert "scan_0004.h5" not in rows and "scan_0005.h5" not in rows  # forgotten quietly
    assert sorted(runs_by_scan(profile, watch_backend)) == ["scan_0001", "scan_0006"]


def test_permission_denied_is_failed_with_reason(watch_backend, tmp_path):
    profile = write_profile(tmp_path)
    acq = profile.resolve(profile.beamline.path)
    ctx = multiprocessing.get_context("spawn")
    child = ctx.Process(target=run_with_denied_reads,
                        args=(str(profile.root / "ptychoflow.toml"), str(flow_file(profile)), "denied",
                              watch_backend.factory))
    child.start()
    try:
        write_scan(acq / "scan_denied.h5")
        write_scan(acq / "scan_0002.h5")
        wait_for(lambda: [_state(profile, "scan_denied.h5"), _state(profile, "scan_0002.h5")]
                 == ["failed", "triggered"])
    finally:
        child.terminate()  # SIGTERM: graceful
        child.join(15)
    assert child.exitcode == 0
    assert journal_rows(profile)["scan_denied.h5"]["reason"] == "permission denied: Permission denied"
    assert sorted(runs_by_scan(profile, watch_backend)) == ["scan_0002"]
