"""SQLite store of flows, runs, state steps and events: the engine's only memory.

WAL mode, one connection per process, every transition committed in one transaction before
the engine takes the next step, so a killed worker resumes from the last committed state.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ptychoflow import sqlite

STORE_FILENAME = "runs.sqlite"
CANCELED_CODE = "FlowCanceled"
CANCELED_DESCRIPTION = "The Flow Instance was canceled by the user"  # the service's words

_SCHEMA = """
CREATE TABLE IF NOT EXISTS flows (
    flow_id TEXT PRIMARY KEY, title TEXT NOT NULL, checksum TEXT NOT NULL UNIQUE,
    definition TEXT NOT NULL, input_schema TEXT NOT NULL, source TEXT, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, flow_id TEXT NOT NULL REFERENCES flows(flow_id),
    status TEXT NOT NULL, label TEXT NOT NULL DEFAULT '', tags TEXT NOT NULL DEFAULT '[]',
    username TEXT NOT NULL DEFAULT '', created REAL NOT NULL, completed REAL,
    current_state TEXT, document TEXT NOT NULL, output TEXT, error TEXT,
    step_seq INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS runs_status ON runs(status, created);
CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT NOT NULL, seq INTEGER NOT NULL, name TEXT NOT NULL, type TEXT NOT NULL,
    status TEXT NOT NULL, input TEXT, output TEXT, started REAL NOT NULL, finished REAL,
    error TEXT, action_url TEXT, action_key TEXT, action_body TEXT, action_status TEXT,
    deadline REAL, PRIMARY KEY (run_id, seq));
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, time REAL NOT NULL,
    code TEXT NOT NULL, description TEXT NOT NULL, details TEXT);
CREATE INDEX IF NOT EXISTS events_run ON events(run_id, id);
"""


@dataclass
class RunRow:
    run_id: str
    flow_id: str
    status: str
    label: str
    tags: list[str]
    username: str
    created: float
    completed: float | None
    current_state: str | None
    document: Any
    output: Any
    error: str | None
    step_seq: int


@dataclass
class StepRow:
    run_id: str
    seq: int
    name: str
    type: str
    status: str  # ACTIVE | SUCCEEDED | FAILED
    input: Any
    output: Any
    started: float
    finished: float | None
    error: str | None
    action_url: str | None
    action_key: str | None
    action_body: Any
    action_status: Any
    deadline: float | None


@dataclass
class Histogram:
    """One labelled histogram series: cumulative counts at each bound, sum and count."""

    labels: tuple[str, ...]
    cumulative: list[int]
    total: float
    count: int


@dataclass
class RunStats:
    """What the whole store says, for monitoring (see ``Store.stats``)."""

    runs: list[tuple[tuple[str, str], int]]  # ((flow, status), runs)
    run_durations: list[Histogram]  # labels (flow, status): created -> completed of finished runs
    state_durations: list[Histogram]  # labels (flow, state): started -> finished of finished states
    failed_states: list[tuple[tuple[str, str], int]]  # ((flow, state), states that failed)
    active_states: list[tuple[tuple[str, str], int]]  # ((flow, state), ACTIVE runs in it now)
    bounds: tuple[float, ...]


def _histograms(rows: list[tuple], n_bounds: int) -> list[Histogram]:
    """Rows of (label, label, count <= each bound..., sum, count) as Histograms."""
    return [Histogram((row[0], row[1]), list(row[2:2 + n_bounds]), row[2 + n_bounds] or 0.0, row[3 + n_bounds])
            for row in rows]


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class Store:
    """Thin, typed access to ``<state_dir>/runs.sqlite``; safe to share between threads."""

    def __init__(self, state_dir: str | Path) -> None:
        self.path = Path(state_dir) / STORE_FILENAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        # synchronous=FULL (sqlite.connect's default): every commit is fsynced, so a committed
        # transition survives even a power loss (NORMAL would survive kill -9 only); it costs
        # ~2 ms per state (benchmarks/flows.py).
        self._db = sqlite.connect(self.path, schema=_SCHEMA, shared_between_threads=True)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic, committed unit of work; the lock keeps this process's threads apart."""
        with self._lock, sqlite.transaction(self._db) as db:
            yield db

    # --- flows ---------------------------------------------------------------------------
    def put_flow(self, title: str, checksum: str, definition: dict, schema: dict, source: str) -> str:
        """Store a flow keyed on its checksum; the same checksum always returns the same id."""
        with self.transaction() as db:
            row = db.execute("SELECT flow_id FROM flows WHERE checksum=?", (checksum,)).fetchone()
            if row:
                return row[0]
            flow_id = str(uuid.uuid4())
            db.execute(
                "INSERT INTO flows VALUES (?,?,?,?,?,?,?)",
                (flow_id, title, checksum, _dumps(definition), _dumps(schema), source, time.time()),
            )
            return flow_id

    def get_flow(self, flow_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT flow_id, title, checksum, definition, input_schema, source FROM flows WHERE flow_id=?",
                (flow_id,),
            ).fetchone()
        if row is None:
            return None
        return {"flow_id": row[0], "title": row[1], "checksum": row[2], "definition": _loads(row[3]),
                "input_schema": _loads(row[4]), "source": row[5]}

    # --- runs ----------------------------------------------------------------------------
    def create_run(self, flow_id: str, start_at: str, body: Any, *, label: str, tags: list[str],
                   username: str) -> str:
        run_id = str(uuid.uuid4())
        now = time.time()
        with self.transaction() as db:
            db.execute(
                "INSERT INTO runs (run_id, flow_id, status, label, tags, username, created, current_state,"
                " document) VALUES (?,?,?,?,?,?,?,?,?)",
                (run_id, flow_id, "ACTIVE", label, _dumps(tags), username, now, start_at, _dumps(body)),
            )
            self._event(db, run_id, "FlowStarted", "The flow run was started", {"input": body})
        return run_id

    _RUN_COLUMNS = ("run_id, flow_id, status, label, tags, username, created, completed, current_state,"
                    " document, output, error, step_seq")

    def _run_from(self, row: tuple) -> RunRow:
        values = list(row)
        values[4] = _loads(values[4])
        values[9] = _loads(values[9])
        values[10] = _loads(values[10])
        return RunRow(*values)

    def get_run(self, run_id: str) -> RunRow | None:
        with self._lock:
            row = self._db.execute(f"SELECT {self._RUN_COLUMNS} FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return self._run_from(row) if row else None

    def find_runs(self, prefix: str, limit: int = 5) -> list[RunRow]:
        """The run with id `prefix`, else up to `limit` runs whose id starts with it (for the CLI,
        which says "ambiguous" when there are several)."""
        run = self.get_run(prefix)
        if run is not None:
            return [run]
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        with self._lock:
            rows = self._db.execute(
                f"SELECT {self._RUN_COLUMNS} FROM runs WHERE run_id LIKE ? ESCAPE '\\' ORDER BY created DESC LIMIT ?",
                (escaped + "%", limit),
            ).fetchall()
        return [self._run_from(r) for r in rows]

    def list_runs(self, limit: int = 50, status: str | None = None) -> list[RunRow]:
        query = f"SELECT {self._RUN_COLUMNS} FROM runs"
        args: tuple = ()
        if status:
            query += " WHERE status=?"
            args = (status,)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY created DESC LIMIT ?", (*args, limit)).fetchall()
        return [self._run_from(r) for r in rows]

    def active_run_ids(self) -> set[str]:
        """Ids of ACTIVE runs (cheap: the worker asks several times a second)."""
        with self._lock:
            return {row[0] for row in self._db.execute("SELECT run_id FROM runs WHERE status='ACTIVE'")}

    def move(self, db: sqlite3.Connection, run_id: str, document: Any, next_state: str | None) -> None:
        db.execute("UPDATE runs SET document=?, current_state=? WHERE run_id=?",
                   (_dumps(document), next_state, run_id))

    def finish_run(self, db: sqlite3.Connection, run_id: str, status: str, *, output: Any = None,
                   error: str | None = None) -> None:
        db.execute(
            "UPDATE runs SET status=?, completed=?, output=?, error=? WHERE run_id=?",
            (status, time.time(), _dumps(output), error, run_id),
        )

    def set_status(self, run_id: str, status: str, *, only_if: tuple[str, ...] = ()) -> bool:
        """Change a run's status (cancel, resume); ``only_if`` guards against races."""
        with self.transaction() as db:
            row = db.execute("SELECT status FROM runs WHERE run_id=?", (run_id,)).fetchone()
            if row is None or (only_if and row[0] not in only_if):
                return False
            finished = status in ("SUCCEEDED", "FAILED", "ENDED")
            db.execute("UPDATE runs SET status=?, completed=? WHERE run_id=?",
                       (status, time.time() if finished else None, run_id))
            code = {"ENDED": "FlowCanceled", "ACTIVE": "FlowResumed", "INACTIVE": "FlowInactive"}.get(status, status)
            self._event(db, run_id, code, f"run status set to {status}", None)
            return True

    def cancel_run(self, run_id: str) -> bool:
        """End an ACTIVE/INACTIVE run and close its open step; False if it had already finished.

        The service ends a cancelled run with code ``FlowCanceled`` and this description (its
        status there is FAILED; both backends show it as ENDED). The engine worker notices the
        run is no longer ACTIVE and cancels the action in flight (``Engine.tick``).
        """
        with self.transaction() as db:
            row = db.execute("SELECT status, step_seq, current_state FROM runs WHERE run_id=?", (run_id,)).fetchone()
            if row is None or row[0] not in ("ACTIVE", "INACTIVE"):
                return False
            now = time.time()
            db.execute("UPDATE steps SET status='FAILED', finished=?, error='cancelled'"
                       " WHERE run_id=? AND seq=? AND status='ACTIVE'", (now, run_id, row[1]))
            db.execute("UPDATE runs SET status='ENDED', completed=?, error=? WHERE run_id=?",
                       (now, f"{CANCELED_CODE}: {CANCELED_DESCRIPTION}", run_id))
            self._event(db, run_id, CANCELED_CODE, CANCELED_DESCRIPTION, {"state_name": row[2]})
            return True

    # --- monitoring ----------------------------------------------------------------------
    def oldest_active_since(self) -> float | None:
        """When the longest-waiting ACTIVE run entered the state it is in (its open state's
        start, else its last state's end, else its creation): a frozen engine shows here."""
        with self._lock:
            row = self._db.execute(
                "SELECT MIN(COALESCE(CASE WHEN s.status='ACTIVE' THEN s.started ELSE s.finished END, r.created))"
                " FROM runs r LEFT JOIN steps s ON s.run_id=r.run_id AND s.seq=r.step_seq WHERE r.status='ACTIVE'"
            ).fetchone()
        return row[0]

    def stats(self, bounds: tuple[float, ...]) -> RunStats:
        """Aggregates over every run and state ever recorded (for Prometheus counters and
        histograms: they only grow). Durations are counted into the upper `bounds`."""
        le = ", ".join(f"SUM(CASE WHEN d <= {float(b)!r} THEN 1 ELSE 0 END)" for b in bounds)
        with self._lock:
            runs = self._db.execute(
                "SELECT f.title, r.status, COUNT(*) FROM runs r JOIN flows f USING (flow_id) GROUP BY f.title, r.status"
            ).fetchall()
            run_durations = self._db.execute(
                f"SELECT title, status, {le}, SUM(d), COUNT(*) FROM (SELECT f.title, r.status, r.completed - r.created AS d"
                " FROM runs r JOIN flows f USING (flow_id) WHERE r.completed IS NOT NULL) GROUP BY title, status"
            ).fetchall()
            state_durations = self._db.execute(
                f"SELECT title, name, {le}, SUM(d), COUNT(*) FROM (SELECT f.title, s.name, s.finished - s.started AS d"
                " FROM steps s JOIN runs r USING (run_id) JOIN flows f USING (flow_id) WHERE s.finished IS NOT NULL)"
                " GROUP BY title, name"
            ).fetchall()
            step_counts = self._db.execute(
                "SELECT f.title, s.name, s.status, COUNT(*) FROM steps s JOIN runs r USING (run_id)"
                " JOIN flows f USING (flow_id) WHERE s.status != 'SUCCEEDED' AND (s.status != 'ACTIVE' OR r.status='ACTIVE')"
                " GROUP BY f.title, s.name, s.status"
            ).fetchall()
        return RunStats(
            runs=[((title, status), count) for title, status, count in runs],
            run_durations=_histograms(run_durations, len(bounds)),
            state_durations=_histograms(state_durations, len(bounds)),
            failed_states=[((t, name), c) for t, name, status, c in step_counts if status == "FAILED"],
            active_states=[((t, name), c) for t, name, status, c in step_counts if status == "ACTIVE"],
            bounds=tuple(bounds),
        )

    # --- steps ---------------------------------------------------------------------------
    _STEP_COLUMNS = ("run_id, seq, name, type, status, input, output, started, finished, error, action_url,"
                     " action_key, action_body, action_status, deadline")

    def _step_from(self, row: tuple) -> StepRow:
        values = list(row)
        for i in (5, 6, 12, 13):
            values[i] = _loads(values[i])
        return StepRow(*values)

    def open_step(self, db: sqlite3.Connection, run: RunRow, name: str, kind: str, document: Any, *,
                  action_url: str | None = None, action_key: str | None = None, action_body: Any = None,
                  deadline: float | None = None) -> int:
        """Record that a state started; returns its sequence number within the run."""
        seq = run.step_seq + 1
        db.execute(
            f"INSERT INTO steps ({self._STEP_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (run.run_id, seq, name, kind, "ACTIVE", _dumps(document), None, time.time(), None, None,
             action_url, action_key, _dumps(action_body), None, deadline),
        )
        db.execute("UPDATE runs SET step_seq=? WHERE run_id=?", (seq, run.run_id))
        run.step_seq = seq
        return seq

    def close_step(self, db: sqlite3.Connection, run_id: str, seq: int, status: str, *, output: Any = None,
                   error: str | None = None, action_status: Any = None) -> None:
        db.execute(
            "UPDATE steps SET status=?, output=?, finished=?, error=?, action_status=COALESCE(?, action_status)"
            " WHERE run_id=? AND seq=?",
            (status, _dumps(output), time.time(), error, _dumps(action_status), run_id, seq),
        )

    def get_step(self, run_id: str, seq: int) -> StepRow | None:
        with self._lock:
            row = self._db.execute(f"SELECT {self._STEP_COLUMNS} FROM steps WHERE run_id=? AND seq=?",
                                   (run_id, seq)).fetchone()
        return self._step_from(row) if row else None

    def steps(self, run_id: str) -> list[StepRow]:
        with self._lock:
            rows = self._db.execute(f"SELECT {self._STEP_COLUMNS} FROM steps WHERE run_id=? ORDER BY seq",
                                    (run_id,)).fetchall()
        return [self._step_from(r) for r in rows]

    # --- events --------------------------------------------------------------------------
    def event(self, db: sqlite3.Connection, run_id: str, code: str, description: str, details: Any) -> None:
        self._event(db, run_id, code, description, details)

    @staticmethod
    def _event(db: sqlite3.Connection, run_id: str, code: str, description: str, details: Any) -> None:
        db.execute("INSERT INTO events (run_id, time, code, description, details) VALUES (?,?,?,?,?)",
                   (run_id, time.time(), code, description, _dumps(details)))

    def events(self, run_id: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT time, code, description, details FROM events WHERE run_id=? ORDER BY id", (run_id,)
            ).fetchall()
        return [{"time": t, "code": c, "description": d, "details": _loads(x)} for t, c, d, x in rows]

