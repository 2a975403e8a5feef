"""Registered remote functions: name <-> (id, source sha256), per backend.

One JSON file, ``<state_dir>/functions.json``, shaped the same for both backends:

    {"local":  {"reconstruct": {"function_id": "...", "source_sha256": "...", "registered": 1732240000.0}},
     "globus": {"reconstruct": {"function_id": "<uuid from Globus Compute>", ...}}}

The local backend derives deterministic ids from the name and source hash; the globus
backend stores the ids Globus Compute returns. A function is re-registered only when its
source sha256 changes.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from ptychoflow.fs import JsonStateFile, sha256_file
from ptychoflow.resources import functions_dir

REGISTRY_FILENAME = "functions.json"
_LOCAL_NAMESPACE = uuid.UUID("6f1b7c2e-2b61-4c43-9d7a-0c5e2f9b8a11")


@dataclass(frozen=True)
class FunctionRecord:
    function_id: str
    source_sha256: str
    registered: float


def local_function_id(name: str, sha256: str) -> str:
    """Deterministic id: the same source always gets the same id on every machine."""
    return str(uuid.uuid5(_LOCAL_NAMESPACE, f"{name}:{sha256}"))


def bundled_functions() -> dict[str, Path]:
    """name -> source file for every remote function shipped in ``functions/``."""
    return {p.stem: p for p in sorted(functions_dir().glob("*.py")) if not p.stem.startswith("_")}


class FunctionRegistry:
    """The on-disk registry (a JSON state file: locked, atomic updates)."""

    def __init__(self, state_dir: Path) -> None:
        self.state = JsonStateFile(Path(state_dir) / REGISTRY_FILENAME, "function registry")

    def get(self, backend: str, name: str) -> FunctionRecord | None:
        entry = self.state.load().get(backend, {}).get(name)
        return FunctionRecord(**entry) if entry else None

    def all(self, backend: str) -> dict[str, FunctionRecord]:
        return {name: FunctionRecord(**entry) for name, entry in self.state.load().get(backend, {}).items()}

    def put(self, backend: str, name: str, record: FunctionRecord) -> None:
        with self.state.updating() as registry:
            registry.setdefault(backend, {})[name] = asdict(record)


def register_locally(registry: FunctionRegistry, name: str, path: Path) -> FunctionRecord:
    sha = sha256_file(path)
    existing = registry.get("local", name)
    if existing and existing.source_sha256 == sha:
        return existing
    record = FunctionRecord(local_function_id(name, sha), sha, time.time())
    registry.put("local", name, record)
    return record
