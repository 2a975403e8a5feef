"""The shared filesystem primitives: atomic writes, hashing, JSON state, locks, one instance."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from process_helpers import run_in_processes
from ptychoflow.errors import InputError
from ptychoflow.fs import (
    AlreadyRunning,
    JsonStateFile,
    SingleInstance,
    atomic_copy,
    atomic_write,
    atomic_write_json,
    atomic_write_text,
    file_lock,
    sha256_file,
)


def test_atomic_write_failure_leaves_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_text("old")

    def half_write(tmp: Path) -> None:
        tmp.write_text("ne")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(target, half_write)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_atomic_forms_write_whole_files(tmp_path: Path) -> None:
    atomic_write_text(tmp_path / "a.txt", "héllo")
    atomic_write_json(tmp_path / "b.json", {"k": [1, 2]})
    atomic_copy(tmp_path / "a.txt", tmp_path / "c.txt")
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo"
    assert json.loads((tmp_path / "b.json").read_text()) == {"k": [1, 2]}
    assert (tmp_path / "c.txt").read_bytes() == (tmp_path / "a.txt").read_bytes()
    assert not list(tmp_path.glob(".*tmp*"))


def test_sha256_file_streams_large_files(tmp_path: Path) -> None:
    blob = os.urandom(3 * (1 << 20) + 17)
    (tmp_path / "x").write_bytes(blob)
    assert sha256_file(tmp_path / "x") == hashlib.sha256(blob).hexdigest()


def test_sha256_bytes_is_the_file_digest_of_the_same_bytes(tmp_path: Path) -> None:
    from ptychoflow.fs import sha256_bytes

    blob = bytes(range(256)) * 5000
    (tmp_path / "x").write_bytes(blob)
    assert sha256_bytes(blob) == sha256_file(tmp_path / "x") == hashlib.sha256(blob).hexdigest()


def test_json_state_missing_is_empty_corrupt_is_named(tmp_path: Path) -> None:
    state = JsonStateFile(tmp_path / "functions.json", "function registry")
    assert state.load() == {}
    with state.updating() as doc:
        doc["local"] = {"train": 1}
    assert state.load() == {"local": {"train": 1}}
    (tmp_path / "functions.json").write_text("{not json")
    with pytest.raises(InputError, match=r"functions.json: \(json\): corrupt function registry"):
        state.load()
    (tmp_path / "functions.json").write_bytes(b"\xff\xfe")
    with pytest.raises(InputError, match="unreadable function registry"):
        state.load()
    (tmp_path / "functions.json").write_text("[1]")
    with pytest.raises(InputError, match="expected an object"):
        state.load()


def _bump(path: str, n: int) -> None:
    state = JsonStateFile(path, "counter")
    for _ in range(n):
        with state.updating() as doc:
            doc["n"] = doc.get("n", 0) + 1


def test_json_state_updates_from_processes_are_not_lost(tmp_path: Path) -> None:
    path = str(tmp_path / "counter.json")
    assert run_in_processes(_bump, (path, 25)) == [0, 0, 0]
    assert JsonStateFile(path, "counter").load() == {"n": 75}


def test_file_lock_excludes_other_processes(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    code = ("import sys,time; from ptychoflow.fs import file_lock\n"
            f"with file_lock({str(lock)!r}):\n    print('in', flush=True); time.sleep(0.5)\n")
    with file_lock(lock):
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                                 env={**os.environ, "PYTHONPATH": "src"})
        time.sleep(0.4)
        assert child.poll() is None  # still waiting for our lock
    assert child.communicate(timeout=30)[0].strip() == "in"


def test_single_instance_reports_holder_and_frees_on_kill(tmp_path: Path) -> None:
    guard_path = tmp_path / "engine.lock"
    code = ("import time; from ptychoflow.fs import SingleInstance\n"
            f"g = SingleInstance({str(guard_path)!r}, 'engine worker'); g.acquire(); print('held', flush=True); time.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": "src"})
    try:
        assert child.stdout.readline().strip() == "held"
        guard = SingleInstance(guard_path, "engine worker")
        assert guard.holder_pid() == child.pid
        with pytest.raises(AlreadyRunning, match=f"another engine worker is running \\(pid {child.pid}\\)"):
            guard.acquire()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    guard = SingleInstance(guard_path, "engine worker")
    assert guard.holder_pid() is None
    with guard:
        assert SingleInstance(guard_path, "engine worker").holder_pid() == os.getpid()
    assert SingleInstance(guard_path, "engine worker").holder_pid() is None


def test_a_new_holder_never_reports_the_pid_of_one_killed_before_it(tmp_path: Path) -> None:
    """kill -9 leaves the dead holder's pid in the file; in the instant between a new holder's
    lock and its own pid, probes must not report the dead one (it named a dead worker)."""
    import fcntl

    guard_path = tmp_path / "engine.lock"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    guard_path.write_text(f"{dead.pid}\n")  # what a worker killed by kill -9 leaves
    with open(guard_path, "a+") as new_holder:  # locked, its pid not written yet
        fcntl.flock(new_holder, fcntl.LOCK_EX)
        assert SingleInstance(guard_path, "engine worker").holder_pid() == -1


def test_single_instance_start_waits_out_a_probe_but_not_a_holder(tmp_path: Path) -> None:
    """A holder_pid probe (a shared lock held for an instant) must not look like a holder."""
    import fcntl
    import threading

    guard_path = tmp_path / "watcher.lock"
    guard_path.touch()
    with open(guard_path) as prober:  # another process's probe, caught in the middle
        fcntl.flock(prober, fcntl.LOCK_SH)
        threading.Timer(0.2, lambda: fcntl.flock(prober, fcntl.LOCK_UN)).start()
        guard = SingleInstance(guard_path, "watcher")
        assert guard.try_acquire()
    try:
        assert guard_path.read_text().strip() == str(os.getpid())
        started = time.monotonic()
        assert not SingleInstance(guard_path, "watcher").try_acquire()  # a real holder: refused at once
        assert time.monotonic() - started < 0.5
    finally:
        guard.release()
    assert guard_path.read_text() == ""  # released: no stale pid for the next prober to read
