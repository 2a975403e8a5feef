"""The verbs every backend offers, and the records they return.

Both backends speak the Globus Flows vocabulary: a run has a ``run_id``, a ``status`` in
``ACTIVE | INACTIVE | SUCCEEDED | FAILED | ENDED`` and a log of state events.
"""

from __future__ import annotations

import abc
import enum
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


class Backend(abc.ABC):
    """What ptychoflow needs from a flow service. Runs are asynchronous everywhere."""

    name: str

    @abc.abstractmethod
    def deploy_flow(self, definition_path: Path) -> DeployedFlow:
        """Create or update the flow (idempotent, keyed on a checksum of definition + schema)."""

    @abc.abstractmethod
    def register_function(self, source_path: Path, name: str) -> RegisteredFunction:
        """Register a remote function; re-registers only when its source changes."""

    @abc.abstractmethod
    def start_run(
        self, flow: DeployedFlow, body: dict[str, Any], *, label: str = "", tags: list[str] | None = None
    ) -> RunInfo:
        """Record a run and return at once; execution happens elsewhere."""

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
