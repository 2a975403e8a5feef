"""Find the source file behind a local function id.

Local function ids are deterministic (``local_function_id(name, sha256)``), so an id names
one exact version of one source file. Candidates are the files recorded by
``LocalBackend.register_function`` (``<state_dir>/function_sources.json``) and the bundled
``functions/``; a source edited since registration no longer matches its old id.
"""

from __future__ import annotations

from pathlib import Path

from ptychoflow.fs import JsonStateFile, sha256_file
from ptychoflow.function_registry import bundled_functions, local_function_id

SOURCES_FILENAME = "function_sources.json"


def _sources(state_dir: Path) -> JsonStateFile:
    return JsonStateFile(Path(state_dir) / SOURCES_FILENAME, "function sources")


def record_source(state_dir: Path, function_id: str, name: str, path: Path) -> None:
    """Remember where a registered function's file is."""
    with _sources(state_dir).updating() as sources:
        sources[function_id] = {"name": name, "path": str(Path(path).resolve())}


def resolve_function(state_dir: Path, function_id: str) -> tuple[str, Path] | None:
    """(name, file) for ``function_id``, or None when no current source has that id."""
    entry = _sources(state_dir).load().get(function_id)
    if entry:
        path = Path(entry["path"])
        if path.exists() and local_function_id(entry["name"], sha256_file(path)) == function_id:
            return entry["name"], path
    for name, path in bundled_functions().items():
        if local_function_id(name, sha256_file(path)) == function_id:
            return name, path
    return None
