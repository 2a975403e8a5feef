"""`ptychoflow watch status`: what the journal says, as numbers an operator can act on."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ptychoflow import clock
from ptychoflow.names import printable
from ptychoflow.watcher.journal import (
    DUPLICATE, FAILED, GAVE_UP, INACTIVE, QUEUED, SEEN, SKIPPED, SUCCEEDED, TRIGGERED, TRIGGERING, Journal,
    watcher_guard,
)

GROUPS = {
    "pending": (SEEN,),
    "queued": (QUEUED,),
    "running": (TRIGGERING, TRIGGERED),
    "inactive": (INACTIVE,),
    "done": (SUCCEEDED,),
    "failed": (FAILED,),
    "duplicate": (DUPLICATE,),
    "skipped": (SKIPPED,),
    "gave_up": (GAVE_UP,),
}


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (no numpy needed for a status line)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[rank]


def summary(journal: Journal, *, recent: int = 10) -> dict[str, Any]:
    counts = journal.state_counts()
    latencies = journal.trigger_latencies()
    return {
        "journal": str(journal.path),
        "watcher_pid": watcher_guard(journal.path.parent).holder_pid(),
        "counts": {name: sum(counts.get(s, 0) for s in states) for name, states in GROUPS.items()},
        "states": counts,
        "latency_s": {
            "n": len(latencies),
            "median": percentile(latencies, 50),
            "p99": percentile(latencies, 99),
        },
        "not_started": [
            {"path": r.path, "state": r.state, "reason": r.reason, "since": clock.iso(r.t_since),
             "age_s": None if r.t_since is None else round(time.time() - r.t_since, 1)}
            for r in journal.not_started(recent)
        ],
        "runs": journal.run_state_counts(),
        "inactive_runs": [
            {"run_id": r.run_id, "run_key": r.key, "since": clock.iso(r.t_inactive), "reason": r.error}
            for r in journal.inactive_runs()
        ],
        "recent": [
            {
                "path": r.path,
                "state": r.state,
                "scan_id": r.scan_id,
                "run_key": r.run_key,
                "reason": r.reason,
                "updated": clock.iso(r.t_updated),
            }
            for r in journal.recent(recent)
        ],
    }


def empty_summary(journal_path: Path) -> dict[str, Any]:
    """What `summary` says before the watcher ever ran with this state directory."""
    return {
        "journal": str(journal_path),
        "watcher_pid": watcher_guard(journal_path.parent).holder_pid(),
        "counts": {name: 0 for name in GROUPS},
        "states": {},
        "latency_s": {"n": 0, "median": None, "p99": None},
        "not_started": [],
        "runs": {},
        "inactive_runs": [],
        "recent": [],
    }


def render(info: dict[str, Any]) -> str:
    """Plain text for terminals and log scrapers alike."""
    counts = "  ".join(f"{k} {v}" for k, v in info["counts"].items())
    lat = info["latency_s"]
    fmt = lambda v: "-" if v is None else f"{v * 1000:.0f} ms"  # noqa: E731
    pid = info["watcher_pid"]
    lines = [f"watcher {'running, pid ' + str(pid) if pid else 'not running'}; journal {info['journal']}"]
    if info.get("engine"):
        engine = info["engine"]
        oldest = engine["oldest_active_age_s"]
        waited = f"; oldest active state {oldest:.0f} s" if oldest is not None and engine["active_runs"] else ""
        lines.append(f"engine worker {engine['summary']}{waited}")
    lines += [
        counts,
        f"complete -> run start (settle included): median {fmt(lat['median'])}, p99 {fmt(lat['p99'])}"
        f" over {lat['n']} scans",
    ]
    if info["not_started"]:
        lines.append("not started (unchanged for, why):")
    for row in info["not_started"]:
        name = printable(row["path"].rsplit("/", 1)[-1])
        what = "gave up" if row["state"] == GAVE_UP else "waiting"
        lines.append(f"  {name:<28} {what:<8} {age(row['age_s']):>8}  {printable(row['reason'])}")
    if info["inactive_runs"]:
        lines.append("INACTIVE runs (waiting for a person; `ptychoflow runs show RUN` has the fix):")
    for run in info["inactive_runs"]:
        since = clock.text_from_iso(run["since"])
        lines.append(f"  {printable(run['run_id'])}  since {since}  {printable(run['reason'])}")
    if info["recent"]:
        lines.append("recent:")
    for row in info["recent"]:
        when = clock.text_from_iso(row["updated"])
        name = printable(row["path"].rsplit("/", 1)[-1])
        extra = printable(row["reason"] or row["run_key"] or "")
        lines.append(f"  {when}  {row['state']:<10} {name:<28} {extra}")
    return "\n".join(lines)


def age(seconds: float | None) -> str:
    """'45 s', '12 min', '3.5 h', '2.0 d' (how long a file has been waiting)."""
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.1f} {unit}" if unit in ("d", "h") else f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"
