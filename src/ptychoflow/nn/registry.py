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
        return Path(self.checkpoint_path).parent / name if name else None


class Registry:
    """A registry directory: ``registry.sqlite`` plus ``versions/<v>/`` files."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.db_path = self.root / DB_FILENAME

    # -- storage -------------------------------------------------------------------------
    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            with closing(sqlite.connect(self.db_path, schema=_SCHEMA)) as conn, sqlite.transaction(conn):
                yield conn
        except sqlite3.DatabaseError as exc:
            raise InputError(self.db_path, "(sqlite)", f"unreadable registry: {exc}") from None

    def version_dir(self, version: str) -> Path:
        return self.root / "versions" / version

    def _row(self, conn: sqlite3.Connection, row: tuple, best: str | None) -> ModelVersion:
        cols = [d[0] for d in conn.execute("SELECT * FROM versions LIMIT 0").description]
        data = dict(zip(cols, row))
        data.pop("number")
        for key in ("model_config", "preprocessing", "scans_seen", "extra"):
            data[key] = json.loads(data[key])
        data["checkpoint_path"] = str(self.root / data["checkpoint_path"])
        if data["onnx_path"]:
            data["onnx_path"] = str(self.root / data["onnx_path"])
        return ModelVersion(**data, is_best=data["version"] == best)

    def _best(self, conn: sqlite3.Connection) -> str | None:
        row = conn.execute("SELECT version FROM pointers WHERE name='best'").fetchone()
        return row[0] if row else None

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
                raise InputError(self.db_path, "version", f"no version {version!r} (known: {', '.join(known) or 'none'})")
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
        return [{"time": t, "kind": k, "version": v, "previous": p, "detail": json.loads(d)} for t, k, v, p, d in rows]

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
        with self._db() as conn:
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
        previous = self._best(conn)
        conn.execute("INSERT OR REPLACE INTO pointers VALUES ('best', ?)", (version,))
        conn.execute("INSERT INTO events (time, kind, version, previous, detail) VALUES (?,?,?,?,?)",
                     (time.time(), kind, version, previous, json.dumps(detail)))

    def promote_if_better(self, version: str, candidate_ssim: float, best_ssim: float | None, margin: float) -> bool:
        """Move ``best`` to `version` when there is no best or candidate > best + margin.

        `best_ssim` is the current best scored on the same held-out data as the candidate
        (not its historical score), so the comparison is fair as the data change.
        """
        with self._db() as conn:
            current = self._best(conn)
            if current is not None and best_ssim is not None and not candidate_ssim > best_ssim + margin:
                conn.execute("INSERT INTO events (time, kind, version, previous, detail) VALUES (?,?,?,?,?)",
                             (time.time(), "rejected", version, current,
                              json.dumps({"ssim": candidate_ssim, "best_ssim": best_ssim, "margin": margin})))
                return False
            self._move_best(conn, version, "promote", {"ssim": candidate_ssim, "best_ssim": best_ssim, "margin": margin})
            return True

    def promote(self, version: str, *, reason: str = "manual") -> None:
        with self._db() as conn:
            self._move_best(conn, version, "promote", {"reason": reason})

    def rollback(self, version: str | None = None) -> str:
        """Point ``best`` at `version`, or at the previous best when None; returns it."""
        with self._db() as conn:
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
