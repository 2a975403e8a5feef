"""Runs inside a compute pool process: load a function file, call it, keep its result.

Exactly-once: a task holds an exclusive lock on ``<key>.lock`` while it runs and writes its
result to ``<key>.json`` (atomically and durably) before returning. A re-submitted task (the
engine crashed and resumed) takes the lock - waiting for an orphaned run of itself to end -
and returns the stored result instead of calling the function again.
"""

from __future__ import annotations

import importlib.util
import json
import os
import traceback
from pathlib import Path
from typing import Any

from ptychoflow.fs import atomic_write_text, file_lock

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
             args: list[Any] | None = None) -> dict[str, Any]:
    """Run (or recall) one task; returns {"status": SUCCESS|FAILED, "output"|"exception": ...}."""
    directory = Path(results_dir)
    directory.mkdir(parents=True, exist_ok=True)
    result_file = directory / f"{key}.json"
    with file_lock(directory / f"{key}.lock"):
        if result_file.exists():
            return json.loads(result_file.read_text())
        try:
            output = _load_function(name, path)(*(args or []), **kwargs)
            json.dumps(output)  # results travel as JSON, like Globus Compute's serialised results
            document = {"status": "SUCCESS", "output": output}
        except (Exception, SystemExit) as exc:  # the function's failure is its result
            document = {"status": "FAILED", "exception": "".join(traceback.format_exception(exc)),
                        "error": f"{type(exc).__name__}: {exc}"}
        atomic_write_text(result_file, json.dumps(document))
        return document
