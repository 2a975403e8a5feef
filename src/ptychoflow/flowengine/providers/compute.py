"""The local Globus Compute v3 action provider: registered functions in per-endpoint pools.

Body: ``{"endpoint_id": ..., "tasks": [{"function_id": ..., "args": [...], "kwargs": {...}}]}``
(the single-task form with top-level ``function_id``/``args``/``kwargs`` is accepted too). Each endpoint
id gets its own process pool sized from the profile (``hpc.workers``; the edge has 1).
Result: ``details.results[i].output``; a raising function fails the action with its
traceback text in ``details.exception``.
"""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from ptychoflow.flowengine.providers.base import (
    ACTIVE, FAILED, SUCCEEDED, ActionProvider, ActionUnableToRun, EngineEnv, iso_now, status_document,
)
from ptychoflow.flowengine.providers.compute_task import run_task
from ptychoflow.flowengine.providers.functions import resolve_function
from ptychoflow.fs import sha256_text
from ptychoflow.names import is_safe_component, printable

URL = "https://compute.actions.globus.org/v3"


def task_key(action_id: str, index: int) -> str:
    """A filesystem-safe, stable key for task ``index`` of an action."""
    return sha256_text(f"{action_id}#{index}")[:32]


class ComputeProvider(ActionProvider):
    url = URL

    def __init__(self, env: EngineEnv) -> None:
        self.env = env
        self._pools: dict[str, ProcessPoolExecutor] = {}
        self._actions: dict[str, tuple[list[Future], str]] = {}
        self._endpoints: dict[str, str] = {}  # action id -> endpoint id (where its results live)
        self._lock = threading.Lock()

    def _pool(self, endpoint_id: str) -> ProcessPoolExecutor:
        pool = self._pools.get(endpoint_id)
        if pool is None:
            # spawn: the engine is multi-threaded, and fork after threads can deadlock.
            context = multiprocessing.get_context("spawn")
            pool = ProcessPoolExecutor(self.env.endpoints[endpoint_id], mp_context=context)
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
        tasks = body.get("tasks")
        if tasks is None and "function_id" in body:
            tasks = [{"function_id": body["function_id"], "args": body.get("args", []), "kwargs": body.get("kwargs", {})}]
        if not isinstance(tasks, list) or not tasks:
            raise ActionUnableToRun("request body: tasks must be a non-empty list of {function_id, kwargs}")
        resolved = []
        for i, task in enumerate(tasks):
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
                results_dir = str(self._results_dir(body["endpoint_id"]))
                pool = self._pool(body["endpoint_id"])
                futures = [
                    pool.submit(run_task, task_key(action_id, i), name, str(path), kwargs, results_dir, args)
                    for i, (name, path, args, kwargs) in enumerate(tasks)
                ]
                self._actions[action_id] = (futures, iso_now())
                self._endpoints[action_id] = body["endpoint_id"]
        return self.status(action_id)  # type: ignore[return-value]

    def status(self, action_id: str) -> dict[str, Any] | None:
        with self._lock:
            entry = self._actions.get(action_id)
        if entry is None:
            return None
        futures, started = entry
        if not all(f.done() for f in futures):
            return status_document(action_id, ACTIVE, {"results": []}, started=started)
        results = []
        for i, future in enumerate(futures):
            try:
                outcome = future.result()
            except BrokenProcessPool as exc:
                self._forget_broken_pools()
                outcome = {"status": "FAILED", "exception": f"compute worker process died: {exc}",
                           "error": "WorkerLost"}
            except Exception as exc:  # noqa: BLE001 - cancellation or pickling problems
                outcome = {"status": "FAILED", "exception": repr(exc), "error": type(exc).__name__}
            results.append({"task_id": task_key(action_id, i), **outcome})
        failed = [r for r in results if r["status"] != "SUCCESS"]
        details: dict[str, Any] = {"results": results}
        if failed:
            details["exception"] = failed[0]["exception"]
            details["description"] = failed[0].get("error", "task failed")
        return status_document(action_id, FAILED if failed else SUCCEEDED, details, started=started,
                               completed=iso_now())

    def _forget_broken_pools(self) -> None:
        for endpoint_id, pool in list(self._pools.items()):
            if getattr(pool, "_broken", False):
                del self._pools[endpoint_id]

    def cancel(self, action_id: str) -> None:
        with self._lock:
            entry = self._actions.get(action_id)
        for future in entry[0] if entry else []:
            future.cancel()  # a task already running finishes; its result is kept but unused

    def release(self, action_id: str) -> None:
        """Forget the action and delete its stored task results (the engine calls this only
        after committing the outcome, so no resume can need them again)."""
        with self._lock:
            entry = self._actions.pop(action_id, None)
            endpoint_id = self._endpoints.pop(action_id, None)
        if entry is None or endpoint_id is None:
            return
        directory = self._results_dir(endpoint_id)
        for i in range(len(entry[0])):
            for suffix in (".json", ".lock"):
                (directory / f"{task_key(action_id, i)}{suffix}").unlink(missing_ok=True)

    def close(self) -> None:
        for pool in self._pools.values():
            pool.shutdown(wait=False, cancel_futures=True)


FACTORIES = {URL: ComputeProvider}
