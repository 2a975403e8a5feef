"""The installed ``ptychoflow`` console script, run as users run it: the venv's entry point, with
no PYTHONPATH, so the installed package (not this checkout's src/ on sys.path) is what runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CONSOLE_SCRIPT = Path(sys.executable).parent / "ptychoflow"

needs_console_script = pytest.mark.skipif(not CONSOLE_SCRIPT.exists(),
                                          reason=f"no installed console script at {CONSOLE_SCRIPT} (run make install)")


def console_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: the venv's bin first on PATH, no PYTHONPATH."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PTYCHOFLOW_PROFILE")}
    env["PATH"] = os.pathsep.join([str(CONSOLE_SCRIPT.parent), env.get("PATH", "")])
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update(extra)
    return env


def ptychoflow(*args: str, check: bool = True, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """Run the console script; with `check`, a non-zero exit fails with its output."""
    result = subprocess.run([str(CONSOLE_SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                            env=kwargs.pop("env", None) or console_env(), **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"ptychoflow {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result
