"""Bring a local deployment to life: functions registered, engine worker running.

`watch`, `demo`, `dashboard` and `flows run` call this so a fresh profile just works.
"""

from __future__ import annotations

from ptychoflow.backends import get_backend
from ptychoflow.backends.base import Backend
from ptychoflow.profile import Profile


def prepare_local_site(profile: Profile, *, start_engine: bool = True) -> Backend:
    """The profile's backend, made ready to run flows from here (``Backend.prepare``: on the
    local backend, functions registered and the engine worker running; elsewhere nothing)."""
    backend = get_backend(profile)
    backend.prepare(start_worker=start_engine)
    return backend
