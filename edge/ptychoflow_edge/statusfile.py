"""The status file ``<edge.path>/edge-status.json``: how other processes find a running service.

The service rewrites it atomically every half second with its pid, HTTP address, model
version and counters; the demo, ``ptychoflow edge status`` and the activate function read
it (then, for fresh numbers, the HTTP ``/status`` it points to).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ptychoflow.fs import atomic_write_text
from ptychoflow.processes import pid_alive

STALE_AFTER_S = 5.0


def write_status(path: Path, status: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(status, indent=1, default=str), durable=False)  # rewritten every 0.5 s


def read_status(path: Path) -> dict[str, Any] | None:
    """The last status written, or None if there is none (or it is unreadable)."""
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def running_status(path: Path) -> dict[str, Any] | None:
    """The status of a live service: state running, its pid alive and the file fresh."""
    status = read_status(path)
    if not status or status.get("state") != "running":
        return None
    if not pid_alive(int(status.get("pid", -1))) or time.time() - float(status.get("updated_at", 0)) > STALE_AFTER_S:
        return None
    return status


def fetch_http_status(url: str, timeout_s: float = 2.0) -> dict[str, Any] | None:
    """GET <url>/status; None if the service does not answer."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url.rstrip("/") + "/status", timeout=timeout_s) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def wait_until_ready(path: Path, *, pid: int | None = None, timeout_s: float = 30.0) -> dict[str, Any]:
    """Block until a service (optionally this pid) reports running; TimeoutError otherwise."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = running_status(path)
        if status and (pid is None or status.get("pid") == pid):
            return status
        time.sleep(0.1)
    raise TimeoutError(f"{path}: no running edge service reported within {timeout_s:.0f} s")
