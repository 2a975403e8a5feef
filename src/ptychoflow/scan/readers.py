"""Open any scan file ptychoflow reads, the reader chosen by the file name."""

from __future__ import annotations

from pathlib import Path

from ptychoflow.errors import ScanError
from ptychoflow.scan.format import Scan, read_scan

TIKE_SUFFIXES = (".npz", ".npz.bz2")
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".nxs")


def load_scan(path: str | Path, *, max_frames: int | None = None) -> Scan:
    """A ptychoflow HDF5 scan, or a Tike ``.npz``/``.npz.bz2``; `max_frames` keeps only the first N."""
    path = Path(path)
    if path.name.lower().endswith(TIKE_SUFFIXES):
        from ptychoflow.scan.tike_npz import read_tike_npz

        return read_tike_npz(path, max_frames=max_frames)
    if path.suffix.lower() not in HDF5_SUFFIXES:
        raise ScanError(path, "(file)", "unknown scan format: expected .h5/.hdf5 or Tike .npz/.npz.bz2")
    scan = read_scan(path)
    if max_frames is not None:
        scan.data, scan.positions_m = scan.data[:max_frames], scan.positions_m[:max_frames]
    return scan
