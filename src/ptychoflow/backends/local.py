"""The local backend: flows run on the embedded durable engine (``ptychoflow.flowengine``).

``start_run`` only records the run; an engine worker process executes it (see
``ensure_engine_running``). Every method reads the SQLite store, so any process can ask.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from ptychoflow.backends.base import (
    Backend, DeployedFlow, RegisteredFunction, RunInfo, RunStatus, StateRecord, flow_checksum,
)
from ptychoflow.flowengine.definition import check_runs_locally, load_definition, load_schema
from ptychoflow.flowengine.failure import root_cause
from ptychoflow.flowengine.limits import json_size
from ptychoflow.flowengine.parameters import hide_private_state
from ptychoflow.flowengine.providers.base import EngineEnv
from ptychoflow.flowengine.providers.functions import record_source
from ptychoflow.flowengine.store import RunRow, Store
from ptychoflow.errors import InputError, PtychoflowError
from ptychoflow.function_registry import FunctionRegistry, bundled_functions, register_locally
from ptychoflow.names import printable


class RunNotFoundError(PtychoflowError):
    """No run with that id (or id prefix) in this profile's store."""


class AmbiguousRunIdError(PtychoflowError):
    """An id prefix that several runs share."""


class LocalBackend(Backend):
    name = "local"

    def __init__(self, env: EngineEnv, profile: Any = None) -> None:
        self.env = env
        self.profile = profile
        self.store = Store(env.state_dir)

    @classmethod
    def from_profile(cls, profile: Any) -> "LocalBackend":
        return cls(EngineEnv.from_profile(profile), profile)

    # --- flows and functions --------------------------------------------------------------
    def deploy_flow(self, definition_path: Path) -> DeployedFlow:
        definition_path = Path(definition_path)
        definition = load_definition(definition_path)
        check_runs_locally(definition, str(definition_path))
        schema = load_schema(definition_path)
        checksum = flow_checksum(definition, schema)
        flow_id = self.store.put_flow(definition_path.stem, checksum, definition, schema, str(definition_path))
        return DeployedFlow(flow_id=flow_id, title=definition_path.stem, checksum=checksum)

    def register_function(self, source_path: Path, name: str) -> RegisteredFunction:
        source_path = Path(source_path)
        if not source_path.is_file():
            raise InputError(source_path, "(file)", "no such function source file")
        record = register_locally(FunctionRegistry(self.env.state_dir), name, source_path)
        record_source(self.env.state_dir, record.function_id, name, source_path)
        return RegisteredFunction(record.function_id, name, record.source_sha256)

    # --- runs -----------------------------------------------------------------------------
    def _deployed(self, flow: DeployedFlow) -> dict[str, Any]:
        stored = self.store.get_flow(flow.flow_id)
        if stored is None:
            raise PtychoflowError(f"flow {flow.flow_id} is not deployed on this profile; deploy it first")
        return stored

    def validate_run(self, flow: DeployedFlow, body: dict[str, Any]) -> None:
        """The flow's input schema, applied as the service applies it (no defaults filled in),
        and the size a run's input may have (``[engine] max_state_bytes``)."""
        stored = self._deployed(flow)
        source = stored["source"] or flow.title
        _validate_input(body, stored["input_schema"], source)
        size = json_size(body)
        if size > self.env.limits.max_state_bytes:  # refused before anything is stored
            raise InputError(f"{source} input", "(input)", f"{size / 1024:.1f} KiB of JSON; a run's input and state may "
                             f"hold {self.env.limits.max_state_bytes / 1024:.1f} KiB (profile [engine] max_state_bytes)")

    def start_run(self, flow: DeployedFlow, body: dict[str, Any], *, label: str = "",
                  tags: list[str] | None = None, notify_on: Sequence[str] = ()) -> RunInfo:
        """Record the run for the engine worker (no e-mail service here: ``notify_on`` is ignored)."""
        self.validate_run(flow, body)
        stored = self._deployed(flow)
        run_id = self.store.create_run(flow.flow_id, stored["definition"]["StartAt"], body, label=label,
                                       tags=list(tags or []), username=self.env.username)
        return self.get_run(run_id)

    def _row(self, run_id: str) -> RunRow:
        """The run `run_id` names: its full id or a unique prefix of it."""
        found = self.store.find_runs(run_id) if run_id else []
        if not found:
            raise RunNotFoundError(f"run {run_id}: not found in {self.store.path}")
        if len(found) > 1:
            shown = ", ".join(run.run_id[:12] for run in found[:4]) + (", …" if len(found) > 4 else "")
            raise AmbiguousRunIdError(f"run {run_id}: ambiguous, the id of several runs starts with it ({shown}); "
                                   "give more characters")
        return found[0]

    def get_run(self, run_id: str) -> RunInfo:
        run = self._row(run_id)
        timeline = [
            StateRecord(name=s.name, status=s.status, started=s.started, finished=s.finished, error=s.error)
            for s in self.store.steps(run.run_id)
        ]
        return RunInfo(
            run_id=run.run_id, flow_id=run.flow_id, status=RunStatus(run.status), label=run.label, tags=run.tags,
            created=run.created, completed=run.completed, current_state=run.current_state,
            output=_visible_output(run.output),
            error=run.error, timeline=timeline,
            failure=root_cause(self.store.events(run.run_id)) if run.status == "FAILED" else None,
        )

    def get_run_log(self, run_id: str) -> list[dict[str, Any]]:
        """Entries shaped like the Flows API's run log: code, description, details, ISO time."""
        return [{**entry, "time": datetime.fromtimestamp(entry["time"], timezone.utc).isoformat(),
                 "details": _visible_details(entry["details"])}
                for entry in self.store.events(self._row(run_id).run_id)]

    def list_runs(self, *, limit: int = 50) -> list[RunInfo]:
        return [self.get_run(run.run_id) for run in self.store.list_runs(limit=limit)]

    def cancel_run(self, run_id: str) -> RunInfo:
        run = self._row(run_id)
        self.store.cancel_run(run.run_id)
        return self.get_run(run.run_id)

    def resume_run(self, run_id: str, *, check: bool = True) -> RunInfo:
        """Make an INACTIVE run ACTIVE again; the engine worker continues from its last committed
        state (nothing to check first: no consents here)."""
        run = self._row(run_id)
        if run.status == "INACTIVE":
            self.store.set_status(run.run_id, "ACTIVE", only_if=("INACTIVE",))
        return self.get_run(run.run_id)

    # --- the worker that executes recorded runs -------------------------------------------
    def ensure_worker(self) -> int | None:
        """The profile's engine worker: started (detached) if none is alive; its pid."""
        if self.profile is None:  # built from an engine env alone (tests): the caller runs the engine
            return None
        from ptychoflow.flowengine.worker import ensure_engine_running

        return ensure_engine_running(self.profile)

    def worker_health(self) -> Any:
        from ptychoflow.flowengine.health import store_health

        return store_health(self.store)

    def supervise_worker(self, *, restart: bool) -> Any:
        from ptychoflow.flowengine.supervisor import EngineSupervisor

        return EngineSupervisor(self.env.state_dir, restart=restart).start()

    def run_stats(self, bounds: tuple[float, ...]) -> Any:
        return self.store.stats(bounds)

    def prepare(self, *, start_worker: bool = True) -> None:
        """Register every bundled function (no-op when unchanged) and start the engine worker,
        so a fresh profile just works for `watch`, `dashboard` and `flows run`."""
        for name, path in bundled_functions().items():
            self.register_function(path, name)
        if start_worker:
            self.ensure_worker()


def _visible_output(output: Any) -> dict[str, Any] | None:
    """Run output as the service shows it: an object, ``_private*`` properties omitted."""
    if output is None:
        return None
    return hide_private_state(output) if isinstance(output, dict) else {"value": output}


def _visible_details(details: Any) -> Any:
    if isinstance(details, dict):
        return {k: hide_private_state(v) if k in ("input", "output") else v for k, v in details.items()}
    return details


def _validate_input(body: Any, schema: dict[str, Any], source: str) -> None:
    """Reject a run input that the flow's schema rejects, as the service does."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    error = next(iter(sorted(validator.iter_errors(body), key=lambda e: list(e.path))), None)
    if error is not None:
        field = ".".join(str(p) for p in error.absolute_path) or "(input)"
        message = error.message
        if error.validator == "pattern" and error.schema.get("description"):  # say what is wanted, not a regex
            message = f"{error.instance!r} is refused: {error.schema['description']}"
        raise InputError(f"{source} input", field, printable(message))
