"""Local "collections": a Globus collection id (or site name) mapped to a directory."""

from __future__ import annotations

from pathlib import Path

from ptychoflow.flowengine.providers.base import ActionUnableToRun, EngineEnv


def collection_root(env: EngineEnv, collection_id: str, field: str) -> Path:
    """The directory behind ``collection_id``; unknown ids cannot run."""
    root = env.collections.get(collection_id)
    if root is None:
        known = ", ".join(sorted(env.collections)) or "none"
        raise ActionUnableToRun(f"{field}: unknown local collection {collection_id!r} (known: {known})")
    return root


def resolve(env: EngineEnv, collection_id: str, path: str, field: str) -> Path:
    """Collection path (``/a/b`` or ``~/a/b``) -> local path, never escaping the root."""
    if not isinstance(path, str) or not path:
        raise ActionUnableToRun(f"{field}: a path is required")
    root = collection_root(env, collection_id, field).resolve()
    relative = path.removeprefix("/").removeprefix("~").lstrip("/")  # "/~/a", "~/a", "/a" are all root/a
    target = (root / relative).resolve() if relative else root
    if target != root and not target.is_relative_to(root):
        raise ActionUnableToRun(f"{field}: {path!r} escapes collection {collection_id!r}")
    return target
