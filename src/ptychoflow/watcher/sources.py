"""Where candidate paths come from: watchdog events, or polling for NFS/GPFS.

Both feed the same thing: "this path may have changed". A directory listing (reconcile on
start, periodic safety rescans, polling) returns the matching names; events are collected
into a small set drained by the service loop. Only the top level of the acquisition
directory is watched: patterns match file names, as the detector writes them.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
import threading
from pathlib import Path
from typing import Callable

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from ptychoflow.watcher.detect import MARKER_SUFFIX

log = logging.getLogger(__name__)


class Matcher:
    """Maps a file name to the scan path it concerns (itself, or the scan of a marker)."""

    def __init__(self, directory: Path, patterns: list[str]) -> None:
        self.directory = directory
        self.patterns = list(patterns)
        # One regex for all patterns: a 10k-entry listing is matched in a few milliseconds.
        self._match = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in self.patterns)).match

    def scan_name(self, name: str) -> str | None:
        if name.endswith(MARKER_SUFFIX):
            name = name[: -len(MARKER_SUFFIX)]
        return name if self._match(name) else None

    def scan_path(self, path: str) -> str | None:
        """Absolute scan path for an event path in the watched directory, else None."""
        head, name = os.path.split(path)
        if os.path.abspath(head) != str(self.directory):
            return None
        scan = self.scan_name(name)
        return os.path.join(self.directory, scan) if scan else None

    def list(self) -> list[str]:
        """Matching scan paths present now (markers mapped to their scans), sorted."""
        try:
            names = os.listdir(self.directory)
        except OSError as exc:
            log.warning("cannot list %s: %s", self.directory, exc.strerror or exc)
            return []
        prefix = f"{self.directory}{os.sep}"
        return sorted({prefix + scan for scan in map(self.scan_name, names) if scan})


class DirectoryPoller:
    """Cheap change test for polling: the directory's mtime moves when entries come or go."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._last: int | None = None

    def changed(self) -> bool:
        try:
            mtime = os.stat(self.directory).st_mtime_ns
        except OSError:
            return True
        changed = mtime != self._last
        self._last = mtime
        return changed


_CHANGE_EVENTS = frozenset({"created", "modified", "moved", "deleted", "closed", "attrib"})


class _Handler(FileSystemEventHandler):
    def __init__(self, matcher: Matcher, notify: Callable[[str], None]) -> None:
        self._matcher = matcher
        self._notify = notify

    def on_any_event(self, event: FileSystemEvent) -> None:
        # Opens and read-only closes are ours (hashing, validation): reacting would loop.
        if event.is_directory or event.event_type not in _CHANGE_EVENTS:
            return
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            if raw:
                scan = self._matcher.scan_path(os.fsdecode(raw))
                if scan:
                    self._notify(scan)


class EventSource:
    """watchdog (inotify on Linux) on the acquisition directory; paths land in a drainable set.

    The set holds distinct paths touched since the last drain, so a file appended to a
    thousand times costs one entry, and memory is bounded by the files in flight.
    """

    def __init__(self, matcher: Matcher, wake: threading.Event) -> None:
        self._matcher = matcher
        self._wake = wake
        self._lock = threading.Lock()
        self._touched: set[str] = set()
        self._observer = Observer()
        self._observer.schedule(_Handler(matcher, self._add), str(matcher.directory), recursive=False)

    def _add(self, path: str) -> None:
        with self._lock:
            self._touched.add(path)
        self._wake.set()

    def start(self) -> None:
        self._observer.start()

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join(timeout=5)

    def drain(self) -> list[str]:
        with self._lock:
            touched, self._touched = self._touched, set()
        return sorted(touched)
