"""Position files as the APS Velociprobe (33-ID, formerly 2-ID-D) writes them beside the
Eiger master file.

A comma-separated text file, one row per trigger, ``#`` comment lines allowed, at least 8
columns. Column 1 is x, column 2 the laser-interferometer y, column 5 the position-encoder y
(opposite sign), column 7 the trigger number (the frame index); positions are in nanometres.
This is the layout ptychodus's Velociprobe reader reads, and its sign conventions.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ptychoflow.errors import ScanError

X_COLUMN, INTERFEROMETER_Y_COLUMN, ENCODER_Y_COLUMN, TRIGGER_COLUMN = 1, 2, 5, 7
MIN_COLUMNS = TRIGGER_COLUMN + 1
NANOMETRE = 1e-9
YSource = Literal["interferometer", "encoder"]


@dataclass(frozen=True)
class PositionTable:
    """Positions by trigger number: ``yx_m[k]`` belongs to trigger ``triggers[k]``."""

    path: Path
    triggers: np.ndarray  # (M,) int
    yx_m: np.ndarray  # (M, 2) float64, metres, (y, x)

    def for_frames(self, n_frames: int, *, x_scale: float = 1.0) -> np.ndarray:
        """(n_frames, 2) positions of frames 0..n-1 (frame i <- trigger i); extra rows ignored."""
        if np.array_equal(self.triggers[:n_frames], np.arange(n_frames)):  # rows in trigger order, as usual
            out = self.yx_m[:n_frames].copy()
        else:
            order = {int(t): k for k, t in enumerate(self.triggers)}
            missing = [i for i in range(n_frames) if i not in order]
            if missing:
                raise ScanError(self.path, f"column {TRIGGER_COLUMN} (trigger)",
                                f"no position for {len(missing)} of {n_frames} frames, first frame {missing[0]} "
                                f"({self.triggers.size} rows; the position file is shorter than the scan?)")
            out = self.yx_m[[order[i] for i in range(n_frames)]]
        out[:, 1] *= x_scale
        return out


def read_velociprobe_positions(path: str | Path, y_source: YSource = "interferometer") -> PositionTable:
    path = Path(path)
    if y_source not in ("interferometer", "encoder"):
        raise ScanError(path, "y_source", f"must be 'interferometer' or 'encoder', got {y_source!r}")
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except FileNotFoundError:
        raise ScanError(path, "(file)", "position file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScanError(path, "(file)", f"not a readable text file: {exc}") from None
    y_column = INTERFEROMETER_Y_COLUMN if y_source == "interferometer" else ENCODER_Y_COLUMN
    try:  # the fast path: numpy's C parser (a scan has up to ~1e6 rows)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": reported below
            table = np.loadtxt(io.StringIO(text), delimiter=",", comments="#", ndmin=2, dtype=np.float64)
    except ValueError:
        table = None
    if table is None or (table.size and table.shape[1] < MIN_COLUMNS):
        table = _parse_lines(path, text)  # finds the bad line and says which
    triggers = table[:, TRIGGER_COLUMN].astype(np.int64) if table.size else np.zeros(0, np.int64)
    rows = np.stack([table[:, y_column], table[:, X_COLUMN]], axis=1) if table.size else np.zeros((0, 2))
    if y_source == "encoder":
        rows[:, 0] *= -1
    if not np.isfinite(rows).all():
        bad = int(np.argmin(np.isfinite(rows).all(axis=1)))
        raise ScanError(path, f"row {bad + 1}", "position is NaN or infinite")
    if not len(rows):
        raise ScanError(path, "(file)", "no position rows")
    unique, counts = np.unique(triggers, return_counts=True)
    if (counts > 1).any():
        raise ScanError(path, f"column {TRIGGER_COLUMN} (trigger)", f"trigger {int(unique[np.argmax(counts > 1)])} appears twice")
    return PositionTable(path, triggers, rows * NANOMETRE)


def _parse_lines(path: Path, text: str) -> np.ndarray:
    """Line by line, to name the first line that is not a row of numbers."""
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cells = line.split(",")
        if len(cells) < MIN_COLUMNS:
            raise ScanError(path, f"line {number}", f"{len(cells)} columns, expected at least {MIN_COLUMNS}")
        try:
            rows.append([float(cell) for cell in cells[:MIN_COLUMNS]])
        except ValueError as exc:
            raise ScanError(path, f"line {number}", f"not a number: {exc}") from None
    return np.asarray(rows, np.float64).reshape(-1, MIN_COLUMNS)
