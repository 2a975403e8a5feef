"""What a provider remembers about each action across engine restarts.

The engine re-submits an unfinished action under the same key after a crash. With this
journal a provider can tell what happened to it before:

- ``<key>.json``: the outcome, written atomically (and fsynced) when the work finished. A
  finished action is never run again: its outcome is returned.
- ``<key>.started``: how many times the work was started, written (renamed into place)
  *before* it starts. A start without an outcome means the work was interrupted mid-way (the
  process running it died). It is not fsynced: a killed process leaves it in the page cache,
  which survives; only a power loss can lose it, and then an interrupted call may run again
  (at-least-once). Skipping the fsyncs saves about 5 ms per action on this project's disks.
  The provider then reruns it only while the attempts allowed are not used up (at-least-once,
  for work that is safe to repeat); with no reruns allowed it reports the interruption instead
  (at-most-once).
- ``<key>.lock``: held while the work runs; a process that dies releases it.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from ptychoflow.fs import atomic_write_json, atomic_write_text, file_lock
from ptychoflow.names import safe_component

INTERRUPTED = "WorkerLost"


class ActionJournal:
    """One provider's (or one compute endpoint's) records, in ``directory``."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def _file(self, key: str, suffix: str) -> Path:
        return self.directory / f"{safe_component(key, source=self.directory, field='action key')}{suffix}"

    def _writable(self, key: str, suffix: str) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        return self._file(key, suffix)

    @contextmanager
    def exclusive(self, key: str) -> Iterator[None]:
        """Hold the action's lock (waits for an orphaned run of the same action to end)."""
        with file_lock(self._writable(key, ".lock")):
            yield

    def outcome(self, key: str) -> dict[str, Any] | None:
        """The stored outcome of a finished action, or None."""
        try:
            return json.loads(self._file(key, ".json").read_text())
        except FileNotFoundError:
            return None

    def starts(self, key: str) -> int:
        """How many times the work was started (0: never)."""
        try:
            return int(self._file(key, ".started").read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def begin(self, key: str) -> int:
        """Record one more start, durably, before the work begins; returns the attempt number."""
        attempt = self.starts(key) + 1
        atomic_write_text(self._writable(key, ".started"), str(attempt), durable=False)
        return attempt

    def finish(self, key: str, document: dict[str, Any]) -> dict[str, Any]:
        """Store the outcome durably; returns it."""
        atomic_write_json(self._writable(key, ".json"), document, indent=None)
        return document

    def forget(self, key: str) -> None:
        """Drop every record of the action (after the engine committed its outcome)."""
        for suffix in (".json", ".started", ".lock"):
            self._file(key, suffix).unlink(missing_ok=True)


def interrupted_message(attempts: int, reruns_allowed: int) -> str:
    """Why an interrupted action is not run again."""
    allowed = "no rerun is allowed" if reruns_allowed == 0 else f"its {reruns_allowed} allowed rerun(s) are used up"
    return (f"the worker process running this action died after {attempts} start(s) and {allowed} "
            "(at-most-once; allow reruns for work that is safe to repeat)")
