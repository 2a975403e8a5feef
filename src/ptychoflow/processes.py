"""Small process facts shared by the services that find each other through pid files."""

from __future__ import annotations

import os
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, exited but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (not Linux): kill(0) said it exists
    return state != "Z"


def package_environment() -> dict[str, str]:
    """This process's environment, with the ``ptychoflow`` package importable by a child
    Python even when the package is not installed (a source checkout)."""
    environment = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])  # the directory holding ``ptychoflow``
    environment["PYTHONPATH"] = os.pathsep.join(p for p in (root, environment.get("PYTHONPATH")) if p)
    return environment
