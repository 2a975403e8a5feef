"""Find the source file behind a local function id.

Local function ids are deterministic (``local_function_id(name, sha256)``), so an id names
one exact version of one source file. Candidates are the files recorded by
``LocalBackend.register_function`` (``<state_dir>/function_sources.json``) and the bundled
``functions/``; a source edited since registration no longer matches its old id.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ptychoflow.function_registry import bundled_functions, local_function_id, source_sha256

SOURCES_FILENAME = "function_sources.json"


def record_source(state_dir: Path, function_id: str, name: str, path: Path) -> None:
    """Remember where a registered function's file is (atomic rewrite of a small JSON map)."""
    target = Path(state_dir) / SOURCES_FILENAME
    data = _load(target)
    data[function_id] = {"name": name, "path": str(Path(path).resolve())}
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(temporary, target)


def _load(path: Path) -> dict[str, dict[str, str]]:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def resolve_function(state_dir: Path, function_id: str) -> tuple[str, Path] | None:
    """(name, file) for ``function_id``, or None when no current source has that id."""
    entry = _load(Path(state_dir) / SOURCES_FILENAME).get(function_id)
    if entry:
        path = Path(entry["path"])
        if path.exists() and local_function_id(entry["name"], source_sha256(path)) == function_id:
            return entry["name"], path
    for name, path in bundled_functions().items():
        if local_function_id(name, source_sha256(path)) == function_id:
            return name, path
    return None
