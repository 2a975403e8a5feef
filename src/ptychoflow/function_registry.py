"""Registered remote functions: name <-> (id, source sha256), per backend.

One JSON file, ``<state_dir>/functions.json``, shaped the same for both backends:

    {"local":  {"reconstruct": {"function_id": "...", "source_sha256": "...", "registered": 1732240000.0}},
     "globus": {"reconstruct": {"function_id": "<uuid from Globus Compute>", ...}}}

The local backend derives deterministic ids from the name and source hash; the globus
backend stores the ids Globus Compute returns. A function is re-registered only when its
source sha256 changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from ptychoflow.resources import functions_dir

REGISTRY_FILENAME = "functions.json"
_LOCAL_NAMESPACE = uuid.UUID("6f1b7c2e-2b61-4c43-9d7a-0c5e2f9b8a11")


@dataclass(frozen=True)
class FunctionRecord:
    function_id: str
    source_sha256: str
    registered: float


def source_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def local_function_id(name: str, sha256: str) -> str:
    """Deterministic id: the same source always gets the same id on every machine."""
    return str(uuid.uuid5(_LOCAL_NAMESPACE, f"{name}:{sha256}"))


def bundled_functions() -> dict[str, Path]:
    """name -> source file for every remote function shipped in ``functions/``."""
    return {p.stem: p for p in sorted(functions_dir().glob("*.py")) if not p.stem.startswith("_")}


class FunctionRegistry:
    """The on-disk registry; writes go through a temporary file and an atomic rename."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / REGISTRY_FILENAME

    def _load(self) -> dict[str, dict[str, dict]]:
        if not self.path.exists():
            return {}
        try:
            return json.loads(self.path.read_text())
        except json.JSONDecodeError as exc:
            from ptychoflow.errors import InputError

            raise InputError(self.path, "(json)", f"corrupt function registry: {exc}") from None

    def get(self, backend: str, name: str) -> FunctionRecord | None:
        entry = self._load().get(backend, {}).get(name)
        return FunctionRecord(**entry) if entry else None

    def all(self, backend: str) -> dict[str, FunctionRecord]:
        return {name: FunctionRecord(**entry) for name, entry in self._load().get(backend, {}).items()}

    def put(self, backend: str, name: str, record: FunctionRecord) -> None:
        data = self._load()
        data.setdefault(backend, {})[name] = asdict(record)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
        os.replace(tmp, self.path)

    def needs_registration(self, backend: str, name: str, sha256: str) -> bool:
        current = self.get(backend, name)
        return current is None or current.source_sha256 != sha256


def register_locally(registry: FunctionRegistry, name: str, path: Path) -> FunctionRecord:
    sha = source_sha256(path)
    existing = registry.get("local", name)
    if existing and existing.source_sha256 == sha:
        return existing
    record = FunctionRecord(local_function_id(name, sha), sha, time.time())
    registry.put("local", name, record)
    return record
