"""The one SQLite recipe the stores share: WAL + FULL, IMMEDIATE transactions, read-only opens."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from process_helpers import run_in_processes
from ptychoflow import sqlite

_SCHEMA = "CREATE TABLE IF NOT EXISTS counter (name TEXT PRIMARY KEY, n INTEGER NOT NULL);"


def test_connect_sets_wal_full_and_schema(tmp_path: Path) -> None:
    db = sqlite.connect(tmp_path / "s.sqlite", schema=_SCHEMA)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] == sqlite.BUSY_TIMEOUT_S * 1000
    assert db.execute("SELECT COUNT(*) FROM counter").fetchone()[0] == 0
    with pytest.raises(ValueError, match="unknown synchronous mode"):
        sqlite.connect(tmp_path / "t.sqlite", synchronous="FULL; DROP TABLE counter")  # type: ignore[arg-type]


def test_error_rolls_back_the_whole_unit(tmp_path: Path) -> None:
    db = sqlite.connect(tmp_path / "s.sqlite", schema=_SCHEMA)
    with pytest.raises(RuntimeError):
        with sqlite.transaction(db):
            db.execute("INSERT INTO counter VALUES ('a', 1)")
            raise RuntimeError("halfway")
    assert not db.in_transaction
    assert db.execute("SELECT COUNT(*) FROM counter").fetchone()[0] == 0
    with sqlite.transaction(db):
        db.execute("INSERT INTO counter VALUES ('a', 1)")
    other = sqlite3.connect(tmp_path / "s.sqlite")
    assert other.execute("SELECT n FROM counter").fetchall() == [(1,)]  # committed: another connection sees it


def test_failed_commit_leaves_no_open_transaction(tmp_path: Path) -> None:
    """A deferred foreign key fails at COMMIT; the connection must still be usable after."""
    db = sqlite.connect(tmp_path / "s.sqlite", schema=(
        "CREATE TABLE parent (id INTEGER PRIMARY KEY);"
        "CREATE TABLE child (p INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED);"))
    db.execute("PRAGMA foreign_keys=ON")
    with pytest.raises(sqlite3.IntegrityError):
        with sqlite.transaction(db):
            db.execute("INSERT INTO child VALUES (7)")
    assert not db.in_transaction
    with sqlite.transaction(db):
        db.execute("INSERT INTO parent VALUES (7)")
        db.execute("INSERT INTO child VALUES (7)")
    assert db.execute("SELECT COUNT(*) FROM child").fetchone()[0] == 1


def _increment(path: str, times: int) -> None:
    db = sqlite.connect(path, schema=_SCHEMA)
    for _ in range(times):
        with sqlite.transaction(db):  # read, then write: only safe because the lock is taken first
            (n,) = db.execute("SELECT COALESCE(MAX(n), 0) FROM counter WHERE name='x'").fetchone()
            db.execute("INSERT OR REPLACE INTO counter VALUES ('x', ?)", (n + 1,))
    db.close()


def test_concurrent_read_modify_write_from_processes_loses_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sqlite")
    sqlite.connect(path, schema=_SCHEMA).close()
    assert run_in_processes(_increment, (path, 40)) == [0, 0, 0]
    assert sqlite3.connect(path).execute("SELECT n FROM counter").fetchone()[0] == 120


def test_readonly_opens_odd_paths_and_refuses_writes(tmp_path: Path) -> None:
    odd = tmp_path / "state #1 ?50%"
    odd.mkdir()
    writer = sqlite.connect(odd / "j.sqlite", schema=_SCHEMA)
    with sqlite.transaction(writer):
        writer.execute("INSERT INTO counter VALUES ('x', 3)")
    reader = sqlite.connect(odd / "j.sqlite", readonly=True)
    assert reader.execute("SELECT n FROM counter").fetchone()[0] == 3
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader.execute("INSERT INTO counter VALUES ('y', 1)")
    with pytest.raises(sqlite3.OperationalError):
        sqlite.connect(odd / "missing.sqlite", readonly=True)
    assert not (odd / "missing.sqlite").exists()
