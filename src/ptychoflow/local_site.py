"""Bring a local deployment to life: functions registered, engine worker running.

`watch`, `demo`, `dashboard` and `flows run` call this so a fresh profile just works.
"""

from __future__ import annotations

from ptychoflow.backends import get_backend
from ptychoflow.backends.base import Backend
from ptychoflow.function_registry import bundled_functions
from ptychoflow.profile import Profile


def prepare_local_site(profile: Profile, *, start_engine: bool = True) -> Backend:
    """Register every bundled function (no-op when unchanged) and start the engine worker."""
    backend = get_backend(profile)
    if profile.backend != "local":
        return backend
    for name, path in bundled_functions().items():
        backend.register_function(path, name)
    if start_engine:
        from ptychoflow.flowengine.worker import ensure_engine_running

        ensure_engine_running(profile)
    return backend
