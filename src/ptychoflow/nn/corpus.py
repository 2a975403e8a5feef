"""The growing training corpus: one HDF5 file, pairs appended per scan (DESIGN.md contract).

Layout::

    /diffraction   (N, 1, h, w) float32   preprocessed patterns (resizable)
    /phase         (N, h, w)    float32   de-meaned phase patches (see nn.pairs)
    /amplitude     (N, h, w)    float32
    /positions_px  (N, 2)       float64   patch centres in the network's pixel grid
    /scan_index    (N,)         int32     row -> /scans/<k>
    /scans/<k>     attrs scan_id, start, stop, reference_origin_px;
                   datasets reference_phase (the reconstruction's phase) and weight (|P|^2)
    /@preprocessing  JSON of the PreprocessConfig every row was made with

HDF5 has no journal: a crash while resizing in place can wreck the whole file. So an append
copies the file to a temporary name, appends there, fsyncs and renames it over the old one
(cost: one copy of the corpus per scan, ~40 MB at 750 pairs of 64x64). A crash leaves the
previous corpus intact; an exclusive lock serialises concurrent appenders.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from ptychoflow.errors import InputError
from ptychoflow.fs import atomic_write, file_lock
from ptychoflow.nn.pairs import Pairs

FORMAT_VERSION = 1
ROW_DATASETS = ("diffraction", "phase", "amplitude", "positions_px", "scan_index")


@dataclass
class ScanEntry:
    scan_id: str
    start: int
    stop: int
    reference_phase: np.ndarray
    reference_origin_px: tuple[float, float]
    weight: np.ndarray
    probe_symmetry: float = 0.0

    @property
    def rows(self) -> np.ndarray:
        return np.arange(self.start, self.stop)


@dataclass
class CorpusData:
    """The whole corpus in memory (it is small: ~50 kB per pair at 64x64)."""

    diffraction: np.ndarray
    phase: np.ndarray
    amplitude: np.ndarray
    positions_px: np.ndarray
    scan_index: np.ndarray
    scans: list[ScanEntry]
    preprocessing: dict

    def __len__(self) -> int:
        return len(self.phase)


def _open(path: Path, mode: str = "r") -> h5py.File:
    try:
        return h5py.File(path, mode, locking=False)
    except FileNotFoundError:
        raise InputError(path, "(file)", "no such corpus") from None
    except OSError as exc:
        raise InputError(path, "(file)", f"not a readable HDF5 corpus (truncated or corrupt?): {exc}") from None


def _create_layout(f: h5py.File, size: int, preprocessing: dict) -> None:
    f.attrs["format_version"] = FORMAT_VERSION
    f.attrs["preprocessing"] = json.dumps(preprocessing, sort_keys=True)
    f.create_dataset("diffraction", (0, 1, size, size), np.float32, maxshape=(None, 1, size, size), chunks=(64, 1, size, size))
    for name in ("phase", "amplitude"):
        f.create_dataset(name, (0, size, size), np.float32, maxshape=(None, size, size), chunks=(64, size, size))
    f.create_dataset("positions_px", (0, 2), np.float64, maxshape=(None, 2), chunks=(1024, 2))
    f.create_dataset("scan_index", (0,), np.int32, maxshape=(None,), chunks=(4096,))
    f.create_group("scans")


def _scan_ids(f: h5py.File) -> list[str]:
    return [str(g.attrs["scan_id"]) for _, g in sorted(f["scans"].items())] if "scans" in f else []


def append_scan(path: str | Path, scan_id: str, pairs: Pairs, preprocessing: dict) -> int:
    """Append one scan's pairs atomically; returns rows added (0 if the scan is already in).

    Refuses pairs made with different preprocessing than the corpus (the edge would then
    feed the model inputs it never saw).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    size = pairs.phase.shape[-1]
    with file_lock(path.with_name(f".{path.name}.lock")):
        exists = path.exists()
        if exists:
            with _open(path) as f:
                _check_layout(path, f)
                if scan_id in _scan_ids(f):
                    return 0
                stored = json.loads(f.attrs["preprocessing"])
            if stored != json.loads(json.dumps(preprocessing, sort_keys=True)):
                raise InputError(path, "@preprocessing", f"corpus was built with {stored}, not {preprocessing}")

        def write(tmp: Path) -> None:
            if exists:
                shutil.copyfile(path, tmp)
            with h5py.File(tmp, "a" if exists else "w", locking=False) as f:
                if not exists:
                    _create_layout(f, size, preprocessing)
                _append_rows(f, scan_id, pairs)

        atomic_write(path, write)
    return len(pairs.phase)


def _append_rows(f: h5py.File, scan_id: str, pairs: Pairs) -> None:
    start = f["phase"].shape[0]
    n = len(pairs.phase)
    stop = start + n
    k = len(f["scans"])
    rows = {
        "diffraction": pairs.diffraction,
        "phase": pairs.phase,
        "amplitude": pairs.amplitude,
        "positions_px": pairs.positions_px,
        "scan_index": np.full(n, k, np.int32),
    }
    for name, values in rows.items():
        if f[name].shape[1:] != values.shape[1:]:
            raise InputError(f.filename, name, f"rows of shape {values.shape[1:]} do not fit {f[name].shape[1:]}")
        f[name].resize(stop, axis=0)
        f[name][start:stop] = values
    group = f["scans"].create_group(f"{k:06d}")
    group.attrs.update(scan_id=scan_id, start=start, stop=stop, reference_origin_px=list(pairs.reference_origin_px),
                       probe_symmetry=pairs.probe_symmetry)
    group.create_dataset("reference_phase", data=pairs.reference_phase, compression="gzip")
    group.create_dataset("weight", data=pairs.weight)


def _check_layout(path: Path, f: h5py.File) -> int:
    """Number of rows; raises InputError naming the first bad field."""
    if "preprocessing" not in f.attrs:
        raise InputError(path, "@preprocessing", "missing attribute (not a ptychoflow corpus)")
    n = None
    for name in ROW_DATASETS:
        if not isinstance(f.get(name), h5py.Dataset):
            raise InputError(path, f"/{name}", "missing dataset")
        rows = f[name].shape[0]
        if n is None:
            n = rows
        elif rows != n:
            raise InputError(path, f"/{name}", f"{rows} rows, but /diffraction has {n}")
    if not isinstance(f.get("scans"), h5py.Group):
        raise InputError(path, "/scans", "missing group")
    covered = 0
    for key, group in sorted(f["scans"].items()):
        for field in ("scan_id", "start", "stop"):
            if field not in group.attrs:
                raise InputError(path, f"/scans/{key}@{field}", "missing attribute")
        if int(group.attrs["start"]) != covered:
            raise InputError(path, f"/scans/{key}@start", f"is {int(group.attrs['start'])}, expected {covered}")
        covered = int(group.attrs["stop"])
    if covered != n:
        raise InputError(path, "/scans", f"scans cover {covered} rows, datasets have {n}")
    return int(n or 0)


def corpus_info(path: str | Path) -> dict:
    """Small JSON-able summary: rows, scans, preprocessing."""
    path = Path(path)
    with _open(path) as f:
        n = _check_layout(path, f)
        return {"path": str(path), "pairs": n, "scans": _scan_ids(f), "preprocessing": json.loads(f.attrs["preprocessing"])}


def load_corpus(path: str | Path) -> CorpusData:
    """Read and validate the whole corpus; any problem names the file and the field."""
    path = Path(path)
    with _open(path) as f:
        _check_layout(path, f)
        arrays = {}
        for name in ROW_DATASETS:
            try:
                arrays[name] = f[name][()]
            except (OSError, RuntimeError) as exc:
                raise InputError(path, f"/{name}", f"unreadable (truncated or corrupt?): {exc}") from None
        for name in ("diffraction", "phase", "amplitude"):
            if not np.isfinite(arrays[name]).all():
                raise InputError(path, f"/{name}", "contains NaN or infinite values")
        scans = []
        for key, group in sorted(f["scans"].items()):
            try:
                scans.append(
                    ScanEntry(
                        scan_id=str(group.attrs["scan_id"]),
                        start=int(group.attrs["start"]),
                        stop=int(group.attrs["stop"]),
                        reference_phase=group["reference_phase"][()],
                        reference_origin_px=tuple(float(v) for v in group.attrs.get("reference_origin_px", (0, 0))),  # type: ignore[arg-type]
                        weight=group["weight"][()],
                        probe_symmetry=float(group.attrs.get("probe_symmetry", 0.0)),
                    )
                )
            except (KeyError, OSError) as exc:
                raise InputError(path, f"/scans/{key}", f"incomplete scan entry: {exc}") from None
        return CorpusData(scans=scans, preprocessing=json.loads(f.attrs["preprocessing"]), **arrays)
