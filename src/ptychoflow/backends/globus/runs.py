"""Globus Flows run documents and logs -> ptychoflow's ``RunInfo`` and timeline.

Pure functions over the JSON the Flows API returns, so they are testable on the SDK's
canned responses and shared by the backend and the CLI.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from ptychoflow.backends.base import RunInfo, RunStatus, StateRecord

from .requirements import AuthRequirements

WEB_APP_RUN_URL = "https://app.globus.org/runs/{run_id}"
LABEL_MAX = 64
_ELLIPSIS = "..."
_STATE_EVENT = re.compile(r"^(?P<kind>[A-Za-z]+?)(?P<phase>Started|Completed|Failed)$")


def web_url(run_id: str) -> str:
    return WEB_APP_RUN_URL.format(run_id=run_id)


def truncate_label(label: str, limit: int = LABEL_MAX) -> str:
    """Fit a label into Flows' 64 characters, keeping both ends.

    Labels look like ``"<experiment> <flow> <scan file>"``; the scan name at the end is
    what tells runs apart, so the middle is elided rather than the tail.
    """
    label = " ".join(label.split())
    if len(label) <= limit:
        return label
    keep = limit - len(_ELLIPSIS)
    head = keep * 2 // 5
    return label[:head] + _ELLIPSIS + label[len(label) - (keep - head) :]


def clean_tags(tags: Iterable[str] | None) -> list[str]:
    """Drop blanks and duplicates, keep order."""
    return list(dict.fromkeys(tag.strip() for tag in tags or () if tag and tag.strip()))


def parse_time(value: str | None) -> float | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def run_status(doc: dict[str, Any]) -> RunStatus:
    """Flows reports a cancelled run as FAILED with code FlowCanceled; we call that ENDED."""
    details = doc.get("details") or {}
    if details.get("code") == "FlowCanceled":
        return RunStatus.ENDED
    return RunStatus(doc.get("status", "ACTIVE"))


def _find_key(node: Any, key: str) -> Any:
    """First value of ``key`` anywhere in a nested JSON document."""
    if isinstance(node, dict):
        if key in node:
            return node[key]
        children: Iterable[Any] = node.values()
    elif isinstance(node, list):
        children = node
    else:
        return None
    for child in children:
        found = _find_key(child, key)
        if found is not None:
            return found
    return None


def inactive_requirements(doc: dict[str, Any]) -> AuthRequirements | None:
    """What an INACTIVE run waits for, when its details are an auth-requirements error."""
    details = doc.get("details")
    if run_status(doc) is not RunStatus.INACTIVE or not isinstance(details, dict):
        return None
    return AuthRequirements.find(details)


def inactive_reason(doc: dict[str, Any], remedy: str) -> str:
    """Why a run is INACTIVE, and what gets it going again (``remedy``: "run `ptychoflow login ...`")."""
    details = doc.get("details") or {}
    run_id = doc.get("run_id", "<run_id>")
    state = details.get("state_name") or _find_key(details, "state_name")
    where = f" at {state}" if state else ""
    resume = f"`ptychoflow runs resume {run_id}`"
    requirements = inactive_requirements(doc)
    if requirements:
        return f"INACTIVE{where}: needs {requirements.describe()}; {remedy}, then {resume}"
    code = _find_key(details, "code") or "unknown"
    description = details.get("description") or code
    return f"INACTIVE{where} ({code}): {description}; fix the cause, then {resume}"


def run_error(doc: dict[str, Any]) -> str | None:
    if run_status(doc) is not RunStatus.FAILED:
        return None
    details = doc.get("details") or {}
    cause = _find_key(details, "cause") or _find_key(details, "error")
    description = details.get("description") or details.get("code") or "failed"
    return f"{description}: {cause}" if isinstance(cause, str) else str(description)


def timeline(entries: Iterable[dict[str, Any]]) -> list[StateRecord]:
    """Pair ``<Type>Started`` with ``<Type>Completed|Failed`` per state name, in order."""
    records: list[StateRecord] = []
    open_by_name: dict[str, StateRecord] = {}
    for entry in entries:
        match = _STATE_EVENT.match(entry.get("code", ""))
        name = (entry.get("details") or {}).get("state_name")
        if not match or not name or match["kind"] == "Flow":
            continue
        when = parse_time(entry.get("time"))
        if match["phase"] == "Started":
            record = StateRecord(name=name, status="ACTIVE", started=when)
            records.append(record)
            open_by_name[name] = record
            continue
        record = open_by_name.pop(name, None)
        if record is None:  # log page started mid-state: show it without a start time
            record = StateRecord(name=name, status="ACTIVE")
            records.append(record)
        record.finished = when
        if match["phase"] == "Completed":
            record.status = "SUCCEEDED"
        else:
            record.status = "FAILED"
            record.error = entry.get("description") or "failed"
    return records


def to_run_info(doc: dict[str, Any], log_entries: list[dict[str, Any]] | None = None, *, remedy: str = "") -> RunInfo:
    """One Flows run document (plus, optionally, its log) as a ``RunInfo``.

    ``remedy`` says how to meet an INACTIVE run's auth requirements (a login line).
    """
    status = run_status(doc)
    details = doc.get("details") or {}
    steps = timeline(log_entries or [])
    current = next((step.name for step in reversed(steps) if step.status == "ACTIVE"), None)
    error = run_error(doc)
    if status is RunStatus.INACTIVE:
        error = inactive_reason(doc, remedy or "run `ptychoflow login --force`")
    output = details.get("output") if status is RunStatus.SUCCEEDED else None
    return RunInfo(
        run_id=doc["run_id"],
        flow_id=doc.get("flow_id", ""),
        status=status,
        label=doc.get("label") or "",
        tags=list(doc.get("tags") or []),
        created=parse_time(doc.get("start_time")),
        completed=parse_time(doc.get("completion_time")),
        current_state=current,
        output=output,
        error=error,
        timeline=steps,
        web_url=web_url(doc["run_id"]),
    )
