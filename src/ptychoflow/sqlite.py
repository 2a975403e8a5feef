"""SQLite as every ptychoflow store uses it: one connection recipe, one transaction shape.

The stores (the flow engine's runs, the watcher's journal, the model registry) have the same
needs: several processes share one file, so WAL lets readers run beside a writer; a writer
waits for another instead of failing (busy timeout); a committed transaction survives
``kill -9`` and power loss (``synchronous=FULL``). Connections are in autocommit mode so that
``transaction`` alone decides where a unit of work begins and ends.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

BUSY_TIMEOUT_S = 30.0  # a writer waits this long for another before "database is locked"
Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]


def connect(path: str | Path, *, schema: str | None = None, synchronous: Synchronous = "FULL",
            readonly: bool = False, shared_between_threads: bool = False) -> sqlite3.Connection:
    """Open a store: WAL, `synchronous`, busy timeout, then `schema` (idempotent DDL).

    `readonly` opens without creating or changing anything (no pragma, no schema), for
    operators who may read a state directory they do not own. `shared_between_threads`
    lifts sqlite3's same-thread check; the caller then serialises access itself.
    """
    if synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
        raise ValueError(f"unknown synchronous mode {synchronous!r}")
    path = Path(path)
    target = f"{path.resolve().as_uri()}?mode=ro" if readonly else str(path)
    db = sqlite3.connect(target, timeout=BUSY_TIMEOUT_S, isolation_level=None, uri=readonly,
                         check_same_thread=not shared_between_threads)
    if readonly:
        return db
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
        if schema:
            db.executescript(schema)
    except BaseException:
        db.close()
        raise
    return db


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One atomic unit of work: ``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any error.

    IMMEDIATE takes the write lock up front: two writers that both read first and then try
    to upgrade would deadlock with an SQLITE_BUSY that no busy timeout resolves. A failed
    COMMIT is rolled back too, so the connection is never left inside a transaction.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:  # SQLite may already have rolled back (e.g. after SQLITE_FULL)
            db.execute("ROLLBACK")
        raise
