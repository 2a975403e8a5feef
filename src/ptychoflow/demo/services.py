"""Long-running helper processes of the demo (edge service, watcher), started and stopped cleanly.

Their pids are recorded in the state dir, so a demo that was killed and started again first
stops what the previous one left behind instead of tripping over its ports and locks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ptychoflow.fs import JsonStateFile
from ptychoflow.processes import pid_alive

PIDS_FILENAME = "demo-services.json"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def terminate(pid: int, timeout_s: float = 20.0) -> None:
    """SIGTERM, wait, then SIGKILL: services get the chance to flush journals and mosaics."""
    if not pid_alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)


class ServiceProcess:
    """`python -m ptychoflow ARGS` with its output in a log file."""

    def __init__(self, name: str, args: list[str], log_path: Path) -> None:
        self.name = name
        self.args = args
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> "ServiceProcess":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "ptychoflow", *self.args], stdout=log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def check(self) -> None:
        """Raise if the service died: the demo must not wait forever on a dead helper."""
        if self.process is not None and self.process.poll() is not None:
            tail = self.log_path.read_text(errors="replace").strip().splitlines()[-5:]
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}; last log lines:\n  " + "\n  ".join(tail))

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        terminate(self.process.pid, timeout_s)
        self.process.wait(5)


class ServiceRegistry:
    """The pid file of the services one demo directory runs."""

    def __init__(self, state_dir: Path) -> None:
        self._file = JsonStateFile(state_dir / PIDS_FILENAME, "demo service pids")

    def record(self, services: list[ServiceProcess]) -> None:
        with self._file.updating() as pids:
            pids.clear()
            pids.update({s.name: s.pid for s in services})

    def stop_leftovers(self) -> list[str]:
        """Stop services a previous (killed) demo left running; returns their names."""
        stopped = []
        for name, pid in self._file.load().items():
            if pid_alive(pid) and "ptychoflow" in _cmdline(pid):
                terminate(pid)
                stopped.append(name)
        self.clear()
        return stopped

    def clear(self) -> None:
        self._file.path.unlink(missing_ok=True)
