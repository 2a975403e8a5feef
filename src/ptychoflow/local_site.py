"""Bring a local deployment to life: functions registered, engine worker running and watched.

`watch`, `demo`, `dashboard` and `flows run` call this so a fresh profile just works. Every
question about the local engine worker that a command asks goes through here, so a profile on
another backend simply has no engine (None).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ptychoflow.backends import get_backend
from ptychoflow.backends.base import Backend
from ptychoflow.function_registry import bundled_functions
from ptychoflow.profile import Profile

if TYPE_CHECKING:
    from ptychoflow.flowengine.health import EngineHealth
    from ptychoflow.flowengine.store import Store
    from ptychoflow.flowengine.supervisor import EngineSupervisor


def prepare_local_site(profile: Profile, *, start_engine: bool = True) -> Backend:
    """Register every bundled function (no-op when unchanged) and start the engine worker."""
    backend = get_backend(profile)
    if profile.backend != "local":
        return backend
    for name, path in bundled_functions().items():
        backend.register_function(path, name)
    if start_engine:
        ensure_engine(profile)
    return backend


def ensure_engine(profile: Profile) -> int | None:
    """Start the profile's engine worker if none is alive; its pid (None on the globus backend)."""
    if profile.backend != "local":
        return None
    from ptychoflow.flowengine.worker import ensure_engine_running

    return ensure_engine_running(profile)


def supervise_engine(profile: Profile, *, restart: bool) -> EngineSupervisor | None:
    """Watch the profile's engine worker from this process (restarting it when `restart`);
    None where flows run elsewhere (the globus backend)."""
    if profile.backend != "local":
        return None
    from ptychoflow.flowengine.supervisor import EngineSupervisor

    return EngineSupervisor(profile.state_path, restart=restart).start()


def engine_health(profile: Profile) -> EngineHealth | None:
    """The local engine worker's health (None for the globus backend). Reads, never creates."""
    if profile.backend != "local":
        return None
    from ptychoflow.flowengine.health import engine_health as health
    from ptychoflow.flowengine.health import store_health
    from ptychoflow.flowengine.store import STORE_FILENAME, Store

    if not (profile.state_path / STORE_FILENAME).exists():
        return health(profile.state_path)
    store = Store(profile.state_path)
    try:
        return store_health(store)
    finally:
        store.close()


def run_store(profile: Profile) -> Store | None:
    """The local run store (the caller closes it); None where flows run on a service (globus)."""
    if profile.backend != "local":
        return None
    from ptychoflow.flowengine.store import Store

    return Store(profile.state_path)
