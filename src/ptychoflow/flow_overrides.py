"""``--set key=value``: change one field of a flow input, checked against the flow's schema.

A key is a dotted path (``policy.iterations``). The value is read as the schema's type for
that field: a string field takes the text as it is (``--set scan_id=0001`` stays "0001");
other fields parse it as JSON (``20``, ``true``, ``"auto"``, ``[1,2]``). A key that is in
neither the input nor the schema is refused with the fields that exist, so a typo never
becomes a silently ignored setting.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from ptychoflow.errors import InputError

SOURCE = "--set"


def parse_assignment(text: str) -> tuple[list[str], str]:
    """``a.b=value`` -> (["a", "b"], "value")."""
    key, sep, value = text.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise InputError(SOURCE, text, "expected KEY=VALUE, for example policy.iterations=20")
    return parts, value


def _schema_child(schema: dict[str, Any] | None, name: str) -> dict[str, Any] | None:
    if not isinstance(schema, dict):
        return None
    child = schema.get("properties", {}).get(name)
    return child if isinstance(child, dict) else None


def _typed(value: str, schema: dict[str, Any] | None, key: str) -> Any:
    kinds = (schema or {}).get("type")
    kinds = set(kinds) if isinstance(kinds, list) else {kinds} if kinds else set()
    if kinds == {"string"}:
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        if kinds and "string" not in kinds:
            raise InputError(SOURCE, key, f"{value!r} is not a valid {' or '.join(sorted(kinds))}") from None
        return value


def apply_overrides(body: dict[str, Any], assignments: list[str] | tuple[str, ...],
                    schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy of `body` with every ``KEY=VALUE`` in `assignments` set, in order."""
    result = copy.deepcopy(body)
    for text in assignments:
        parts, value = parse_assignment(text)
        key = ".".join(parts)
        node, node_schema = result, schema
        for depth, name in enumerate(parts):
            child_schema = _schema_child(node_schema, name)
            if name not in node and child_schema is None:
                known = sorted(set(node) | set((node_schema or {}).get("properties", {})))
                where = ".".join(parts[:depth]) or "the input"
                raise InputError(SOURCE, key, f"no such field in {where} (it has: {', '.join(known) or 'nothing'})")
            if depth == len(parts) - 1:
                node[name] = _typed(value, child_schema, key)
            else:
                if not isinstance(node.setdefault(name, {}), dict):
                    raise InputError(SOURCE, key, f"{'.'.join(parts[:depth + 1])} is not an object")
                node, node_schema = node[name], child_schema
    return result
