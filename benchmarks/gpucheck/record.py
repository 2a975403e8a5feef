"""What a section reports: rows for the one table, raw data and images, saved as it goes.

Each section runs in its own process under a time box. It saves its record after every
row, so a section killed at its box still leaves every figure it had measured.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptychoflow.fs import atomic_write_json

MET, NOT_MET, SKIPPED = "met", "not met", "skipped"


class Skip(Exception):
    """The whole section cannot run here; the message says why (shown in the table)."""


@dataclass(frozen=True)
class Context:
    """Where a section writes, whether this is the CPU dry run, and when its box ends."""

    out: Path
    dry: bool
    deadline: float  # time.time() by which the section must have finished

    def remaining(self) -> float:
        return self.deadline - time.time()


def verdict(ok: bool) -> str:
    return MET if ok else NOT_MET


def figure(value: float, digits: int = 3) -> str:
    """A number people read at a glance: thousands separated, `digits` significant figures."""
    if value == 0 or not abs(value) < float("inf"):
        return f"{value:g}"
    if abs(value) >= 10 ** (digits - 1):
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


class Record:
    def __init__(self, path: Path, name: str) -> None:
        self.path = path
        self.doc: dict[str, Any] = {"name": name, "status": "running", "reason": "", "rows": [], "data": {},
                                    "images": [], "started": time.time()}
        path.parent.mkdir(parents=True, exist_ok=True)
        self.save()

    def row(self, measure: str, text: str, *, value: float | None = None, unit: str = "", reference: str = "",
            verdict: str = "") -> None:
        """One line of the table: what was measured, the figure, what it is judged against."""
        self.doc["rows"].append({"measure": measure, "text": text, "value": value, "unit": unit,
                                 "reference": reference, "verdict": verdict})
        self.save()

    def skip(self, measure: str, reason: str, *, reference: str = "") -> None:
        self.row(measure, f"skipped: {reason}", reference=reference, verdict=SKIPPED)

    def set(self, key: str, value: Any) -> None:
        self.doc["data"][key] = value
        self.save()

    def image(self, path: Path) -> None:
        self.doc["images"].append(path.name)
        self.save()

    def finish(self, status: str, reason: str = "") -> None:
        self.doc.update(status=status, reason=reason, seconds=round(time.time() - self.doc["started"], 1))
        self.save()

    def save(self) -> None:
        atomic_write_json(self.path, self.doc, durable=False)
