"""The readers ptychoflow ships, in detection order (the cheapest and most specific first)."""

from __future__ import annotations

from pathlib import Path

import h5py

from ptychoflow.errors import ScanError
from ptychoflow.scan import cxi, eiger
from ptychoflow.scan.format import Scan, incomplete_reason, read_scan, scan_is_complete
from ptychoflow.scan.frames import open_h5
from ptychoflow.scan.reader import ReadOptions, ScanReader

TIKE_SUFFIXES = (".npz", ".npz.bz2")


def _ptychoflow_detect(path: Path) -> bool:
    if path.suffix.lower() not in (".h5", ".hdf5", ".nxs"):
        return False
    try:
        with open_h5(path) as f:
            entry = f.get("/entry")  # ours carries @complete from its first write (an Eiger data file does not)
            return isinstance(entry, h5py.Group) and ("complete" in entry.attrs or "energy_keV" in entry.get("instrument", {}))
    except ScanError:
        return False


def _ptychoflow_read(path: Path, options: ReadOptions, *, require_complete: bool = True, load: bool = True) -> Scan:
    scan = read_scan(path, require_complete=require_complete, load=load)
    if options.max_frames and load:
        scan.data, scan.positions_m = scan.data[: options.max_frames], scan.positions_m[: options.max_frames]
    return scan


def _tike_read(path: Path, options: ReadOptions, *, require_complete: bool = True, load: bool = True) -> Scan:
    from ptychoflow.scan.tike_npz import read_tike_npz

    return read_tike_npz(path, max_frames=options.max_frames)


def _tike_complete(path: Path, options: ReadOptions) -> bool:
    try:
        _tike_read(path, options)
    except ScanError:
        return False
    return True


BUILTIN = (
    ScanReader("ptychoflow", "ptychoflow's own HDF5 layout (/entry/data/data, /entry/data/positions)",
               _ptychoflow_read, _ptychoflow_detect, lambda path, options: scan_is_complete(path),
               incomplete_reason=lambda path, options: incomplete_reason(path)),
    ScanReader("eiger", "Eiger/NeXus master file with external data files and an APS position file",
               eiger.read, eiger.detect, eiger.is_complete, eiger.companions, incomplete_reason=eiger.incomplete_reason),
    ScanReader("cxi", "CXI (/entry_1/data_1/data, /entry_1/sample_1/geometry_1/translation)",
               cxi.read, cxi.detect, cxi.is_complete),
    ScanReader("tike-npz", "Tike .npz/.npz.bz2 (data, scan, probe)",
               _tike_read, lambda path: path.name.endswith(TIKE_SUFFIXES), _tike_complete),
)
