"""The watcher triggers on scans of every layout the reader registry knows: an Eiger master
(written to the public layout, bitshuffle data files, APS position file) starts exactly one
run once its data files are all there, with the scan id the reader gives it."""

from __future__ import annotations

import os

import numpy as np

from foreign_files import write_eiger
from ptychoflow.profile import load_profile
from watch_support import watch_backend  # noqa: F401 - the fixture
from watch_support import journal_rows, runs_by_scan, start_watcher, stop_watcher, wait_for, write_profile


def _eiger_profile(tmp_path):
    profile = write_profile(tmp_path)
    path = profile.root / "ptychoflow.toml"
    path.write_text(path.read_text().replace('patterns = [\n    "scan_*.h5",\n]', 'patterns = [\n    "*_master.h5",\n]')
                    .replace('patterns = ["scan_*.h5"]', 'patterns = ["*_master.h5"]'))
    profile = load_profile(path)
    assert profile.beamline.patterns == ["*_master.h5"]
    return profile


def test_eiger_scan_triggers_once_complete(watch_backend, tmp_path, small_scan):
    profile = _eiger_profile(tmp_path)
    acq = profile.resolve(profile.beamline.path)
    frames, positions = np.asarray(small_scan.scan.data, np.uint32), small_scan.scan.positions_m
    proc = start_watcher(profile, watch_backend)
    try:
        write_eiger(acq, "fly042", frames, positions, frames_per_file=30)
        missing = acq / "fly043_data_000002.h5"
        master = write_eiger(acq, "fly043", frames, positions, frames_per_file=30)
        missing.rename(acq / "held_back.h5")  # the detector has not written this data file yet
        os.utime(master)
        wait_for(lambda: journal_rows(profile).get("fly042_master.h5", {}).get("state") == "triggered")
        assert "fly042" in runs_by_scan(profile, watch_backend)
        assert journal_rows(profile).get("fly043_master.h5", {}).get("state") != "triggered"
        (acq / "held_back.h5").rename(missing)
        os.utime(master)  # the master changes as the detector closes it
        wait_for(lambda: journal_rows(profile).get("fly043_master.h5", {}).get("state") == "triggered")
    finally:
        code, out = stop_watcher(proc)
    assert code == 0, out
    assert sorted(runs_by_scan(profile, watch_backend)) == ["fly042", "fly043"]
    assert not any("data_0000" in name for name in journal_rows(profile))  # data files never trigger
