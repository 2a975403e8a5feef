"""The watcher's durable memory: one SQLite file (WAL) in the state dir.

Every scan the watcher has seen is a row; every run it asked the backend for is a row keyed
by an idempotency key derived from the scans' checksums. The commit order makes triggering
exactly-once across ``kill -9``: a run row is committed as ``triggering`` *before*
``start_run`` is called, and any ``triggering`` row found later (retry or restart) is first
looked up in the backend by its key. The journal is also the only unbounded memory: nothing
in the process grows with the number of scans ever seen.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from ptychoflow import sqlite
from ptychoflow.fs import SingleInstance

JOURNAL_FILENAME = "watcher.sqlite"
GUARD_FILENAME = "watcher.lock"

# Scan states. seen -> queued -> triggering -> triggered (<-> inactive) -> succeeded | failed;
# side exits: failed (malformed, unreadable), duplicate (same checksum), skipped (not a scan file),
# gave_up (never became a finished scan within watcher.give_up_after_s). A seen row may carry a
# reason (why it is not started yet) and since when.
# inactive: the run waits for something only a person can give (a consent); it goes on when resumed.
SEEN, QUEUED, TRIGGERING, TRIGGERED, INACTIVE = "seen", "queued", "triggering", "triggered", "inactive"
SUCCEEDED, FAILED, DUPLICATE, SKIPPED, GAVE_UP = "succeeded", "failed", "duplicate", "skipped", "gave_up"
RETRIED_WHEN_CHANGED = (FAILED, GAVE_UP)  # no run; reconsidered when the file changes
ACTIVE_STATES = (TRIGGERING, TRIGGERED)
# Runs the watcher still follows: started and not finished.
FOLLOWED_STATES = (TRIGGERED, INACTIVE)
# A scan in one of these states owns its checksum: another copy is a duplicate.
CLAIMING_STATES = (QUEUED, TRIGGERING, TRIGGERED, INACTIVE, SUCCEEDED, FAILED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS scans (
    path TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    checksum TEXT,
    scan_id TEXT,
    size INTEGER,
    mtime_ns INTEGER,
    reason TEXT,
    duplicate_of TEXT,
    run_key TEXT,
    t_seen REAL,
    t_complete REAL,
    t_detected REAL,
    t_queued REAL,
    t_triggered REAL,
    t_finished REAL,
    t_updated REAL,
    sig TEXT,
    t_since REAL
);
CREATE INDEX IF NOT EXISTS scans_state ON scans(state, t_queued);
CREATE INDEX IF NOT EXISTS scans_checksum ON scans(checksum);
CREATE INDEX IF NOT EXISTS scans_run ON scans(run_key);
CREATE INDEX IF NOT EXISTS scans_updated ON scans(t_updated);
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    run_id TEXT,
    label TEXT NOT NULL,
    tags TEXT NOT NULL,
    body TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL DEFAULT 0,
    error TEXT,
    t_created REAL,
    t_triggered REAL,
    t_finished REAL,
    t_inactive REAL
);
CREATE INDEX IF NOT EXISTS runs_state ON runs(state);
"""
# Columns added after a journal's first release: (table, column, type), added when missing.
_ADDED_COLUMNS = (("runs", "t_inactive", "REAL"), ("scans", "t_since", "REAL"))


def watcher_guard(state_dir: str | Path) -> SingleInstance:
    """One watcher per state dir: two would race on the same queue and journal."""
    return SingleInstance(Path(state_dir) / GUARD_FILENAME, "watcher")


@dataclass(frozen=True)
class ScanRow:
    path: str
    state: str
    checksum: str | None
    scan_id: str | None
    size: int | None
    mtime_ns: int | None
    reason: str | None
    duplicate_of: str | None
    run_key: str | None
    t_seen: float | None
    t_complete: float | None
    t_detected: float | None
    t_queued: float | None
    t_triggered: float | None
    t_finished: float | None
    t_updated: float | None
    sig: str | None = None  # file signature when it failed admission: a changed file is retried
    t_since: float | None = None  # a reason's start: the file unchanged since (seen, gave_up)


def _scan_row(row: sqlite3.Row) -> ScanRow:
    """A row as a ScanRow, whatever columns an older journal has."""
    known = ScanRow.__dataclass_fields__
    return ScanRow(**{k: v for k, v in dict(row).items() if k in known})


@dataclass(frozen=True)
class QueueEntry:
    """An admitted scan, ready for the FIFO queue."""

    path: str
    checksum: str
    scan_id: str
    size: int
    mtime_ns: int
    t_complete: float
    t_detected: float


@dataclass(frozen=True)
class RunIntent:
    """A run about to be started: everything start_run needs, fixed before it is called."""

    key: str
    paths: list[str]
    body: dict[str, Any]
    label: str
    tags: list[str]


@dataclass(frozen=True)
class RunRow:
    key: str
    state: str
    run_id: str | None
    label: str
    tags: list[str]
    body: dict[str, Any]
    attempts: int
    next_attempt: float
    error: str | None
    t_inactive: float | None = None  # when the run went INACTIVE (None unless it is)

    @classmethod
    def from_sql(cls, row: sqlite3.Row) -> "RunRow":
        return cls(
            key=row["key"], state=row["state"], run_id=row["run_id"], label=row["label"],
            tags=json.loads(row["tags"]), body=json.loads(row["body"]), attempts=row["attempts"],
            next_attempt=row["next_attempt"], error=row["error"],
            t_inactive=row["t_inactive"] if "t_inactive" in row.keys() else None,
        )


class Journal:
    """Thin, transactional access to the journal. Not thread-safe: one owner thread."""

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        if not readonly:  # readonly: `watch status` for operators who may not own the state dir
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # synchronous=FULL: a commit survives power loss too, so "triggering" is on disk
        # before start_run.
        self._db = sqlite.connect(self.path, schema=_SCHEMA, synchronous="FULL", readonly=readonly)
        self._db.row_factory = sqlite3.Row
        if not readonly:
            self._add_missing_columns()
        columns = {row["name"] for row in self._db.execute("PRAGMA table_info(scans)")}
        self._since = "t_since" if "t_since" in columns else "t_seen"  # a read-only journal of an older release

    def _add_missing_columns(self) -> None:
        """Bring a journal written by an older release up to the current schema."""
        with self._tx() as db:
            for table, column, kind in _ADDED_COLUMNS:
                if column not in {row["name"] for row in db.execute(f"PRAGMA table_info({table})")}:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

    @classmethod
    def in_state_dir(cls, state_dir: str | Path) -> "Journal":
        return cls(Path(state_dir) / JOURNAL_FILENAME)

    def close(self) -> None:
        self._db.close()

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        return sqlite.transaction(self._db)

    # -- scans -------------------------------------------------------------------------
    def get(self, path: str) -> ScanRow | None:
        row = self._db.execute("SELECT * FROM scans WHERE path = ?", (path,)).fetchone()
        return _scan_row(row) if row else None

    def path_states(self) -> dict[str, str]:
        """path -> state for every row: a transient snapshot for one directory rescan."""
        return dict(self._db.execute("SELECT path, state FROM scans").fetchall())

    def paths_in(self, *states: str) -> list[str]:
        marks = ",".join("?" * len(states))
        return [r[0] for r in self._db.execute(f"SELECT path FROM scans WHERE state IN ({marks})", states)]

    def observe(self, paths: Iterable[str], now: float | None = None) -> None:
        """Record paths as seen (no-op for paths already journalled)."""
        now = time.time() if now is None else now
        with self._tx() as db:
            db.executemany(
                "INSERT OR IGNORE INTO scans(path, state, t_seen, t_updated) VALUES (?, ?, ?, ?)",
                [(p, SEEN, now, now) for p in paths],
            )

    def forget(self, path: str) -> None:
        """Drop a scan that vanished before it was decided (deleted before it settled)."""
        with self._tx() as db:
            db.execute("DELETE FROM scans WHERE path = ? AND state IN (?, ?)", (path, SEEN, SKIPPED))

    def set_final(self, path: str, state: str, reason: str, *, checksum: str | None = None,
                  duplicate_of: str | None = None, sig: str | None = None, since: float | None = None) -> None:
        """Journal a scan that will not trigger: failed, skipped, duplicate or gave up, with why."""
        now = time.time()
        with self._tx() as db:
            db.execute(
                "INSERT INTO scans(path, state, t_seen) VALUES (?, ?, ?) ON CONFLICT(path) DO NOTHING",
                (path, state, now),
            )
            db.execute(
                "UPDATE scans SET state=?, reason=?, checksum=COALESCE(?, checksum), duplicate_of=?,"
                " sig=?, t_since=COALESCE(?, t_since), t_finished=?, t_updated=? WHERE path=?",
                (state, reason, checksum, duplicate_of, sig, since, now, now, path),
            )

    def note(self, path: str, reason: str, *, since: float) -> None:
        """Why a seen file is not started yet (not HDF5, incomplete, ...), unchanged since `since`."""
        with self._tx() as db:
            db.execute("UPDATE scans SET reason=?, t_since=?, t_updated=? WHERE path=? AND state=?",
                       (reason, since, time.time(), path, SEEN))

    def rejected(self) -> dict[str, str]:
        """path -> file signature of files that never started a run (failed admission, gave up):
        retried if changed."""
        marks = ",".join("?" * len(RETRIED_WHEN_CHANGED))
        rows = self._db.execute(
            f"SELECT path, sig FROM scans WHERE state IN ({marks}) AND run_key IS NULL AND sig IS NOT NULL",
            RETRIED_WHEN_CHANGED,
        )
        return dict(rows.fetchall())

    def reopen(self, path: str) -> None:
        """A rejected scan's file changed (fixed, re-copied, written again): consider it afresh."""
        marks = ",".join("?" * len(RETRIED_WHEN_CHANGED))
        with self._tx() as db:
            db.execute(
                "UPDATE scans SET state=?, reason=NULL, sig=NULL, t_since=NULL, t_finished=NULL, t_updated=?"
                f" WHERE path=? AND state IN ({marks}) AND run_key IS NULL",
                (SEEN, time.time(), path, *RETRIED_WHEN_CHANGED),
            )

    def claimant(self, checksum: str) -> str | None:
        """The path already holding this checksum (so a copy is a duplicate), if any."""
        marks = ",".join("?" * len(CLAIMING_STATES))
        row = self._db.execute(
            f"SELECT path FROM scans WHERE checksum = ? AND state IN ({marks}) LIMIT 1",
            (checksum, *CLAIMING_STATES),
        ).fetchone()
        return row[0] if row else None

    def enqueue(self, path: str, **fields: Any) -> None:
        self.enqueue_many([QueueEntry(path=path, **fields)])

    def enqueue_many(self, entries: list["QueueEntry"]) -> None:
        """Queue admitted scans in one transaction (one fsync for a whole burst)."""
        if not entries:
            return
        now = time.time()
        with self._tx() as db:
            db.executemany(
                "INSERT INTO scans(path, state, t_seen) VALUES (?, ?, ?) ON CONFLICT(path) DO NOTHING",
                [(e.path, SEEN, now) for e in entries],
            )
            db.executemany(
                "UPDATE scans SET state=?, checksum=?, scan_id=?, size=?, mtime_ns=?, reason=NULL,"
                " t_complete=?, t_detected=?, t_queued=?, t_updated=? WHERE path=?",
                [(QUEUED, e.checksum, e.scan_id, e.size, e.mtime_ns, e.t_complete, e.t_detected, now, now, e.path)
                 for e in entries],
            )

    def queued(self, limit: int) -> list[ScanRow]:
        """Queued scans, oldest first (FIFO)."""
        rows = self._db.execute(
            "SELECT * FROM scans WHERE state = ? ORDER BY t_queued, rowid LIMIT ?", (QUEUED, limit)
        )
        return [_scan_row(r) for r in rows]

    # -- runs --------------------------------------------------------------------------
    def create_runs(self, intents: list["RunIntent"]) -> list[RunRow]:
        """Commit the intent to trigger (state triggering) before any call to the backend."""
        if not intents:
            return []
        now = time.time()
        with self._tx() as db:
            for it in intents:
                db.execute(
                    "INSERT INTO runs(key, state, label, tags, body, t_created) VALUES (?, ?, ?, ?, ?, ?)",
                    (it.key, TRIGGERING, it.label, json.dumps(it.tags), json.dumps(it.body), now),
                )
                db.executemany(
                    "UPDATE scans SET state=?, run_key=?, t_updated=? WHERE path=?",
                    [(TRIGGERING, it.key, now, p) for p in it.paths],
                )
        return [self.get_run(it.key) for it in intents]  # type: ignore[misc]

    def get_run(self, key: str) -> RunRow | None:
        row = self._db.execute("SELECT * FROM runs WHERE key = ?", (key,)).fetchone()
        return RunRow.from_sql(row) if row else None

    def runs_in(self, state: str) -> list[RunRow]:
        return [RunRow.from_sql(r) for r in self._db.execute("SELECT * FROM runs WHERE state = ?", (state,))]

    def runs_followed(self) -> list[RunRow]:
        """Started runs not yet finished (ACTIVE or INACTIVE on the backend)."""
        marks = ",".join("?" * len(FOLLOWED_STATES))
        return [RunRow.from_sql(r) for r in self._db.execute(f"SELECT * FROM runs WHERE state IN ({marks})", FOLLOWED_STATES)]

    def count_active_runs(self, inactive_since: float | None = None) -> int:
        """Runs holding a slot: triggering and triggered ones, and INACTIVE ones that went
        inactive after ``inactive_since`` (None: every INACTIVE run keeps its slot)."""
        cutoff = float("-inf") if inactive_since is None else inactive_since
        return self._db.execute(
            "SELECT COUNT(*) FROM runs WHERE state IN (?, ?) OR (state = ? AND t_inactive > ?)",
            (*ACTIVE_STATES, INACTIVE, cutoff),
        ).fetchone()[0]

    def runs_started(self, started: list[tuple[str, str, float]]) -> None:
        """Record (key, run id, start time) for runs the backend accepted, in one transaction."""
        if not started:
            return
        with self._tx() as db:
            for key, run_id, when in started:
                db.execute("UPDATE runs SET state=?, run_id=?, t_triggered=?, error=NULL WHERE key=?",
                           (TRIGGERED, run_id, when, key))
                db.execute("UPDATE scans SET state=?, t_triggered=?, t_updated=? WHERE run_key=?",
                           (TRIGGERED, when, when, key))

    def run_attempt_failed(self, key: str, error: str, next_attempt: float) -> int:
        """Record a failed trigger; the run stays triggering and is retried, never dropped."""
        with self._tx() as db:
            db.execute("UPDATE runs SET attempts=attempts+1, error=?, next_attempt=? WHERE key=?",
                       (error, next_attempt, key))
            db.execute("UPDATE scans SET reason=?, t_updated=? WHERE run_key=?", (f"trigger retry: {error}", time.time(), key))
        return self._db.execute("SELECT attempts FROM runs WHERE key=?", (key,)).fetchone()[0]

    def run_inactive(self, key: str, reason: str, now: float) -> bool:
        """The run went (or still is) INACTIVE; True when this is news (it was running)."""
        with self._tx() as db:
            changed = db.execute("UPDATE runs SET state=?, error=?, t_inactive=? WHERE key=? AND state=?",
                                 (INACTIVE, reason, now, key, TRIGGERED)).rowcount
            db.execute("UPDATE runs SET error=? WHERE key=? AND state=?", (reason, key, INACTIVE))
            db.execute("UPDATE scans SET state=?, reason=?, t_updated=? WHERE run_key=?", (INACTIVE, reason, now, key))
        return bool(changed)

    def run_resumed(self, key: str) -> None:
        """An INACTIVE run is ACTIVE again (someone resumed it)."""
        now = time.time()
        with self._tx() as db:
            db.execute("UPDATE runs SET state=?, error=NULL, t_inactive=NULL WHERE key=? AND state=?",
                       (TRIGGERED, key, INACTIVE))
            db.execute("UPDATE scans SET state=?, reason=NULL, t_updated=? WHERE run_key=? AND state=?",
                       (TRIGGERED, now, key, INACTIVE))

    def run_finished(self, key: str, succeeded: bool, error: str | None = None) -> None:
        now = time.time()
        state = SUCCEEDED if succeeded else FAILED
        with self._tx() as db:
            db.execute("UPDATE runs SET state=?, error=?, t_finished=? WHERE key=?", (state, error, now, key))
            db.execute("UPDATE scans SET state=?, reason=?, t_finished=?, t_updated=? WHERE run_key=?",
                       (state, error, now, now, key))

    # -- reporting ---------------------------------------------------------------------
    def state_counts(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT state, COUNT(*) FROM scans GROUP BY state").fetchall())

    def not_started(self, limit: int = 10) -> list[ScanRow]:
        """Files the watcher has a reason not to start (waiting, gave up), longest-standing first."""
        rows = self._db.execute(
            f"SELECT * FROM scans WHERE reason IS NOT NULL AND (state = ? OR state = ?) ORDER BY {self._since}, rowid"
            " LIMIT ?",
            (SEEN, GAVE_UP, limit),
        )
        return [_scan_row(r) for r in rows]

    def run_state_counts(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT state, COUNT(*) FROM runs GROUP BY state").fetchall())

    def inactive_runs(self) -> list[RunRow]:
        return self.runs_in(INACTIVE)

    def recent(self, limit: int = 10) -> list[ScanRow]:
        rows = self._db.execute("SELECT * FROM scans ORDER BY t_updated DESC, rowid DESC LIMIT ?", (limit,))
        return [_scan_row(r) for r in rows]

    def trigger_latencies(self) -> list[float]:
        """Seconds from a scan's complete-mark to its run start, for every triggered scan."""
        rows = self._db.execute(
            "SELECT t_triggered - t_complete FROM scans WHERE t_triggered IS NOT NULL AND t_complete IS NOT NULL"
        )
        return [r[0] for r in rows]
