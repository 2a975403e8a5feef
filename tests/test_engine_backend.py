"""get_backend, and the engine worker's process management (one worker per state_dir)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from engine_helpers import write_profile
from ptychoflow.backends import get_backend
from ptychoflow.backends.local import LocalBackend
from ptychoflow.flowengine.providers.base import EngineEnv
from ptychoflow.flowengine.worker import EngineError, engine_pid, ensure_engine_running, serve, stop_engine
from ptychoflow.errors import PtychoflowError
from ptychoflow.profile import load_profile


def test_get_backend_local_and_lazy_globus(tmp_path: Path, monkeypatch) -> None:
    profile = load_profile(write_profile(tmp_path))
    backend = get_backend(profile)
    assert isinstance(backend, LocalBackend) and backend.env.state_dir == tmp_path / "state"
    assert backend.env.collections["hpc"] == tmp_path / "hpc" and backend.env.endpoints == {"local-hpc": 2, "local-edge": 1}

    fake = types.ModuleType("ptychoflow.backends.globus")

    class GlobusBackend:
        def __init__(self, profile) -> None:
            self.profile = profile

    fake.GlobusBackend = GlobusBackend
    monkeypatch.setitem(sys.modules, "ptychoflow.backends.globus", fake)
    globus = profile.model_copy(update={"backend": "globus"})
    assert isinstance(get_backend(globus), GlobusBackend)
    monkeypatch.delitem(sys.modules, "ptychoflow.backends.globus")
    monkeypatch.setattr("importlib.import_module", _missing)
    with pytest.raises(PtychoflowError, match="globus backend is not available"):
        get_backend(globus)


def _missing(name: str):
    raise ModuleNotFoundError(f"No module named {name!r}", name=name)


def test_collection_ids_are_aliases_of_site_names(tmp_path: Path) -> None:
    path = write_profile(tmp_path)
    path.write_text(path.read_text().replace('[hpc]\n', '[hpc]\ncollection_id = "c0ffee"\n'))
    env = EngineEnv.from_profile(load_profile(path))
    assert env.collections["c0ffee"] == env.collections["hpc"] == tmp_path / "hpc"


def test_one_worker_per_state_dir(tmp_path: Path) -> None:
    profile = load_profile(write_profile(tmp_path))
    assert engine_pid(profile.state_path) is None
    pid = ensure_engine_running(profile)
    try:
        assert ensure_engine_running(profile) == pid  # found, not spawned again
        with pytest.raises(EngineError, match="already running"):
            serve(profile.state_path)
    finally:
        assert stop_engine(profile.state_path) == pid
    assert engine_pid(profile.state_path) is None
    assert stop_engine(profile.state_path) is None
