"""Runs inside a compute slot process: load a function file, call it, keep its result.

Each task goes through an ``ActionJournal`` (``<results_dir>/<key>.*``):

- a finished task is never called again: a re-submission (the engine restarted) gets the
  stored result;
- a task whose process died mid-call (the engine was killed, the slot was lost) is called
  again only while the endpoint's ``retries_on_worker_loss`` allows, like Globus Compute's
  ``max_retries_on_system_failure``; with 0 (the default) it is at-most-once: the action fails
  with ``WorkerLost`` and the function is not run twice.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import traceback
from typing import Any

from ptychoflow.flowengine.action_journal import INTERRUPTED, ActionJournal, interrupted_message

log = logging.getLogger(__name__)
_MODULES: dict[tuple[str, float], Any] = {}


def _load_function(name: str, path: str) -> Any:
    key = (path, os.stat(path).st_mtime)
    module = _MODULES.get(key)
    if module is None:
        spec = importlib.util.spec_from_file_location(f"ptychoflow_remote_{name}", path)
        if spec is None or spec.loader is None:
            raise ImportError(f"{path}: cannot load as a Python module")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _MODULES[key] = module
    function = getattr(module, name, None)
    if not callable(function):
        raise AttributeError(f"{path}: defines no function named {name!r}")
    return function


def run_task(key: str, name: str, path: str, kwargs: dict[str, Any], results_dir: str,
             args: list[Any] | None = None, retries: int = 0) -> dict[str, Any]:
    """Run (or recall) one task; returns {"status": SUCCESS|FAILED, "output"|"exception": ...}."""
    journal = ActionJournal(results_dir)
    with journal.exclusive(key):
        stored = journal.outcome(key)
        if stored is not None:  # finished before a restart (perhaps killed before it could say so)
            log.info("task %s: %s finished %s (recalled)", key, name, stored["status"])
            return stored
        starts = journal.starts(key)
        if starts > retries:
            message = interrupted_message(starts, retries)
            return journal.finish(key, {"status": "FAILED", "error": f"{INTERRUPTED}: {message}", "exception": message})
        log.info("task %s: %s started (attempt %d)", key, name, journal.begin(key))
        try:
            output = _load_function(name, path)(*(args or []), **kwargs)
            json.dumps(output)  # results travel as JSON, like Globus Compute's serialised results
            document = {"status": "SUCCESS", "output": output}
        except (Exception, SystemExit) as exc:  # the function's failure is its result
            document = {"status": "FAILED", "exception": "".join(traceback.format_exception(exc)),
                        "error": f"{type(exc).__name__}: {exc}"}
        journal.finish(key, document)
        log.info("task %s: %s finished %s", key, name, document["status"])
        return document
