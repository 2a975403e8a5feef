"""The demo's profile: the commented local template with demo-sized policy and free ports."""

from __future__ import annotations

import socket
import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from ptychoflow.fs import atomic_write_text
from ptychoflow.profile import LOCAL_PROFILE_TEMPLATE, PROFILE_FILENAME, Profile, load_profile, make_site_dirs

HEADER = "# ptychoflow demo profile (written by `ptychoflow demo`; edit freely, it is reused on resume)\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def ensure_demo_profile(directory: Path, policy: dict[str, Any], watcher: dict[str, Any]) -> tuple[Profile, bool]:
    """Reuse the directory's profile (resume) or write a fresh one; returns (profile, created)."""
    path = directory / PROFILE_FILENAME
    if path.exists():
        return load_profile(path), False
    directory.mkdir(parents=True, exist_ok=True)
    data = tomllib.loads(LOCAL_PROFILE_TEMPLATE)
    _merge(data, {
        "policy": policy,
        "watcher": watcher,
        # the bundled functions are safe to repeat (outputs named by their inputs), so a demo
        # killed mid-task reruns that task on resume, like the Slurm endpoint config in deploy/
        "hpc": {"retries_on_worker_loss": 1},
        "edge": {"stream_address": f"tcp://127.0.0.1:{free_port()}", "results_address": f"tcp://127.0.0.1:{free_port()}",
                 "http_port": free_port()},
    })
    atomic_write_text(path, HEADER + tomli_w.dumps(data))
    return make_site_dirs(load_profile(path)), True
