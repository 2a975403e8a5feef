"""The local Globus Compute v3 action provider: registered functions in per-endpoint pools.

Body, as https://compute.actions.globus.org/v3 takes it: ``endpoint_id`` and ``tasks``
(``[{"function_id": ..., "args": [...], "kwargs": {...}}]``), optionally ``task_group_id``,
``user_endpoint_config``, ``resource_specification``, ``create_queue``. Anything else, such
as the V2 provider's top-level ``function_id``/``args``/``kwargs``, is refused, as the
service refuses it. ``user_endpoint_config`` must be an object; there is no endpoint
template here to render it with. Each endpoint id gets its own pool of worker processes
(``ProcessSlots``) sized from the profile (``hpc.workers``; the edge has 1). Result:
``details.results[i].output`` and ``details.result[i]`` (the same outputs, the older field);
a raising function fails the action with its traceback text in ``details.exception``.

Cancelling an action kills the processes running its tasks (and what they started) and frees
their slots at once. Slot processes die with the engine worker. A task whose process died
mid-call is rerun only as the endpoint's ``retries_on_worker_loss`` allows (see ``compute_task``).
"""

from __future__ import annotations

import threading
from concurrent.futures import CancelledError, Future
from pathlib import Path
from typing import Any

from ptychoflow.flowengine.action_journal import INTERRUPTED, ActionJournal
from ptychoflow.flowengine.process_slots import ProcessSlots, RemoteError, SlotLost, TaskKilled
from ptychoflow.flowengine.providers.base import (
    ACTIVE, FAILED, SUCCEEDED, ActionProvider, ActionUnableToRun, EngineEnv, iso_now, status_document,
)
from ptychoflow.flowengine.providers.functions import resolve_function
from ptychoflow.fs import sha256_text
from ptychoflow.names import is_safe_component, printable

RUN_TASK = "ptychoflow.flowengine.providers.compute_task:run_task"
URL = "https://compute.actions.globus.org/v3"
# The fields the V3 action provider accepts (its input schema: the V3 submit route's, plus endpoint_id).
BODY_FIELDS = {"endpoint_id", "tasks", "task_group_id", "user_endpoint_config", "resource_specification", "create_queue"}
TASK_FIELDS = {"function_id", "args", "kwargs"}


def task_key(action_id: str, index: int) -> str:
    """A filesystem-safe, stable key for task ``index`` of an action."""
    return sha256_text(f"{action_id}#{index}")[:32]


class _Action:
    """One submitted action: its tasks' futures and how to submit each task again."""

    def __init__(self, endpoint_id: str, started: str) -> None:
        self.endpoint_id = endpoint_id
        self.started = started
        self.futures: list[Future] = []
        self.submissions: list[tuple] = []


class ComputeProvider(ActionProvider):
    url = URL

    def __init__(self, env: EngineEnv) -> None:
        self.env = env
        self._pools: dict[str, ProcessSlots] = {}
        self._actions: dict[str, _Action] = {}
        self._lock = threading.Lock()

    def _pool(self, endpoint_id: str) -> ProcessSlots:
        pool = self._pools.get(endpoint_id)
        if pool is None:
            pool = ProcessSlots(self.env.endpoints[endpoint_id], name=f"compute-{endpoint_id}")
            self._pools[endpoint_id] = pool
        return pool

    def _results_dir(self, endpoint_id: str) -> Path:
        """Where an endpoint's task results are kept (its id was checked by ``_tasks``)."""
        return self.env.state_dir / "compute" / endpoint_id

    def _tasks(self, body: dict[str, Any]) -> list[tuple[str, Path, list[Any], dict[str, Any]]]:
        endpoint_id = body.get("endpoint_id")
        if endpoint_id not in self.env.endpoints:
            known = ", ".join(sorted(self.env.endpoints)) or "none"
            raise ActionUnableToRun(f"endpoint_id: unknown local compute endpoint {endpoint_id!r} (known: {known})")
        if not is_safe_component(endpoint_id):  # it names a directory; the profile's id could be anything
            raise ActionUnableToRun(f"endpoint_id: {printable(endpoint_id)} is not a safe directory name")
        unknown = sorted(set(body) - BODY_FIELDS)
        if unknown:
            raise ActionUnableToRun(f"request body: {', '.join(unknown)} not accepted by the V3 Compute provider "
                                    "(functions, args and kwargs go in tasks[])")
        for field in ("user_endpoint_config", "resource_specification"):
            if field in body and not isinstance(body[field], dict):
                raise ActionUnableToRun(f"request body: {field} must be an object")
        tasks = body.get("tasks")
        if not isinstance(tasks, list) or not tasks:
            raise ActionUnableToRun("request body: tasks must be a non-empty list of {function_id, kwargs}")
        resolved = []
        for i, task in enumerate(tasks):
            if isinstance(task, dict) and (extra := sorted(set(task) - TASK_FIELDS)):
                raise ActionUnableToRun(f"tasks[{i}]: {', '.join(extra)} not accepted (only function_id, args, kwargs)")
            function_id = task.get("function_id") if isinstance(task, dict) else None
            found = resolve_function(self.env.state_dir, function_id) if isinstance(function_id, str) else None
            if found is None:
                raise ActionUnableToRun(
                    f"tasks[{i}].function_id: {function_id!r} is not a registered local function "
                    "(run `ptychoflow functions register`; an edited source gets a new id)"
                )
            args, kwargs = task.get("args", []), task.get("kwargs", {})
            if not isinstance(kwargs, dict) or not isinstance(args, list):
                raise ActionUnableToRun(f"tasks[{i}]: args must be a list and kwargs an object")
            resolved.append((found[0], found[1], args, kwargs))
        return resolved

    def run(self, action_id: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if action_id not in self._actions:
                tasks = self._tasks(body)
                endpoint_id = body["endpoint_id"]
                action = _Action(endpoint_id, iso_now())
                results_dir = str(self._results_dir(endpoint_id))
                retries = self.env.retries_on_worker_loss.get(endpoint_id, 0)
                for i, (name, path, args, kwargs) in enumerate(tasks):
                    action.submissions.append((task_key(action_id, i), name, str(path), kwargs, results_dir, args,
                                               retries))
                action.futures = [self._pool(endpoint_id).submit(RUN_TASK, *task) for task in action.submissions]
                self._actions[action_id] = action
        return self.status(action_id)  # type: ignore[return-value]

    def status(self, action_id: str) -> dict[str, Any] | None:
        with self._lock:
            action = self._actions.get(action_id)
            if action is None:
                return None
            self._resubmit_lost(action)
            if not all(f.done() for f in action.futures):
                return status_document(action_id, ACTIVE, {"results": []}, started=action.started)
        results = [{"task_id": task_key(action_id, i), **_outcome(future)} for i, future in enumerate(action.futures)]
        failed = [r for r in results if r["status"] != "SUCCESS"]
        details: dict[str, Any] = {"result": [r.get("output") for r in results], "results": results}
        if failed:
            details["exception"] = failed[0]["exception"]
            details["description"] = failed[0].get("error", "task failed")
        return status_document(action_id, FAILED if failed else SUCCEEDED, details, started=action.started,
                               completed=iso_now())

    def _resubmit_lost(self, action: _Action) -> None:
        """A task whose slot process died goes back to the pool; its journal then decides
        whether it may run again (retries_on_worker_loss) or ends as WorkerLost."""
        for i, future in enumerate(action.futures):
            if future.done() and not future.cancelled() and isinstance(future.exception(), SlotLost):
                action.futures[i] = self._pool(action.endpoint_id).submit(RUN_TASK, *action.submissions[i])

    def cancel(self, action_id: str) -> None:
        """Kill the processes running the action's tasks; queued tasks never start."""
        with self._lock:
            action = self._actions.get(action_id)
            pool = self._pools.get(action.endpoint_id) if action else None
        for future in action.futures if action and pool else []:
            pool.kill(future)

    def release(self, action_id: str) -> None:
        """Forget the action and delete its stored task results (the engine calls this only
        after committing the outcome, so no resume can need them again)."""
        with self._lock:
            action = self._actions.pop(action_id, None)
        if action is None:
            return
        journal = ActionJournal(self._results_dir(action.endpoint_id))
        for i in range(len(action.futures)):
            journal.forget(task_key(action_id, i))

    def close(self) -> None:
        """Stop every pool: the functions still running are killed with their processes."""
        for pool in self._pools.values():
            pool.shutdown()


def _outcome(future: Future) -> dict[str, Any]:
    """A finished task's result document, also for the ways it can end without one."""
    try:
        return future.result()
    except (TaskKilled, CancelledError):
        return {"status": "FAILED", "error": "Cancelled: the task was stopped on request",
                "exception": "the task was stopped on request (its process was terminated)"}
    except SlotLost as exc:  # only when resubmitting was impossible
        return {"status": "FAILED", "error": f"{INTERRUPTED}: {exc}", "exception": str(exc)}
    except RemoteError as exc:
        text = str(exc)
        return {"status": "FAILED", "error": text.strip().splitlines()[-1] if text.strip() else "RemoteError",
                "exception": text}


FACTORIES = {URL: ComputeProvider}
