"""The verbs every backend offers, and the records they return.

Both backends speak the Globus Flows vocabulary: a run has a ``run_id``, a ``status`` in
``ACTIVE | INACTIVE | SUCCEEDED | FAILED | ENDED`` and a log of state events.
"""

from __future__ import annotations

import abc
import enum
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ptychoflow.backends.polling import PollBackoff, poll_until
from ptychoflow.clock import iso
from ptychoflow.flowengine.failure import Failure, failure_from_text
from ptychoflow.fs import sha256_text


class RunStatus(str, enum.Enum):
    ACTIVE = "ACTIVE"
    INACTIVE = "INACTIVE"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    ENDED = "ENDED"  # cancelled

    @property
    def finished(self) -> bool:
        return self in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.ENDED)


def flow_checksum(definition: dict[str, Any], input_schema: dict[str, Any]) -> str:
    """A flow's deployment key on both backends: sha256 of the canonical JSON of definition
    and input schema (key order and spacing ignored)."""
    canonical = json.dumps({"definition": definition, "input_schema": input_schema}, sort_keys=True,
                           separators=(",", ":"))
    return sha256_text(canonical)


@dataclass(frozen=True)
class DeployedFlow:
    flow_id: str
    title: str
    checksum: str  # flow_checksum of what was deployed


@dataclass(frozen=True)
class RegisteredFunction:
    function_id: str
    name: str
    source_sha256: str


@dataclass
class StateRecord:
    """One state's execution within a run: the run timeline is a list of these."""

    name: str
    status: str  # ACTIVE | SUCCEEDED | FAILED
    started: float | None = None
    finished: float | None = None
    error: str | None = None

    @property
    def duration(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return self.finished - self.started

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "started": iso(self.started), "finished": iso(self.finished),
                "duration": self.duration, "error": self.error}


@dataclass
class RunInfo:
    run_id: str
    flow_id: str
    status: RunStatus
    label: str = ""
    tags: list[str] = field(default_factory=list)
    created: float | None = None
    completed: float | None = None
    current_state: str | None = None
    output: dict[str, Any] | None = None
    error: str | None = None
    timeline: list[StateRecord] = field(default_factory=list)
    web_url: str | None = None
    failure: Failure | None = None  # why a FAILED run failed: state, error, one-line reason

    def cause(self) -> Failure | None:
        """Why a FAILED run failed (state, error, one-line reason): its own record of it
        (local), else read from its error text (a Globus run)."""
        if self.status is not RunStatus.FAILED:
            return None
        return self.failure or (failure_from_text(self.error) if self.error else None)

    def to_json(self) -> dict[str, Any]:
        """The run as ``--json`` and the dashboard show it: the cause first, ISO 8601 times,
        durations in seconds."""
        failure = self.cause()
        return {
            "run_id": self.run_id, "flow_id": self.flow_id, "status": self.status.value, "label": self.label,
            "tags": self.tags, "created": iso(self.created), "completed": iso(self.completed),
            "current_state": self.current_state,
            "failure": None if failure is None else {"state": failure.state, "error": failure.error,
                                                     "message": failure.message, "cause": failure.cause},
            "error": self.error, "output": self.output, "web_url": self.web_url,
            "timeline": [record.to_json() for record in self.timeline],
        }


class Backend(abc.ABC):
    """What ptychoflow needs from a flow service. Runs are asynchronous everywhere.

    Callers never ask which backend they hold: what differs (a local worker to start, a
    service's own validation, how often to poll) is behind these verbs, a no-op where it
    does not apply.
    """

    name: str

    @abc.abstractmethod
    def deploy_flow(self, definition_path: Path) -> DeployedFlow:
        """Create or update the flow (idempotent, keyed on a checksum of definition + schema)."""

    @abc.abstractmethod
    def register_function(self, source_path: Path, name: str) -> RegisteredFunction:
        """Register a remote function; re-registers only when its source changes."""

    @abc.abstractmethod
    def start_run(
        self, flow: DeployedFlow, body: dict[str, Any], *, label: str = "", tags: list[str] | None = None,
        notify_on: Sequence[str] = (),
    ) -> RunInfo:
        """Record a run and return at once; execution happens elsewhere.

        ``notify_on``: run statuses (INACTIVE, FAILED, SUCCEEDED) on which the service
        e-mails the run's creator; a backend without such a service ignores it.
        """

    @abc.abstractmethod
    def get_run(self, run_id: str) -> RunInfo:
        """Status, output and state timeline of one run."""

    @abc.abstractmethod
    def get_run_log(self, run_id: str) -> list[dict[str, Any]]:
        """The run's event log, oldest first, in the Flows API's entry shape."""

    @abc.abstractmethod
    def list_runs(self, *, limit: int = 50) -> list[RunInfo]:
        """Most recent runs first."""

    @abc.abstractmethod
    def cancel_run(self, run_id: str) -> RunInfo:
        """Ask the run to stop; returns its status afterwards."""

    @abc.abstractmethod
    def resume_run(self, run_id: str, *, check: bool = True) -> RunInfo:
        """Continue an INACTIVE run. ``check``: first make sure what it waits for is there
        (raising a one-line error that says how to provide it); returns its status afterwards."""

    @abc.abstractmethod
    def validate_run(self, flow: DeployedFlow, body: dict[str, Any]) -> None:
        """Raise an InputError naming the field when the flow would refuse ``body``; start nothing."""

    def ensure_worker(self) -> int | None:
        """Start what executes recorded runs, where this backend needs one; its pid, or None."""
        return None

    def prepare(self, *, start_worker: bool = True) -> None:
        """Make this deployment ready to run flows from here (functions, worker); no-op by default."""

    def worker_health(self) -> Any | None:
        """How the worker that executes recorded runs is doing (``flowengine.health.EngineHealth``:
        running, stalled or down, and the runs waiting on it); None where a service runs them."""
        return None

    def supervise_worker(self, *, restart: bool) -> Any | None:
        """Watch that worker from this process, restarting it if it dies when `restart` (else only
        reporting it): a started ``EngineSupervisor`` to stop later, or None where there is none."""
        return None

    def run_stats(self, bounds: tuple[float, ...]) -> Any | None:
        """Aggregates over every run ever recorded here (``flowengine.store.RunStats``: what
        Prometheus counters need), or None where the runs live in a service."""
        return None

    def preflight(self, **options: Any) -> list[Any]:
        """Checks of the external services this backend uses, each OK or FAIL with its fix."""
        from ptychoflow.errors import PtychoflowError

        raise PtychoflowError(f"the {self.name} backend uses no external service to check; `ptychoflow doctor` checks this machine")

    def poll_backoff(self) -> PollBackoff:
        """How often :meth:`wait_run` asks: a cheap local store can be asked often."""
        return PollBackoff(initial=0.5, factor=1.0, maximum=0.5, jitter=0.0)

    def run_status(self, run_id: str) -> RunStatus:
        """Just the status (a backend with a cheaper probe than ``get_run`` overrides this)."""
        return self.get_run(run_id).status

    def wait_run(
        self,
        run_id: str,
        *,
        timeout: float | None = None,
        on_update: Callable[[RunInfo], None] | None = None,
        backoff: PollBackoff | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> RunInfo:
        """Poll until the run finishes, goes INACTIVE (a person must act) or ``timeout`` passes.

        ``on_update`` sees the run at every poll (a live view); without it only the status is
        fetched until the end.
        """

        def settled() -> bool:
            if on_update is not None:
                info = self.get_run(run_id)
                on_update(info)
                status = info.status
            else:
                status = self.run_status(run_id)
            return status.finished or status is RunStatus.INACTIVE

        poll_until(settled, timeout=timeout, backoff=backoff or self.poll_backoff(), sleep=sleep, clock=clock)
        return self.get_run(run_id)
