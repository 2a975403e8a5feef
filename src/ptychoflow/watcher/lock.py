"""One watcher per state dir: two would race on the same queue and journal.

An advisory ``flock`` on ``<state_dir>/watcher.lock``: the kernel drops it when the process
dies (even by ``kill -9``), so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from ptychoflow.errors import PtychoflowError

LOCK_FILENAME = "watcher.lock"


class AlreadyRunning(PtychoflowError):
    """Another watcher holds the state dir's lock."""


def acquire(state_dir: Path) -> IO[str]:
    """Take the lock (keep the returned file open while running) or raise AlreadyRunning."""
    f = open(state_dir / LOCK_FILENAME, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        pid = f.read().strip() or "?"
        f.close()
        raise AlreadyRunning(f"{state_dir}: another watcher is running (pid {pid}); stop it first") from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


def running_pid(state_dir: Path) -> int | None:
    """The pid of the watcher holding the lock, or None when none runs."""
    path = state_dir / LOCK_FILENAME
    if not path.exists():
        return None
    with open(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = f.read().strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(f, fcntl.LOCK_UN)
        return None
