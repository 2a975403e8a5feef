"""Register ``functions/*.py`` with Globus Compute and check the endpoints that run them.

Functions are registered as source text (``register_source_code``), so the sha256 we
record is the sha256 of exactly what the service stores, and a function is re-registered
only when that source changes. The entry point is the function named like the file.
"""

from __future__ import annotations

import ast
import logging
import platform
import time
import uuid
from pathlib import Path
from typing import Any, Protocol

import globus_sdk

from ptychoflow.backends.base import RegisteredFunction
from ptychoflow.errors import InputError
from ptychoflow.fs import sha256_file
from ptychoflow.function_registry import FunctionRecord, FunctionRegistry

log = logging.getLogger(__name__)

BACKEND_KEY = "globus"


class ComputeClient(Protocol):
    """The slice of ``globus_compute_sdk.Client`` we use (real client in production and tests)."""

    def register_source_code(self, source: str, function_name: str, **kwargs: Any) -> str: ...
    def get_endpoint_metadata(self, endpoint_uuid: str) -> dict[str, Any]: ...
    def get_endpoint_status(self, endpoint_uuid: str) -> dict[str, Any]: ...


def check_entry_point(path: Path, name: str) -> str:
    """The source text, after checking it defines ``def <name>(...)`` at top level."""
    source = path.read_text()
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as exc:
        raise InputError(path, f"line {exc.lineno}", f"syntax error: {exc.msg}") from None
    names = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    if name not in names:
        raise InputError(path, name, f"no top-level function `{name}` to register (found: {', '.join(sorted(names)) or 'none'})")
    return source


def register_function(
    client: ComputeClient,
    registry: FunctionRegistry,
    path: Path,
    name: str,
    *,
    group_id: str | None = None,
    force: bool = False,
) -> RegisteredFunction:
    """Register ``name`` from ``path`` unless the registry already holds this exact source."""
    path = Path(path)
    sha = sha256_file(path)
    existing = registry.get(BACKEND_KEY, name)
    if existing and existing.source_sha256 == sha and not force:
        log.info("function %s unchanged (sha256 %s); keeping %s", name, sha[:12], existing.function_id)
        return RegisteredFunction(existing.function_id, name, sha)
    source = check_entry_point(path, name)
    kwargs: dict[str, Any] = {"description": f"ptychoflow {name} (source sha256 {sha})"}
    if group_id:
        kwargs["group"] = group_id
    function_id = client.register_source_code(source, name, **kwargs)
    registry.put(BACKEND_KEY, name, FunctionRecord(function_id, sha, time.time()))
    log.info("registered function %s as %s", name, function_id)
    return RegisteredFunction(function_id, name, sha)


def is_uuid(value: str | None) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def endpoint_python(metadata: dict[str, Any]) -> str | None:
    """The endpoint's Python version, wherever this service version reports it."""
    for holder in (metadata, metadata.get("metadata") or {}, metadata.get("details") or {}):
        version = holder.get("python_version")
        if version:
            return str(version).split()[0]
    return None


def python_mismatch(metadata: dict[str, Any], endpoint_id: str, local: str | None = None) -> str | None:
    """A warning when the endpoint's major.minor Python differs from ours (source and pickles break)."""
    local = local or platform.python_version()
    remote = endpoint_python(metadata)
    if remote is None or remote.split(".")[:2] == local.split(".")[:2]:
        return None
    return (
        f"endpoint {endpoint_id} runs Python {remote} but this machine runs {local}; "
        "functions may fail to deserialize: build the endpoint environment with the same major.minor Python"
    )


def check_endpoints(client: ComputeClient, endpoint_ids: list[str]) -> list[str]:
    """Warnings for every real endpoint whose Python differs from ours; logged as well."""
    warnings = []
    for endpoint_id in dict.fromkeys(e for e in endpoint_ids if is_uuid(e)):
        try:
            metadata = client.get_endpoint_metadata(endpoint_id)
        except globus_sdk.GlobusAPIError as exc:  # not visible to us: the check is advice, not a gate
            warning = f"cannot read endpoint {endpoint_id} ({exc.http_status} {exc.code}); Python version not checked"
        else:
            warning = python_mismatch(metadata, endpoint_id)
        if warning:
            log.warning("%s", warning)
            warnings.append(warning)
    return warnings
