"""Backends: one interface (``Backend``), two implementations (local, globus)."""

from __future__ import annotations

import importlib
from typing import Any

from ptychoflow.backends.base import Backend


def get_backend(profile: Any) -> Backend:
    """The backend the profile names: ``LocalBackend`` or ``GlobusBackend`` (imported lazily)."""
    if profile.backend == "local":
        from ptychoflow.backends.local import LocalBackend

        return LocalBackend.from_profile(profile)
    if profile.backend == "globus":
        try:
            module = importlib.import_module("ptychoflow.backends.globus")
        except ModuleNotFoundError as exc:
            if exc.name != "ptychoflow.backends.globus":
                raise
            from ptychoflow.errors import PtychoflowError

            raise PtychoflowError("the globus backend is not available in this installation") from None
        return module.GlobusBackend(profile)
    from ptychoflow.errors import ProfileError

    raise ProfileError(getattr(profile, "root", "."), "backend", f"unknown backend {profile.backend!r}")


__all__ = ["Backend", "get_backend"]
