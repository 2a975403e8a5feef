"""The watcher: files that never become finished scans, and scans whose names would forge logs
or choose paths. Each is journalled with why it is not started and for how long, shown in
`watch status` and the dashboard, given up on after watcher.give_up_after_s (logged once),
and the watcher keeps going."""

from __future__ import annotations

import json
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import h5py
import pytest

from hostile_support import Tree, console, escaped, refused_with_reason
from ptychoflow.dashboard.sources import journal_rows as dashboard_rows
from ptychoflow.profile import Profile
from ptychoflow.watcher import WatcherOptions, WatcherService
from watch_support import (
    DEFAULT_FACTORY, BackendUnderTest, flow_file, journal_rows, make_backend, runs_by_scan, wait_for, write_profile,
    write_scan,
)

OLD = 2 * 3600  # seconds: older than give_up_after_s below


@contextmanager
def watching(profile: Profile) -> Iterator[WatcherService]:
    """A watcher in a thread (as the demo embeds it), journal and log in the profile's state dir."""
    options = WatcherOptions(flow_path=flow_file(profile), incomplete_recheck_s=0.2, rescan_s=0.5)
    service = WatcherService(profile, make_backend(profile), options)
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(service.run(install_signals=False)), daemon=True)
    thread.start()
    try:
        yield service
    finally:
        service.request_stop()
        thread.join(20)
    assert result == [0], "the watcher did not stop cleanly"


def acquisition(profile: Profile) -> Path:
    return profile.resolve(profile.beamline.path)


def age(path: Path, seconds: float) -> Path:
    """Make `path` look unchanged for `seconds`."""
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def not_hdf5(path: Path) -> None:
    path.write_text("just text, named like a scan\n")


def empty(path: Path) -> None:
    path.write_bytes(b"")


def incomplete(path: Path) -> None:
    write_scan(path)
    with h5py.File(path, "a") as f:
        f["entry"].attrs["complete"] = False


def no_entry(path: Path) -> None:
    with h5py.File(path, "w") as f:
        f["something"] = [1, 2, 3]


def truncated(path: Path) -> None:
    write_scan(path, frames=6, size=32)
    path.write_bytes(path.read_bytes()[:3000])


WAITING = {  # how the file is made, the reason the watcher must give
    "not HDF5": (not_hdf5, "not HDF5"),
    "empty file": (empty, "empty file (0 bytes)"),
    "incomplete scan": (incomplete, "incomplete: /entry@complete is not set"),
    "HDF5 but not a scan": (no_entry, "not a scan: unknown scan format"),
    "truncated HDF5": (truncated, "unreadable: not a readable HDF5 file (truncated or corrupt?)"),
}


@pytest.mark.parametrize("make, reason", WAITING.values(), ids=WAITING.keys())
def test_a_file_that_is_not_a_finished_scan_says_why_and_for_how_long(tmp_path, make, reason):
    profile = write_profile(tmp_path, give_up_after_s=3600)
    path = acquisition(profile) / "scan_0001.h5"
    make(path)
    age(path, 600)
    tree = Tree(tmp_path)
    with watching(profile):
        row = wait_for(lambda: (r := journal_rows(profile).get(path.name)) and r["reason"] and r)
    refused_with_reason(row["state"] == "seen" and reason in row["reason"], f"journal row {row}")
    status = console("watch", "status", "--profile", str(tmp_path))
    line = next(line for line in status.stdout.splitlines() if path.name in line and "waiting" in line)
    assert reason.split(":")[0] in line and ("10 min" in line or "11 min" in line), status.stdout
    shown = json.loads(console("watch", "status", "--profile", str(tmp_path), "--json").stdout)
    assert shown["not_started"][0]["reason"] == row["reason"] and shown["not_started"][0]["age_s"] >= 600
    on_dashboard = next(r for r in dashboard_rows(profile.state_path) if r["scan"] == path.name)
    assert on_dashboard["reason"] == row["reason"] and on_dashboard["age"] in ("10 min", "11 min")
    tree.contained(profile.state_path)


def test_a_thousand_empty_files_are_given_up_once_and_the_watcher_moves_on(tmp_path):
    """The reported case: 1,000 empty files stayed "seen" for ever, with no reason anywhere."""
    profile = write_profile(tmp_path, give_up_after_s=3600)
    for i in range(1000):
        path = acquisition(profile) / f"scan_{i:05d}.h5"
        path.write_bytes(b"")
        age(path, OLD)
    with watching(profile):
        wait_for(lambda: sum(r["state"] == "gave_up" for r in journal_rows(profile).values()) == 1000, timeout=60)
        write_scan(acquisition(profile) / "scan_good.h5")  # the watcher still starts real scans
        wait_for(lambda: journal_rows(profile).get("scan_good.h5", {}).get("state") == "triggered", timeout=30)
        time.sleep(1.5)  # several rescans: nothing is given up twice
    log = (profile.state_path / "watcher.log").read_text()
    gave_up = [line for line in log.splitlines() if "gave up on" in line]
    assert len(gave_up) == 1000 and len({line.split("gave up on ")[1].split(":")[0] for line in gave_up}) == 1000
    rows = journal_rows(profile)
    refused_with_reason(all("empty file (0 bytes)" in r["reason"] for n, r in rows.items() if n != "scan_good.h5"),
                        "every empty file says why it was given up")
    status = console("watch", "status", "--profile", str(tmp_path)).stdout
    assert "gave_up 1000" in status and "gave up" in status


def test_a_given_up_file_that_changes_is_reconsidered(tmp_path):
    profile = write_profile(tmp_path, give_up_after_s=3600)
    path = acquisition(profile) / "scan_0001.h5"
    not_hdf5(path)
    age(path, OLD)
    with watching(profile):
        wait_for(lambda: journal_rows(profile).get(path.name, {}).get("state") == "gave_up")
        write_scan(path)  # the detector finally wrote it
        wait_for(lambda: journal_rows(profile).get(path.name, {}).get("state") == "triggered", timeout=30)
    refused_with_reason(True, "reconsidered after a change")


FORGED = {  # /entry@scan_id -> the journal's reason
    "scan_id with newline": ("s1\n2026-01-01 00:00:00 INFO ptychoflow.watcher: queued /etc/passwd", "/entry@scan_id"),
    "scan_id with ANSI escapes": ("\x1b[2J\x1b[31mowned", "/entry@scan_id"),
    "scan_id ../": ("../../hpc/registry", "/entry@scan_id"),
    "scan_id absolute": ("/etc/cron.d/job", "/entry@scan_id"),
}


@pytest.mark.parametrize("scan_id, field", FORGED.values(), ids=FORGED.keys())
def test_a_forged_scan_id_is_refused_without_forging_the_log(tmp_path, scan_id, field):
    profile = write_profile(tmp_path)
    path = write_scan(acquisition(profile) / "scan_0001.h5")
    with h5py.File(path, "a") as f:
        f["entry"].attrs["scan_id"] = scan_id
    with watching(profile):
        row = wait_for(lambda: (r := journal_rows(profile).get(path.name)) and r["state"] == "failed" and r)
    refused_with_reason(field in row["reason"] and not runs_by_scan(profile, BackendUnderTest(DEFAULT_FACTORY)),
                        f"not refused: {row}")
    log = (profile.state_path / "watcher.log").read_text()
    for shown in (log, console("watch", "status", "--profile", str(tmp_path)).stdout):
        assert "\x1b" not in shown, "an escape sequence reached the log or the terminal"
        assert not any(line.startswith("2026-01-01 00:00:00") for line in shown.splitlines()), "a forged log line"


UNSAFE_FILE_NAMES = {  # matches scan_*.h5, but no flow path may carry it
    "a space": "scan_a b.h5",
    "ANSI escapes": "scan_\x1b[2J\x1b[31mx.h5",
}


@pytest.mark.parametrize("name", UNSAFE_FILE_NAMES.values(), ids=UNSAFE_FILE_NAMES.keys())
def test_a_file_name_the_flow_paths_refuse_is_failed_not_fatal(tmp_path, name):
    profile = write_profile(tmp_path)
    write_scan(acquisition(profile) / name, scan_id="ab")
    with watching(profile):
        row = wait_for(lambda: (r := journal_rows(profile).get(name)) and r["state"] == "failed" and r)
        write_scan(acquisition(profile) / "scan_0002.h5")
        wait_for(lambda: journal_rows(profile).get("scan_0002.h5", {}).get("state") == "triggered", timeout=30)
    refused_with_reason("file name" in row["reason"], f"not refused: {row}")
    escaped(console("watch", "status", "--profile", str(tmp_path)).stdout, name)
    escaped("\n".join(r["scan"] for r in dashboard_rows(profile.state_path)), name)
