"""The action-provider contract: what every provider implements, and the shared pieces.

A provider follows the Globus Action Provider API in miniature: ``run`` submits (and must
be idempotent on ``action_id``: the engine re-submits after a crash), ``status`` polls,
``cancel`` stops. Status documents have the real API's shape (``action_id``, ``status``,
``details``, ``start_time``...), so a flow sees the same data locally and on Globus.
"""

from __future__ import annotations

import abc
import getpass
import logging
import threading
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from ptychoflow.flowengine.action_journal import INTERRUPTED, ActionJournal, interrupted_message
from ptychoflow.flowengine.errors import StateError
from ptychoflow.flowengine.limits import DEFAULT_LIMITS, RunLimits
from ptychoflow.site import SiteLayout

ACTIVE, SUCCEEDED, FAILED = "ACTIVE", "SUCCEEDED", "FAILED"
log = logging.getLogger(__name__)


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
    # compute endpoint id -> reruns of a task whose worker process died mid-call (Globus
    # Compute's max_retries_on_system_failure); absent means 0, at most once
    retries_on_worker_loss: dict[str, int] = field(default_factory=dict)
    limits: RunLimits = DEFAULT_LIMITS

    @classmethod
    def from_profile(cls, profile: Any) -> "EngineEnv":
        layout = SiteLayout.from_profile(profile)
        roots = {"beamline": layout.beamline_root, "hpc": layout.hpc.root, "edge": layout.edge.root}
        collections: dict[str, Path] = {}
        for site_name, directory in roots.items():
            collections[site_name] = directory
            collection_id = getattr(profile, site_name).collection_id
            if collection_id:
                collections[collection_id] = directory
        endpoints = {profile.hpc.endpoint_id: profile.hpc.workers, profile.edge.endpoint_id: 1}
        retries = {profile.hpc.endpoint_id: profile.hpc.retries_on_worker_loss}
        try:
            username = getpass.getuser()
        except Exception:
            username = "local"
        return cls(layout.state_dir, collections, endpoints, username, retries, profile.engine.run_limits())


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
    ``execute`` (the work; return details, or raise ActionFailed). Long work should poll
    ``stopping(action_id)`` at safe points and stop there when it is true (a cancel).

    Every action goes through an ``ActionJournal`` (``<state_dir>/actions``): a finished
    action is never executed again after an engine restart (its outcome is returned), and
    work interrupted by the worker's death is started again only ``reruns`` times (0: at
    most once; providers whose work is safe to repeat allow more).
    """

    threads = 4
    reruns = 0

    def __init__(self, env: EngineEnv) -> None:
        self.env = env
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix=type(self).__name__)
        self._actions: dict[str, tuple[Future, str]] = {}
        self._stop: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self.journal = ActionJournal(env.state_dir / "actions")

    def check(self, body: dict[str, Any]) -> None:
        """Raise ActionUnableToRun when the body cannot be run."""

    @abc.abstractmethod
    def execute(self, action_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Do the work; the returned dict becomes the status ``details``."""

    def run(self, action_id: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if action_id not in self._actions:
                self.check(body)
                self._stop[action_id] = threading.Event()
                future: Future = Future()
                stored = self._recall(action_id)
                if stored is None:
                    future = self._pool.submit(self._guarded, action_id, body)
                else:  # finished before a restart (perhaps killed before it could say so)
                    log.info("action %s: %s finished %s (recalled)", action_id, type(self).__name__, stored["state"])
                    future.set_result((stored["state"], stored["details"]))
                self._actions[action_id] = (future, iso_now())
        return self.status(action_id)  # type: ignore[return-value]

    def _recall(self, action_id: str) -> dict[str, Any] | None:
        """The outcome of an action this provider finished (or may not restart) before."""
        stored = self.journal.outcome(action_id)
        starts = self.journal.starts(action_id)
        if stored is None and starts > self.reruns:
            message = interrupted_message(starts, self.reruns)
            stored = self.journal.finish(action_id, {"state": FAILED, "details": {
                "error": INTERRUPTED, "description": message}})
        return stored

    def _guarded(self, action_id: str, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        try:
            attempt = self.journal.begin(action_id)
            log.info("action %s: %s started (attempt %d)", action_id, type(self).__name__, attempt)
            state, details = SUCCEEDED, self.execute(action_id, body)
        except ActionFailed as exc:
            state, details = FAILED, exc.details
        except Exception as exc:  # a provider bug must fail the action, not the worker
            state, details = FAILED, {"error": type(exc).__name__, "description": str(exc),
                                      "exception": traceback.format_exc()}
        with self._lock:
            wanted = action_id in self._actions  # not released meanwhile (a cancelled run lets go at once)
        if wanted:
            self.journal.finish(action_id, {"state": state, "details": details})
        else:
            self.journal.forget(action_id)
        log.info("action %s: %s finished %s", action_id, type(self).__name__, state)
        return state, details

    def attempt(self, action_id: str) -> int:
        """1 for the first execution of the action; more when it runs again after a crash."""
        return self.journal.starts(action_id)

    def stopping(self, action_id: str) -> bool:
        """True once the action was cancelled: stop at the next safe point."""
        event = self._stop.get(action_id)
        return bool(event and event.is_set())

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
            event = self._stop.get(action_id)
        if event:
            event.set()
        if entry:
            entry[0].cancel()

    def release(self, action_id: str) -> None:
        with self._lock:
            self._actions.pop(action_id, None)
            self._stop.pop(action_id, None)
        self.journal.forget(action_id)

    def close(self) -> None:
        for event in list(self._stop.values()):
            event.set()  # running work stops at its next safe point
        self._pool.shutdown(wait=False, cancel_futures=True)


class FunctionProvider(ThreadedProvider):
    """Wrap a plain ``fn(body) -> details`` as a provider (handy for tests and facilities)."""

    def __init__(self, env: EngineEnv, fn: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        super().__init__(env)
        self.fn = fn

    def execute(self, action_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.fn(body)
