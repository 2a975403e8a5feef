"""When is a scan finished? Marked complete AND unchanged for the settle delay.

A scan is complete when its reader says so (ptychoflow's layout: ``/entry@complete``; an
Eiger master: every announced frame in its data files and a position file covering them; see
``ptychoflow.scan.registry``) or a marker ``<scan>.complete`` exists, and settled when its
size and mtime (and the marker's) have not changed for ``settle_seconds``. Growing files never pass: every append moves the mtime and restarts the
clock. Only files still undecided are held in memory; decided ones live in the journal.

A settled file that is not a complete scan waits with a reason (empty, unreadable, not HDF5,
not a scan, incomplete) and the time it has been unchanged since, so the watcher can say
why a file is not started and give up on it after a while (``WatcherService``).
"""

from __future__ import annotations

import enum
import os
import stat as stat_mod
from dataclasses import dataclass
from pathlib import Path

from ptychoflow.errors import InputError, ScanError
from ptychoflow.fs import sha256_file
from ptychoflow.names import safe_component
from ptychoflow.scan.reader import ReadOptions
from ptychoflow.scan.registry import AUTO, incomplete_reason, load_scan

MARKER_SUFFIX = ".complete"


def marker_path(path: str | Path) -> Path:
    return Path(f"{path}{MARKER_SUFFIX}")


class Verdict(enum.Enum):
    WAIT = "wait"  # not yet settled or not yet complete; check again later
    GONE = "gone"  # deleted before it settled: forget quietly
    DANGLING = "dangling"  # a symlink to nothing: journal a note, skip
    NOT_REGULAR = "not_regular"  # a FIFO, directory, device: never open it
    UNREADABLE = "unreadable"  # stat failed for a reason other than absence
    SETTLED = "settled"  # complete and stable: ready for admission


@dataclass(frozen=True)
class Check:
    verdict: Verdict
    reason: str = ""
    size: int = 0
    mtime_ns: int = 0
    t_complete: float = 0.0  # wall time of the complete mark (file or marker mtime)
    marker: bool = False
    since: float = 0.0  # WAIT with a reason: unchanged since (file or marker mtime)
    fresh: bool = False  # WAIT with a reason found by this check (not a recheck of the same file)


@dataclass
class _Pending:
    sig: tuple[int, int, int] | None = None
    stable_since: float = 0.0
    due: float = 0.0
    incomplete_sig: tuple[int, int, int] | None = None
    reason: str = ""  # why the settled file is not a complete scan


class Settler:
    """Tracks undecided candidate files and says when each is settled.

    ``slack`` is how late a change may be noticed (the poll interval when polling, ~0 with
    events): stability is counted from ``max(mtime, first_seen - slack)``, which trusts the
    file's mtime but never by more than the observation gap (clock skew on NFS).
    """

    def __init__(self, settle_seconds: float, *, slack: float = 0.0, incomplete_recheck_s: float = 30.0,
                 scan_format: str = AUTO, read_options: ReadOptions | None = None) -> None:
        self.settle = settle_seconds
        self.scan_format = scan_format
        self.read_options = read_options or ReadOptions()
        self.slack = slack
        self.incomplete_recheck = incomplete_recheck_s
        self._pending: dict[str, _Pending] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, path: str) -> bool:
        return path in self._pending

    def poke(self, path: str, now: float) -> None:
        """Something may have changed at `path`: check it at the next opportunity."""
        entry = self._pending.setdefault(path, _Pending())
        entry.due = min(entry.due, now)

    def drop(self, path: str) -> None:
        self._pending.pop(path, None)

    def pending_paths(self) -> list[str]:
        return list(self._pending)

    def due(self, now: float, limit: int) -> list[str]:
        """Up to `limit` candidates whose check is due, earliest first."""
        ready = [(e.due, p) for p, e in self._pending.items() if e.due <= now]
        ready.sort()
        return [p for _, p in ready[:limit]]

    def next_due(self) -> float | None:
        return min((e.due for e in self._pending.values()), default=None)

    def check(self, path: str, now: float) -> Check:
        """Stat the candidate; decide WAIT / GONE / ... / SETTLED. Never raises."""
        entry = self._pending.setdefault(path, _Pending())
        try:
            st = os.stat(path)  # follows symlinks
        except FileNotFoundError:
            return self._decide(path, _missing(path))
        except OSError as exc:
            return self._decide(path, Check(Verdict.UNREADABLE, f"cannot stat: {exc.strerror or exc}"))
        if not stat_mod.S_ISREG(st.st_mode):
            return self._decide(path, Check(Verdict.NOT_REGULAR, "not a regular file (directory, FIFO or device)"))
        marker_ns = _mtime_ns(marker_path(path))
        sig = (st.st_size, st.st_mtime_ns, marker_ns)
        if sig != entry.sig:
            entry.sig = sig
            changed = max(st.st_mtime_ns, marker_ns) / 1e9
            entry.stable_since = min(max(changed, now - self.slack), now)
        settled_at = entry.stable_since + self.settle
        if now < settled_at:
            entry.due = settled_at
            return Check(Verdict.WAIT)
        changed = max(st.st_mtime_ns, marker_ns) / 1e9
        if entry.incomplete_sig == sig:
            entry.due = now + self.incomplete_recheck
            return Check(Verdict.WAIT, entry.reason, since=changed)
        marker = marker_ns > 0
        reason = None if marker else incomplete_reason(path, self.scan_format, self.read_options)
        if reason is not None:
            entry.incomplete_sig, entry.reason = sig, reason
            entry.due = now + self.incomplete_recheck
            return Check(Verdict.WAIT, reason, since=changed, fresh=True)
        del self._pending[path]
        return Check(Verdict.SETTLED, size=st.st_size, mtime_ns=st.st_mtime_ns,
                     t_complete=max(st.st_mtime_ns, marker_ns) / 1e9, marker=marker)

    def _decide(self, path: str, check: Check) -> Check:
        self._pending.pop(path, None)
        return check


def _missing(path: str) -> Check:
    try:
        st = os.lstat(path)
    except OSError:
        return Check(Verdict.GONE)
    if stat_mod.S_ISLNK(st.st_mode):
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        return Check(Verdict.DANGLING, f"dangling symlink -> {target}")
    return Check(Verdict.GONE)


def file_sig(path: str) -> str | None:
    """Size, mtime and ctime: changes when a file is rewritten, replaced or re-permissioned."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def _mtime_ns(path: Path) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


# -- admission: read the settled file once, hash it, validate it -------------------------
class Rejected(Exception):
    """A settled file that must not trigger; the message is the journal's one-line reason."""


class Changed(Exception):
    """The file changed while it was being read: it is not settled after all."""


@dataclass(frozen=True)
class Admitted:
    checksum: str
    scan_id: str


def admit(path: str, check: Check, *, scan_format: str = AUTO, read_options: ReadOptions | None = None) -> Admitted:
    """Hash and validate a settled scan. Raises Rejected (journal as failed) or Changed."""
    try:  # the file name travels into the flow's paths (scans/<name> on HPC)
        safe_component(Path(path).name, source=path, field="file name")
    except InputError as exc:
        raise Rejected(f"{exc.field}: {exc.problem}") from None
    try:
        checksum = sha256_file(path)
    except PermissionError as exc:
        raise Rejected(f"permission denied: {exc.strerror or exc}") from None
    except FileNotFoundError:
        raise Changed(path) from None
    except OSError as exc:
        raise Rejected(f"unreadable: {exc.strerror or exc}") from None
    try:
        st = os.stat(path)
    except OSError:
        raise Changed(path) from None
    if (st.st_size, st.st_mtime_ns) != (check.size, check.mtime_ns):
        raise Changed(path)
    try:
        scan = load_scan(path, read_options, scan_format=scan_format, require_complete=not check.marker, load=False)
    except ScanError as exc:
        raise Rejected(f"{exc.field}: {exc.problem}") from None
    except Exception as exc:  # h5py can raise odd things on hostile files; never crash the loop
        raise Rejected(f"unreadable scan: {type(exc).__name__}: {exc}") from None
    return Admitted(checksum=checksum, scan_id=scan.scan_id)
