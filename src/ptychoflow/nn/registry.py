"""Model registry: versions, their lineage and quality, and the ``best`` pointer (SQLite).

Every change is one SQLite transaction, so the registry is never half-updated. Files are
kept under the registry directory (``versions/<version>/checkpoint.pt`` and ``model.onnx``)
and recorded relative to it, so the directory can be moved. The ``best`` pointer only moves
through ``promote_if_better`` (candidate beats best by a margin), an explicit ``promote``,
or ``rollback``; every move is logged in ``events``.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ptychoflow import sqlite
from ptychoflow.errors import InputError
from ptychoflow.names import inside, printable, safe_component

DB_FILENAME = "registry.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    version TEXT PRIMARY KEY,
    number INTEGER UNIQUE NOT NULL,
    parent TEXT,
    created REAL NOT NULL,
    model_kind TEXT NOT NULL,
    model_config TEXT NOT NULL,
    preprocessing TEXT NOT NULL,
    scans_seen TEXT NOT NULL,
    val_loss REAL,
    ssim REAL,
    checkpoint_path TEXT NOT NULL,
    onnx_path TEXT,
    onnx_sha256 TEXT,
    extra TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS pointers (name TEXT PRIMARY KEY, version TEXT NOT NULL REFERENCES versions(version));
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, kind TEXT NOT NULL,
    version TEXT, previous TEXT, detail TEXT NOT NULL DEFAULT '{}'
);
"""


@dataclass
class ModelVersion:
    version: str
    parent: str | None
    created: float
    model_kind: str
    model_config: dict
    preprocessing: dict
    scans_seen: list[str]
    val_loss: float | None
    ssim: float | None
    checkpoint_path: str  # absolute on read
    onnx_path: str | None
    onnx_sha256: str | None
    extra: dict = field(default_factory=dict)
    is_best: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def stitch_weight_path(self) -> Path | None:
        """The stitching weight trained with this version (``extra["stitch_weight"]``, a file
        name in its version directory); None for versions trained without one."""
        name = (self.extra or {}).get("stitch_weight")
        if not name:
            return None
        return Path(self.checkpoint_path).parent / safe_component(name, source=self.checkpoint_path,
                                                                  field=f"{self.version}: extra.stitch_weight")


_JSON_COLUMNS = {"model_config": dict, "preprocessing": dict, "scans_seen": list, "extra": dict}
_NUMBER_COLUMNS = ("val_loss", "ssim", "created")


class Registry:
    """A registry directory: ``registry.sqlite`` plus ``versions/<v>/`` files.

    Queries never create anything (a registry that does not exist yet reads as empty);
    only changes create the database. A row that does not hold what the schema promises
    (corrupt JSON, text where a number belongs, a path leading out of the registry, a
    ``best`` pointer to no version) is an InputError naming the file and the field.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.db_path = self.root / DB_FILENAME

    # -- storage -------------------------------------------------------------------------
    @contextmanager
    def _db(self, *, create: bool = False) -> Iterator[sqlite3.Connection]:
        """One transaction; `create` (changes only) makes the directory and database."""
        exists = self.db_path.exists()
        if exists and self.db_path.is_file() and self.db_path.stat().st_size == 0:
            raise InputError(self.db_path, "(file)", "is 0 bytes (truncated or not a registry); restore it from a "
                             "backup or move it aside")
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
        target = self.db_path if exists or create else ":memory:"  # nothing there yet: an empty registry
        try:
            with closing(sqlite.connect(target, schema=_SCHEMA)) as conn, sqlite.transaction(conn):
                yield conn
        except sqlite3.DatabaseError as exc:
            raise InputError(self.db_path, "(sqlite)", f"unreadable registry: {exc}") from None

    def version_dir(self, version: str) -> Path:
        return self.root / "versions" / safe_component(version, source=self.db_path, field="version")

    def _row(self, conn: sqlite3.Connection, row: tuple, best: str | None) -> ModelVersion:
        cols = [d[0] for d in conn.execute("SELECT * FROM versions LIMIT 0").description]
        data = dict(zip(cols, row))
        data.pop("number")
        version = safe_component(data["version"], source=self.db_path, field="versions.version")

        def field(name: str) -> str:
            return f"versions[{version}].{name}"

        for key, kind in _JSON_COLUMNS.items():
            try:
                data[key] = json.loads(data[key])
            except (TypeError, ValueError):
                raise InputError(self.db_path, field(key), f"is not JSON: {printable(data[key])[:80]}") from None
            if not isinstance(data[key], kind):
                raise InputError(self.db_path, field(key), f"expected a JSON {kind.__name__}, got {type(data[key]).__name__}")
        for key in _NUMBER_COLUMNS:
            value = data[key]
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise InputError(self.db_path, field(key), f"expected a number or null, got {printable(value)[:80]!r}")
        for key in ("checkpoint_path", "onnx_path"):
            if data[key] is not None:
                data[key] = str(inside(self.root, data[key], source=self.db_path, field=field(key)))
        return ModelVersion(**data, is_best=data["version"] == best)

    def _best(self, conn: sqlite3.Connection, *, check: bool = True) -> str | None:
        """The ``best`` pointer; one that names no registered version is corruption (not
        `check`ed only by the move that repairs it)."""
        row = conn.execute("SELECT version FROM pointers WHERE name='best'").fetchone()
        if row is None or not check:
            return None if row is None else row[0]
        if conn.execute("SELECT 1 FROM versions WHERE version=?", (row[0],)).fetchone() is None:
            known = [r[0] for r in conn.execute("SELECT version FROM versions ORDER BY number")]
            raise InputError(self.db_path, "pointers.best", f"names {printable(row[0])!r}, which is not a registered "
                             f"version (known: {', '.join(known) or 'none'}); `ptychoflow models promote VERSION` repairs it")
        return row[0]

    def _relative(self, path: str | Path | None) -> str | None:
        if path is None:
            return None
        path = Path(path).resolve()
        try:
            return str(path.relative_to(self.root.resolve()))
        except ValueError:
            return str(path)

    # -- queries -------------------------------------------------------------------------
    def next_version(self) -> str:
        with self._db() as conn:
            (number,) = conn.execute("SELECT COALESCE(MAX(number), 0) + 1 FROM versions").fetchone()
        return f"v{number:04d}"

    def list(self) -> list[ModelVersion]:
        with self._db() as conn:
            best = self._best(conn)
            return [self._row(conn, r, best) for r in conn.execute("SELECT * FROM versions ORDER BY number")]

    def get(self, version: str) -> ModelVersion:
        with self._db() as conn:
            row = conn.execute("SELECT * FROM versions WHERE version=?", (version,)).fetchone()
            if row is None:
                known = [r[0] for r in conn.execute("SELECT version FROM versions ORDER BY number")]
                raise InputError(self.db_path, "version",
                                 f"no version {printable(version)!r} (known: {', '.join(known) or 'none'})")
            return self._row(conn, row, self._best(conn))

    def best(self) -> ModelVersion | None:
        with self._db() as conn:
            name = self._best(conn)
            if name is None:
                return None
            row = conn.execute("SELECT * FROM versions WHERE version=?", (name,)).fetchone()
            return self._row(conn, row, name)

    def events(self) -> list[dict]:
        with self._db() as conn:
            rows = conn.execute("SELECT time, kind, version, previous, detail FROM events ORDER BY id").fetchall()
        return [{"time": t, "kind": k, "version": v, "previous": p, "detail": self._event_detail(i, d)}
                for i, (t, k, v, p, d) in enumerate(rows)]

    def _event_detail(self, index: int, text: str) -> Any:
        try:
            return json.loads(text)
        except (TypeError, ValueError):
            raise InputError(self.db_path, f"events[{index}].detail", f"is not JSON: {printable(text)[:80]}") from None

    # -- changes -------------------------------------------------------------------------
    def register(
        self,
        version: str,
        *,
        parent: str | None,
        model_config: dict,
        preprocessing: dict,
        scans_seen: list[str],
        val_loss: float | None,
        ssim: float | None,
        checkpoint_path: str | Path,
        onnx_path: str | Path | None = None,
        onnx_sha256: str | None = None,
        extra: dict | None = None,
    ) -> ModelVersion:
        """Record a version whose files are already in place (call this last)."""
        if not Path(checkpoint_path).exists():
            raise InputError(checkpoint_path, "(file)", "checkpoint missing; register after writing it")
        number = int(version.lstrip("v"))
        with self._db(create=True) as conn:
            conn.execute(
                "INSERT INTO versions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    version, number, parent, time.time(), model_config["kind"], json.dumps(model_config),
                    json.dumps(preprocessing), json.dumps(sorted(set(scans_seen))), val_loss, ssim,
                    self._relative(checkpoint_path), self._relative(onnx_path), onnx_sha256, json.dumps(extra or {}),
                ),
            )
            conn.execute("INSERT INTO events (time, kind, version, detail) VALUES (?,?,?,?)",
                         (time.time(), "register", version, json.dumps({"ssim": ssim, "val_loss": val_loss})))
        return self.get(version)

    def _move_best(self, conn: sqlite3.Connection, version: str, kind: str, detail: dict) -> None:
        if conn.execute("SELECT 1 FROM versions WHERE version=?", (version,)).fetchone() is None:
            raise InputError(self.db_path, "version", f"no version {version!r}")
        previous = self._best(conn, check=False)
        conn.execute("INSERT OR REPLACE INTO pointers VALUES ('best', ?)", (version,))
        conn.execute("INSERT INTO events (time, kind, version, previous, detail) VALUES (?,?,?,?,?)",
                     (time.time(), kind, version, previous, json.dumps(detail)))

    def promote_if_better(self, version: str, candidate_ssim: float, best_ssim: float | None, margin: float) -> bool:
        """Move ``best`` to `version` when there is no best or candidate > best + margin.

        `best_ssim` is the current best scored on the same held-out data as the candidate
        (not its historical score), so the comparison is fair as the data change.
        """
        with self._db(create=True) as conn:
            current = self._best(conn)
            if current is not None and best_ssim is not None and not candidate_ssim > best_ssim + margin:
                conn.execute("INSERT INTO events (time, kind, version, previous, detail) VALUES (?,?,?,?,?)",
                             (time.time(), "rejected", version, current,
                              json.dumps({"ssim": candidate_ssim, "best_ssim": best_ssim, "margin": margin})))
                return False
            self._move_best(conn, version, "promote", {"ssim": candidate_ssim, "best_ssim": best_ssim, "margin": margin})
            return True

    def promote(self, version: str, *, reason: str = "manual") -> None:
        with self._db(create=True) as conn:
            self._move_best(conn, version, "promote", {"reason": reason})

    def rollback(self, version: str | None = None) -> str:
        """Point ``best`` at `version`, or at the previous best when None; returns it."""
        with self._db(create=True) as conn:
            if version is None:
                current = self._best(conn)
                rows = conn.execute(
                    "SELECT version, previous FROM events WHERE kind IN ('promote','rollback') ORDER BY id DESC"
                ).fetchall()
                target = next((prev for ver, prev in rows if ver == current and prev and prev != current), None)
                if target is None:
                    raise InputError(self.db_path, "best", "no earlier best to roll back to; name a version")
                version = target
            self._move_best(conn, version, "rollback", {})
        return version
