"""Train/validation split that never lets overlapping neighbours straddle the two sets.

Neighbouring positions share most of their object patch, so a random per-pair split leaks
validation content into training and flatters the validation loss. With enough scans, whole
scans are held out (chosen by a hash of the scan id, so a scan's role is stable as the
corpus grows). Otherwise each scan gives a corner block of its positions (a Chebyshev
"square" from one corner of the scanned area, holding ``fraction`` of them); training
positions closer than ``guard_px`` to any validation position are dropped from both sets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ptychoflow.fs import sha256_text
from ptychoflow.nn.corpus import CorpusData


@dataclass
class Split:
    train: np.ndarray  # row indices
    val: np.ndarray
    mode: str  # "scans" or "blocks"
    val_scans: list[str]


def _scan_rank(scan_id: str, seed: int) -> str:
    return sha256_text(f"{seed}:{scan_id}")


def corner_block(positions: np.ndarray, fraction: float, corner: int = 0) -> np.ndarray:
    """Boolean mask of the ~fraction of positions nearest one corner (Chebyshev distance)."""
    lo, hi = positions.min(axis=0), positions.max(axis=0)
    unit = (positions - lo) / np.maximum(hi - lo, 1e-9)
    if corner & 1:
        unit[:, 0] = 1 - unit[:, 0]
    if corner & 2:
        unit[:, 1] = 1 - unit[:, 1]
    distance = unit.max(axis=1)
    count = max(1, int(round(fraction * len(positions))))
    mask = np.zeros(len(positions), bool)
    mask[np.argsort(distance, kind="stable")[:count]] = True
    return mask


def split_corpus(data: CorpusData, *, fraction: float = 0.1, guard_px: float | None = None, seed: int = 0) -> Split:
    """Split rows of `data`; `guard_px` defaults to half the patch size (the lit probe)."""
    size = data.phase.shape[-1]
    guard = size / 2 if guard_px is None else guard_px
    n_val_scans = math.floor(fraction * len(data.scans) + 1e-9)
    if n_val_scans >= 1 and len(data.scans) - n_val_scans >= 1:
        ranked = sorted(data.scans, key=lambda s: _scan_rank(s.scan_id, seed))
        held = {s.scan_id for s in ranked[:n_val_scans]}
        val = np.concatenate([s.rows for s in data.scans if s.scan_id in held])
        train = np.concatenate([s.rows for s in data.scans if s.scan_id not in held])
        return Split(train, val, "scans", sorted(held))
    train_parts, val_parts = [], []
    for k, scan in enumerate(data.scans):
        rows = scan.rows
        positions = data.positions_px[rows]
        held = corner_block(positions, fraction, corner=(seed + k) % 4)
        val_pos = positions[held]
        distance = np.full(len(rows), np.inf)
        for start in range(0, len(val_pos), 256):  # min distance to any validation position
            d = np.linalg.norm(positions[:, None] - val_pos[None, start : start + 256], axis=2).min(axis=1)
            distance = np.minimum(distance, d)
        train_parts.append(rows[~held & (distance >= guard)])
        val_parts.append(rows[held])
    return Split(np.concatenate(train_parts), np.concatenate(val_parts), "blocks", [])
