"""The action-provider contract and the ActionUrl -> provider registry.

A provider follows the Globus Action Provider API in miniature: ``run`` submits (and must
be idempotent on ``action_id``: the engine re-submits after a crash), ``status`` polls,
``cancel`` stops. Status documents have the real API's shape (``action_id``, ``status``,
``details``, ``start_time``...), so a flow sees the same data locally and on Globus.
"""

from __future__ import annotations

import abc
import threading

import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from ptychoflow.flowengine.errors import StateError

ACTIVE, SUCCEEDED, FAILED = "ACTIVE", "SUCCEEDED", "FAILED"


class ActionUnableToRun(StateError):
    """The provider refused the request (bad body, unknown endpoint or collection)."""

    def __init__(self, cause: str) -> None:
        super().__init__("ActionUnableToRun", cause)


class ActionFailed(Exception):
    """Raised inside ``ThreadedProvider.execute``: the action ran and failed with ``details``."""

    def __init__(self, details: dict[str, Any]) -> None:
        super().__init__(details.get("description") or details.get("exception") or "action failed")
        self.details = details


@dataclass
class EngineEnv:
    """What providers need to know about the deployment (built from the profile)."""

    state_dir: Path
    collections: dict[str, Path] = field(default_factory=dict)  # collection id or site name -> directory
    endpoints: dict[str, int] = field(default_factory=dict)  # compute endpoint id -> concurrent workers
    username: str = "local"

    @classmethod
    def from_profile(cls, profile: Any) -> "EngineEnv":
        import getpass

        collections: dict[str, Path] = {}
        for site_name in ("beamline", "hpc", "edge"):
            site = getattr(profile, site_name)
            directory = profile.resolve(site.path)
            collections[site_name] = directory
            if site.collection_id:
                collections[site.collection_id] = directory
        endpoints = {profile.hpc.endpoint_id: profile.hpc.workers, profile.edge.endpoint_id: 1}
        try:
            username = getpass.getuser()
        except Exception:
            username = "local"
        return cls(profile.state_path, collections, endpoints, username)


def iso_now() -> str:
    return datetime.now(timezone.utc).isoformat()


def status_document(action_id: str, status: str, details: Any, *, started: str, completed: str | None = None,
                    label: str | None = None) -> dict[str, Any]:
    """An action status in the Action Provider API's shape."""
    return {
        "action_id": action_id, "status": status, "display_status": status, "details": details,
        "creator_id": "local", "label": label, "manage_by": [], "monitor_by": [],
        "start_time": started, "completion_time": completed, "release_after": "P30D",
    }


class ActionProvider(abc.ABC):
    """One ActionUrl's implementation."""

    url: str = ""

    @abc.abstractmethod
    def run(self, action_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Submit; idempotent on action_id. Raise ActionUnableToRun for a bad request."""

    @abc.abstractmethod
    def status(self, action_id: str) -> dict[str, Any] | None:
        """Current status document, or None when this process does not know the action."""

    def cancel(self, action_id: str) -> None:
        """Best effort; the default cannot stop running work."""

    def release(self, action_id: str) -> None:
        """Forget a finished action (frees memory in a long-lived worker)."""

    def close(self) -> None:
        """Stop background pools when the worker exits."""


class ThreadedProvider(ActionProvider):
    """A provider whose work is a blocking Python call, run on a small thread pool.

    Subclasses implement ``check`` (synchronous validation -> ActionUnableToRun) and
    ``execute`` (the work; return details, or raise ActionFailed).
    """

    threads = 4

    def __init__(self, env: EngineEnv) -> None:
        self.env = env
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix=type(self).__name__)
        self._actions: dict[str, tuple[Future, str]] = {}
        self._lock = threading.Lock()

    def check(self, body: dict[str, Any]) -> None:
        """Raise ActionUnableToRun when the body cannot be run."""

    @abc.abstractmethod
    def execute(self, action_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Do the work; the returned dict becomes the status ``details``."""

    def run(self, action_id: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if action_id not in self._actions:
                self.check(body)
                self._actions[action_id] = (self._pool.submit(self._guarded, action_id, body), iso_now())
        return self.status(action_id)  # type: ignore[return-value]

    def _guarded(self, action_id: str, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        try:
            return SUCCEEDED, self.execute(action_id, body)
        except ActionFailed as exc:
            return FAILED, exc.details
        except Exception as exc:  # a provider bug must fail the action, not the worker
            return FAILED, {"error": type(exc).__name__, "description": str(exc),
                            "exception": traceback.format_exc()}

    def status(self, action_id: str) -> dict[str, Any] | None:
        with self._lock:
            entry = self._actions.get(action_id)
        if entry is None:
            return None
        future, started = entry
        if not future.done():
            return status_document(action_id, ACTIVE, {}, started=started)
        state, details = future.result()
        return status_document(action_id, state, details, started=started, completed=iso_now())

    def cancel(self, action_id: str) -> None:
        with self._lock:
            entry = self._actions.get(action_id)
        if entry:
            entry[0].cancel()

    def release(self, action_id: str) -> None:
        with self._lock:
            self._actions.pop(action_id, None)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class FunctionProvider(ThreadedProvider):
    """Wrap a plain ``fn(body) -> details`` as a provider (handy for tests and facilities)."""

    def __init__(self, env: EngineEnv, fn: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        super().__init__(env)
        self.fn = fn

    def execute(self, action_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.fn(body)


ProviderFactory = Callable[[EngineEnv], ActionProvider]
_FACTORIES: dict[str, ProviderFactory] = {}
_ENTRY_POINT_GROUP = "ptychoflow.action_providers"


def register_provider(url: str, factory: ProviderFactory) -> None:
    """Map an ActionUrl to a provider factory (replaces any previous one for that URL).

    Engine worker processes also load ``{url: factory}`` mappings named by entry points in
    the ``ptychoflow.action_providers`` group, so a facility package can add providers
    without touching ptychoflow (an in-process registration only reaches in-process engines).
    """
    _FACTORIES[url.rstrip("/")] = factory


def unregister_provider(url: str) -> None:
    _FACTORIES.pop(url.rstrip("/"), None)


def registered_urls() -> list[str]:
    _ensure_defaults()
    return sorted(_FACTORIES)


def build_providers(env: EngineEnv) -> "Providers":
    """Instantiate every registered provider for one engine."""
    _ensure_defaults()
    return Providers({url: factory(env) for url, factory in _FACTORIES.items()})


class Providers:
    """The providers of one running engine, looked up by ActionUrl."""

    def __init__(self, by_url: dict[str, ActionProvider]) -> None:
        self.by_url = by_url

    def for_url(self, url: str) -> ActionProvider:
        provider = self.by_url.get(url.rstrip("/"))
        if provider is None:
            known = ", ".join(sorted(self.by_url))
            raise ActionUnableToRun(f"no local action provider for {url} (known: {known})")
        return provider

    def close(self) -> None:
        for provider in self.by_url.values():
            provider.close()


_defaults_loaded = False


def _ensure_defaults() -> None:
    """Register the built-in providers and entry-point plugins once (lazily: avoids cycles)."""
    global _defaults_loaded
    if _defaults_loaded:
        return
    _defaults_loaded = True
    from ptychoflow.flowengine.providers import compute, transfer

    for url, factory in {**transfer.FACTORIES, **compute.FACTORIES}.items():
        _FACTORIES.setdefault(url, factory)
    from importlib.metadata import entry_points

    for entry in entry_points(group=_ENTRY_POINT_GROUP):  # each names a {url: factory} mapping
        for url, factory in entry.load().items():
            _FACTORIES.setdefault(url.rstrip("/"), factory)


