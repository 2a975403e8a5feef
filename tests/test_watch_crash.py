"""kill -9 at random moments during a burst of 200 scans: every scan triggered exactly once."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import threading
import time

import pytest

from watch_support import watch_backend  # noqa: F401 - the fixture
from watch_support import (
    journal_rows, runs_by_scan, start_watcher, stop_watcher, wait_for, write_profile,
    write_scan,
)

N_SCANS = 200
KILLS = 6


@pytest.mark.timeout(180)
def test_kill_9_during_burst_triggers_each_scan_exactly_once(watch_backend, tmp_path):
    profile = write_profile(tmp_path, settle_seconds=0.2, poll_interval_s=0.2, max_active_runs=16)
    # The test backend's runs finish when polled (slots free up), and each start_run lingers
    # 20 ms after recording its run, so some kills land between start_run and the journal
    # write. Another backend ignores this; its runs must finish for slots to free up.
    watch_backend.configure(profile, finish_after_s=0.0, sleep_after_record_s=0.02)
    acq = profile.resolve(profile.beamline.path)
    rng = random.Random(1234)

    def burst() -> None:
        for i in range(N_SCANS):
            write_scan(acq / f"scan_{i:04d}.h5", seed=i)
            if i % 10 == 0:
                time.sleep(rng.uniform(0, 0.1))

    writer = threading.Thread(target=burst)
    writer.start()
    proc = start_watcher(profile, watch_backend)
    kills = 0
    try:
        while kills < KILLS:
            time.sleep(rng.uniform(0.8, 2.0))  # the process needs ~0.5-1 s to import and start
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
            proc = start_watcher(profile, watch_backend)
        writer.join()

        def all_triggered() -> bool:
            rows = journal_rows(profile)
            return len(rows) == N_SCANS and all(r["state"] in ("triggered", "succeeded") for r in rows.values())

        wait_for(all_triggered, timeout=90, interval=0.2)
        time.sleep(1.0)
    finally:
        writer.join()
        code, out = stop_watcher(proc)
    assert code == 0, out

    rows = journal_rows(profile)
    assert len({r["run_key"] for r in rows.values()}) == N_SCANS
    db = sqlite3.connect(profile.state_path / "watcher.sqlite")
    assert db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == N_SCANS
    runs = runs_by_scan(profile, watch_backend)
    assert len(watch_backend.open(profile).list_runs(limit=10 * N_SCANS)) == N_SCANS
    assert sorted(runs) == [f"scan_{i:04d}" for i in range(N_SCANS)]
    assert all(len(r) == 1 for r in runs.values())
    log = (profile.state_path / "watcher.log").read_text()
    print(f"{kills} kills; runs found by key after a crash: {log.count('already exists: recording it')}")
