"""Watcher figures: complete-mark -> run-start latency, reconcile time and idle CPU at 10k files.

    PYTHONPATH=src:tests python benchmarks/watch.py [--files 10000] [--workdir DIR]

The watcher runs as a real process (`python -m ptychoflow watch`). Until the local backend
is merged it uses the tests' durable SQLite backend (`--backend-factory`); afterwards pass
`--backend-factory ptychoflow.backends:get_backend`. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tomli_w

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from ptychoflow.profile import Profile, load_profile  # noqa: E402
from ptychoflow.scan import format as scan_format  # noqa: E402
from ptychoflow.watcher.journal import Journal  # noqa: E402
from ptychoflow.watcher.sources import Matcher  # noqa: E402
from ptychoflow.watcher.status import percentile  # noqa: E402
from watch_support import write_scan  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def make_site(root: Path, **watcher: object) -> Profile:
    doc = {
        "state_dir": "state",
        "beamline": {"path": "acquisition", "patterns": ["scan_*.h5"]},
        "hpc": {"path": "hpc"},
        "edge": {"path": "edge"},
        "watcher": {"max_active_runs": 64, **watcher},
    }
    root.mkdir(parents=True, exist_ok=True)
    (root / "acquisition").mkdir(exist_ok=True)
    (root / "ptychoflow.toml").write_text(tomli_w.dumps(doc))
    (root / "flow.json").write_text(json.dumps({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}}))
    (root / "state").mkdir(exist_ok=True)  # the test backend's runs finish when first polled
    (root / "state" / "test_backend.json").write_text(json.dumps({"finish_after_s": 0.0}))
    return load_profile(root / "ptychoflow.toml")


def start(profile: Profile, factory: str, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")]))
    cmd = [sys.executable, "-m", "ptychoflow", "watch", "--profile", str(profile.root / "ptychoflow.toml"),
           "--flow", str(profile.root / "flow.json"), "--backend-factory", factory, *extra]
    out = open(profile.root / "watcher.out", "ab")
    return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def backend_of(profile: Profile, factory: str):  # noqa: ANN201
    module, _, attr = factory.partition(":")
    return getattr(importlib.import_module(module), attr)(profile)


def run_created(profile: Profile, factory: str) -> dict[str, float]:
    """scan id -> when the backend recorded its run."""
    out = {}
    for info in backend_of(profile, factory).list_runs(limit=100_000):
        for tag in info.tags:
            if tag.startswith("scan:") and info.created is not None:
                out[tag[5:]] = info.created
    return out


def wait_until(predicate, timeout: float) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def wait_started(profile: Profile) -> None:
    log = profile.state_path / "watcher.log"
    count = log.read_text().count("reconciled") if log.exists() else 0
    wait_until(lambda: log.exists() and log.read_text().count("reconciled") > count, 600)


def latency(work: Path, factory: str, *, poll: bool, n: int, settle: float, interval: float) -> list[float]:
    """Seconds from complete-mark (writer closed) to run recorded, settle delay subtracted."""
    profile = make_site(work, settle_seconds=settle, poll=poll, poll_interval_s=interval)
    acq = profile.resolve(profile.beamline.path)
    proc = start(profile, factory)
    wait_started(profile)
    marks: dict[str, float] = {}
    try:
        for i in range(n):
            name = f"scan_{i:04d}"
            write_scan(acq / f"{name}.h5", seed=i)
            marks[name] = time.time()
            time.sleep(0.25)
        wait_until(lambda: len(run_created(profile, factory)) >= n, 60)
    finally:
        stop(proc)
    created = run_created(profile, factory)
    return [created[k] - marks[k] - settle for k in marks if k in created]


def generate(acq: Path, count: int) -> float:
    """`count` distinct small scans. fsync is skipped while generating (not what is measured)."""
    acq.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    real_fsync = scan_format.os.fsync
    scan_format.os.fsync = lambda fd: None
    try:
        for i in range(count):
            path = acq / f"scan_{i:05d}.h5"
            if not path.exists():
                write_scan(path, seed=i)
    finally:
        scan_format.os.fsync = real_fsync
    return time.perf_counter() - t0


def ten_thousand(work: Path, factory: str, count: int, idle_s: float) -> dict[str, float]:
    shutil.rmtree(work / "state", ignore_errors=True)  # cold: files kept, journal and runs gone
    profile = make_site(work, settle_seconds=0.0, poll_interval_s=2.0, max_active_runs=1000)
    acq = profile.resolve(profile.beamline.path)
    figures = {"generate_s (not the watcher)": generate(acq, count)}
    journal_path = profile.state_path / "watcher.sqlite"

    def count_in(*states: str) -> int:
        if not journal_path.exists():
            return 0
        db = sqlite3.connect(journal_path, timeout=30)
        try:
            marks = ",".join("?" * len(states))
            return db.execute(f"SELECT COUNT(*) FROM scans WHERE state IN ({marks})", states).fetchone()[0]
        except sqlite3.OperationalError:
            return 0
        finally:
            db.close()

    t0 = time.perf_counter()
    proc = start(profile, factory)
    # First sight of every file: stat, open, hash, validate, journal as queued (or beyond).
    wait_until(lambda: count_in("queued", "triggering", "triggered", "succeeded") >= count, 3600)
    figures["cold_start_all_admitted_s"] = time.perf_counter() - t0
    wait_until(lambda: count_in("succeeded") >= count, 3600)  # and their runs started and done
    figures["cold_start_all_runs_done_s (1000 active max)"] = time.perf_counter() - t0
    stop(proc)

    for mode, extra in (("events", ()), ("poll", ("--poll",))):
        t0 = time.perf_counter()
        proc = start(profile, factory, *extra)
        wait_started(profile)
        figures[f"warm_restart_to_watching_s[{mode}]"] = time.perf_counter() - t0
        time.sleep(2.0)  # let startup settle
        c0, w0 = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(idle_s)
        figures[f"idle_cpu_percent[{mode}]"] = 100 * (cpu_seconds(proc.pid) - c0) / (time.monotonic() - w0)
        stop(proc)
        log = (profile.state_path / "watcher.log").read_text().splitlines()
        figures[f"warm_reconcile_s[{mode}] (from the log)"] = float(
            [line for line in log if "reconciled" in line][-1].rsplit(" in ", 1)[1].split()[0])
    figures["idle_cpu_resolution_percent (one clock tick)"] = 100 / CLK_TCK / idle_s
    journal = Journal(journal_path)
    t0 = time.perf_counter()
    Matcher(acq, profile.beamline.patterns).list()
    journal.path_states()
    figures["one_safety_rescan_s (every 60 s)"] = time.perf_counter() - t0
    journal.close()
    return figures


def show(name: str, values: list[float], target: str) -> None:
    ms = [v * 1000 for v in values]
    print(f"{name}: n={len(ms)} median {statistics.median(ms):.0f} ms, p99 {percentile(ms, 99):.0f} ms,"
          f" max {max(ms):.0f} ms (target {target})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, help="Keep data here (reused across runs); default a temp dir.")
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--latency-scans", type=int, default=30)
    parser.add_argument("--backend-factory", default="watch_support:make_backend")
    parser.add_argument("--skip-latency", action="store_true")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="ptychoflow-watch-bench-"))
    print(f"workdir {work}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    if not args.skip_latency:
        settle = 0.5
        for mode, poll, interval in (("events", False, 2.0), ("poll 1 s", True, 1.0)):
            site = work / f"latency-{mode.split()[0]}"
            shutil.rmtree(site, ignore_errors=True)
            values = latency(site, args.backend_factory, poll=poll, n=args.latency_scans, settle=settle,
                             interval=interval)
            target = "<= 200 ms" if not poll else f"<= {interval * 1000 + 200:.0f} ms"
            show(f"latency complete-mark -> run start, settle {settle} s subtracted [{mode}]", values, target)
    figures = ten_thousand(work / f"files-{args.files}", args.backend_factory, args.files, args.idle_seconds)
    print(f"{args.files} files in the directory:")
    for key, value in figures.items():
        unit = "%" if "percent" in key else "s"
        print(f"  {key:<42} {value:8.3f} {unit}")


if __name__ == "__main__":
    main()
