"""JSONPath on the run's state document, with the Flows service's semantics.

Reading uses jsonpath-ng; a path that matches nothing is an error (the service fails the run
rather than substituting null). Writing (``ResultPath``) accepts only reference paths made of
field names and indices, and creates intermediate objects as needed.
"""

from __future__ import annotations

import copy
import re
from functools import lru_cache
from typing import Any

from jsonpath_ng import Child, Fields, Index, JSONPath, Root
from jsonpath_ng import parse as _parse
from jsonpath_ng.exceptions import JsonPathLexerError, JsonPathParserError

from ptychoflow.flowengine.errors import runtime_error


class PathSyntaxError(ValueError):
    """The string is not a JSONPath the engine accepts."""


_MISSING = object()


_NAME = r"[\w@-]+"
_STEP = re.compile(rf"\.({_NAME})|\[(\d+)\]|\[\s*'([^']*)'\s*\]|\[\s*\"([^\"]*)\"\s*\]")


@lru_cache(maxsize=4096)
def _plain_steps(path: str) -> tuple[str | int, ...] | None:
    """Steps of a plain path (``$.a.where[0]['b c']``), parsed here; None for anything fancier.

    jsonpath-ng reserves ``where``/``wherenot`` as keywords, so ``$.where.id`` (a valid field
    name for the service) would not parse there; plain paths never reach it.
    """
    if not path.startswith("$"):
        return None
    steps: list[str | int] = []
    position = 1
    while position < len(path):
        match = _STEP.match(path, position)
        if match is None:
            return None
        name, index, single, double = match.groups()
        steps.append(int(index) if index is not None else next(v for v in (name, single, double) if v is not None))
        position = match.end()
    return tuple(steps)


@lru_cache(maxsize=4096)
def compile_path(path: str) -> JSONPath:
    """Parse once; every path must start at the root ``$``."""
    if not isinstance(path, str) or not path.startswith("$"):
        raise PathSyntaxError(f"{path!r} is not a JSONPath (must start with '$')")
    steps = _plain_steps(path)
    if steps is not None:
        node: JSONPath = Root()
        for step in steps:
            node = Child(node, Index(step) if isinstance(step, int) else Fields(step))
        return node
    try:
        return _parse(path)
    except (JsonPathLexerError, JsonPathParserError, Exception) as exc:  # jsonpath-ng raises bare Exceptions too
        raise PathSyntaxError(f"{path!r} is not a valid JSONPath: {exc}") from None


@lru_cache(maxsize=4096)
def reference_steps(path: str) -> tuple[str | int, ...]:
    """Field/index steps of a reference path (``$.a.b[0]``); ResultPath must be one of these."""
    plain = _plain_steps(path) if isinstance(path, str) else None
    if plain is not None:
        return plain
    steps: list[str | int] = []

    def walk(node: JSONPath) -> None:
        if isinstance(node, Root):
            return
        if isinstance(node, Child):
            walk(node.left)
            walk(node.right)
        elif isinstance(node, Fields) and len(node.fields) == 1 and node.fields[0] != "*":
            steps.append(node.fields[0])
        elif isinstance(node, Index) and len(getattr(node, "indices", (getattr(node, "index", None),))) == 1:
            steps.append(getattr(node, "indices", (getattr(node, "index", None),))[0])
        else:
            raise PathSyntaxError(f"{path!r} is not a reference path (only fields and indices are allowed)")

    walk(compile_path(path))
    return tuple(steps)


def get_path(document: Any, path: str) -> Any:
    """Value at ``path``; several matches give a list; no match is a States.Runtime error."""
    steps = _simple_steps(path)
    if steps is not None:
        value = _walk(document, steps)
        if value is not _MISSING:
            return value
        raise runtime_error(f"path {path} not found in the state")
    matches = [m.value for m in compile_path(path).find(document)]
    if not matches:
        raise runtime_error(f"path {path} not found in the state")
    return matches[0] if len(matches) == 1 and not _is_multi(path) else matches


def has_path(document: Any, path: str) -> bool:
    try:
        get_path(document, path)
    except Exception:
        return False
    return True


def set_path(document: Any, path: str, value: Any) -> Any:
    """Return ``document`` with ``value`` at ``path``; ``$`` replaces the whole document."""
    steps = reference_steps(path)
    if not steps:
        return value
    root = copy.deepcopy(document) if isinstance(document, (dict, list)) else {}
    node = root
    for step, following in zip(steps[:-1], steps[1:]):
        child = _walk(node, (step,))
        if not isinstance(child, (dict, list)):
            child = [] if isinstance(following, int) else {}
            _assign(node, step, child, path)
        node = child
    _assign(node, steps[-1], value, path)
    return root


def _assign(node: Any, step: str | int, value: Any, path: str) -> None:
    if isinstance(step, int):
        if not isinstance(node, list):
            raise runtime_error(f"ResultPath {path}: cannot index a non-list with [{step}]")
        while len(node) <= step:
            node.append(None)
        node[step] = value
    else:
        if not isinstance(node, dict):
            raise runtime_error(f"ResultPath {path}: cannot set field {step!r} on a non-object")
        node[step] = value


def _walk(document: Any, steps: tuple[str | int, ...]) -> Any:
    node = document
    for step in steps:
        if isinstance(step, int):
            if not isinstance(node, list) or not -len(node) <= step < len(node):
                return _MISSING
            node = node[step]
        else:
            if not isinstance(node, dict) or step not in node:
                return _MISSING
            node = node[step]
    return node


@lru_cache(maxsize=4096)
def _simple_steps(path: str) -> tuple[str | int, ...] | None:
    """Fast path for plain reference paths (the common case); None means use jsonpath-ng."""
    try:
        return reference_steps(path)
    except PathSyntaxError:
        compile_path(path)  # re-raise syntax errors as such
        return None


def _is_multi(path: str) -> bool:
    return any(token in path for token in ("*", "..", "?", ":"))
