"""Ask Globus Flows itself whether a definition, or a run's input, is acceptable.

``validate_flow`` checks a definition and input schema without creating anything and
answers with the scopes the flow will need; ``validate_run`` checks an input against a
deployed flow without starting it. Their refusals are pydantic-style lists
(``loc``/``msg``) or plain strings; each becomes one line naming the place, written as a
JSON path the way globus-cli prints it.
"""

from __future__ import annotations

from typing import Any

import globus_sdk

from ptychoflow.backends.base import DeployedFlow
from ptychoflow.errors import FlowDefinitionError, InputError

from .flows import FlowSource

# The service's codes for "your document is wrong" (as opposed to auth or outages).
INVALID_DOCUMENT = {"UNPROCESSABLE_ENTITY", "FLOW_INPUT_ERROR", "BAD_REQUEST"}


def json_path(loc: list[Any] | tuple[Any, ...]) -> str:
    """``["definition", "States", "Step1"]`` -> ``$.definition.States.Step1``."""
    path = "$"
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif isinstance(part, str) and part.startswith("$"):
            path = part  # the service already wrote a JSON path ("$.bool")
        elif any(c in str(part) for c in "[]'\".\\ "):
            path += "['" + str(part).replace("\\", "\\\\").replace("'", "\\'") + "']"
        else:
            path += f".{part}"
    return path


def problems(exc: globus_sdk.GlobusAPIError) -> list[tuple[str, str]]:
    """(where, what) pairs from a Flows validation error body; the message when there are none."""
    error = (exc.raw_json or {}).get("error") if isinstance(exc.raw_json, dict) else None
    detail = error.get("detail") if isinstance(error, dict) else None
    if isinstance(detail, list) and all(isinstance(d, dict) and "msg" in d for d in detail):
        return [(json_path(d.get("loc") or []), str(d["msg"])) for d in detail]
    text = detail if isinstance(detail, str) else (error or {}).get("message") if isinstance(error, dict) else None
    return [("$", str(text or exc.message or exc.http_reason))]


def _is_refusal(exc: globus_sdk.GlobusAPIError) -> bool:
    return exc.http_status in (400, 422) and (exc.code in INVALID_DOCUMENT or exc.http_status == 422)


def validate_flow(client: globus_sdk.FlowsClient, source: FlowSource) -> list[str]:
    """The service's verdict on ``source``; returns the scopes the flow needs (by role)."""
    try:
        response = client.validate_flow(source.definition, input_schema=source.input_schema)
    except globus_sdk.GlobusAPIError as exc:
        if not _is_refusal(exc):
            raise
        found = problems(exc)
        where = "; ".join(f"{path}: {msg}" for path, msg in found)
        raise FlowDefinitionError(f"{source.path}: Globus Flows refused it ({len(found)} problem(s)): {where}") from None
    scopes = response.get("scopes") or {}
    return sorted({scope for group in scopes.values() for scope in group}) if isinstance(scopes, dict) else []


def validate_run(client: globus_sdk.SpecificFlowClient, flow: DeployedFlow, body: dict[str, Any]) -> None:
    """Raise an :class:`InputError` naming the first field Globus Flows refuses in ``body``."""
    try:
        client.validate_run(body)
    except globus_sdk.GlobusAPIError as exc:
        if not _is_refusal(exc):
            raise
        found = problems(exc)
        path, msg = found[0]
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise InputError(f"{flow.title} input", path, f"{msg}{more}") from None
