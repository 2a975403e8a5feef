"""Malformed and hostile scan files: every reader refuses them with one line naming the file and
the field, before any work; `reconstruct` writes nothing, least of all outside --out."""

from __future__ import annotations

import bz2
import io
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import pytest

from hostile_support import Tree, cli_error, one_line_error
from ptychoflow.scan.format import Instrument, Scan, write_scan
from ptychoflow.scan import load_scan

N, SIZE = 12, 32


def good_scan(path: Path) -> Path:
    rng = np.random.default_rng(0)
    positions = np.stack(np.meshgrid(np.arange(3) * 2e-7, np.arange(4) * 2e-7), -1).reshape(-1, 2)
    scan = Scan(None, "scan_0001", rng.poisson(5, (N, SIZE, SIZE)).astype(np.uint32) + 1, positions,
                Instrument(8.8, 2.0, 75e-6))
    return write_scan(path, scan)


def replace(name: str, value: object) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        del f[name]
        f[name] = value
    return edit


def set_attr(name: str, value: object) -> Callable[[h5py.File], None]:
    return lambda f: f["entry"].attrs.__setitem__(name, value)


def spoil_frames(spoil: Callable[[np.ndarray], np.ndarray]) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        data = spoil(f["/entry/data/data"][()])
        del f["/entry/data/data"]
        f["/entry/data/data"] = data
    return edit


def _set(array: np.ndarray, index: tuple, value: object) -> np.ndarray:
    array[index] = value
    return array


H5_CASES = {  # edit of a good scan -> field named in the error
    "no /entry group": (lambda f: f.move("entry", "other"), "unknown scan format"),
    "frames 2-D": (replace("/entry/data/data", np.ones((N, SIZE))), "/entry/data/data"),
    "no frames": (replace("/entry/data/data", np.ones((0, SIZE, SIZE))), "/entry/data/data"),
    "frames missing": (lambda f: f.__delitem__("/entry/data/data"), "/entry/data/data"),
    "positions (N, 3)": (replace("/entry/data/positions", np.zeros((N, 3))), "/entry/data/positions"),
    "positions count mismatch": (replace("/entry/data/positions", np.zeros((N - 2, 2))), "/entry/data/positions"),
    "positions NaN": (replace("/entry/data/positions", np.full((N, 2), np.nan)), "/entry/data/positions"),
    "positions text": (replace("/entry/data/positions", np.array([["a", "b"]] * N, dtype="S1")), "/entry/data/positions"),
    "complex counts": (spoil_frames(lambda d: d.astype(np.complex64)), "/entry/data/data"),
    "complex NaN counts": (spoil_frames(lambda d: np.full(d.shape, np.nan + 1j, np.complex64)), "/entry/data/data"),
    "boolean counts": (spoil_frames(lambda d: d > 3), "/entry/data/data"),
    "text counts": (spoil_frames(lambda d: d.astype("S4")), "/entry/data/data"),
    "NaN counts": (spoil_frames(lambda d: _set(d.astype(np.float32), (3, 1, 1), np.nan)), "/entry/data/data"),
    "infinite counts": (spoil_frames(lambda d: _set(d.astype(np.float64), (0, 0, 0), np.inf)), "/entry/data/data"),
    "negative counts": (spoil_frames(lambda d: _set(d.astype(np.int32), (5, 2, 2), -7)), "/entry/data/data"),
    "energy as text": (replace("/entry/instrument/energy_keV", "eight"), "/entry/instrument/energy_keV"),
    "energy as numeric text": (replace("/entry/instrument/energy_keV", "8.8"), "/entry/instrument/energy_keV"),
    "energy as array": (replace("/entry/instrument/energy_keV", [8.8, 9.0]), "/entry/instrument/energy_keV"),
    "energy negative": (replace("/entry/instrument/energy_keV", -8.8), "/entry/instrument/energy_keV"),
    "distance NaN": (replace("/entry/instrument/detector_distance_m", np.nan), "/entry/instrument/detector_distance_m"),
    "pixel size 0": (replace("/entry/instrument/detector_pixel_size_m", 0.0), "/entry/instrument/detector_pixel_size_m"),
    "instrument missing": (lambda f: f.__delitem__("/entry/instrument/energy_keV"), "/entry/instrument/energy_keV"),
    "dark wrong shape": (lambda f: f.create_dataset("/entry/data/dark", data=np.zeros((4, 4))), "/entry/data/dark"),
    "dark NaN": (lambda f: f.create_dataset("/entry/data/dark", data=np.full((SIZE, SIZE), np.nan)), "/entry/data/dark"),
    "dark text": (lambda f: f.create_dataset("/entry/data/dark", data=np.full((SIZE, SIZE), b"x")), "/entry/data/dark"),
    "probe wrong shape": (lambda f: f.create_dataset("/entry/data/probe_guess", data=np.ones((3, 3), np.complex64)),
                          "/entry/data/probe_guess"),
    "scan_id ../": (set_attr("scan_id", "../../outside/x"), "/entry@scan_id"),
    "scan_id absolute": (set_attr("scan_id", "/etc/passwd"), "/entry@scan_id"),
    "scan_id newline": (set_attr("scan_id", "s1\nforged"), "/entry@scan_id"),
    "scan_id ANSI escape": (set_attr("scan_id", "\x1b[31mred"), "/entry@scan_id"),
    "scan_id empty": (set_attr("scan_id", ""), "/entry@scan_id"),
    "scan_id not UTF-8": (set_attr("scan_id", np.bytes_(b"\xff\xfe")), "/entry@scan_id"),
    "scan_id array": (set_attr("scan_id", np.array([1.5, 2.5])), "/entry@scan_id"),
    "not complete": (set_attr("complete", False), "/entry@complete"),
}


@pytest.mark.parametrize("edit, field", H5_CASES.values(), ids=H5_CASES.keys())
def test_malformed_hdf5_scan_is_one_line(tmp_path, edit, field):
    path = good_scan(tmp_path / "scan_0001.h5")
    with h5py.File(path, "a") as f:
        edit(f)
    one_line_error(lambda: load_scan(path), str(path), field)


def _npz(path: Path, **arrays: object) -> Path:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.write_bytes(bz2.compress(buffer.getvalue()) if path.suffix == ".bz2" else buffer.getvalue())
    return path


FILE_CASES = {  # a file -> field
    "text file named .h5": (lambda p: p.write_text("not a scan"), "scan_0001.h5", "(file)"),
    "empty .h5": (lambda p: p.write_bytes(b""), "scan_0001.h5", "(file)"),
    "truncated HDF5": (lambda p: p.write_bytes(good_scan(p).read_bytes()[:4000]), "scan_0001.h5", "(file)"),
    "unknown suffix": (lambda p: p.write_bytes(b"II*\x00"), "scan_0001.tif", "(file)"),
    "Tike npz with object array": (lambda p: _npz(p, data=np.array([object()] * 2, dtype=object), scan=np.zeros((2, 2))),
                                   "star.npz", "data"),
    "Tike npz without data": (lambda p: _npz(p, scan=np.zeros((4, 2))), "star.npz", "data"),
    "Tike npz NaN positions": (lambda p: _npz(p, data=np.ones((4, 8, 8)), scan=np.full((4, 2), np.nan)), "star.npz", "scan"),
    "Tike npz complex frames": (lambda p: _npz(p, data=np.ones((4, 8, 8), np.complex64), scan=np.zeros((4, 2))),
                                "star.npz", "data"),
    "Tike npz hidden name": (lambda p: _npz(p, data=np.ones((4, 8, 8)), scan=np.zeros((4, 2))), ".star.npz", "(file name)"),
    "Tike bz2 not bz2": (lambda p: p.write_bytes(b"plain bytes"), "star.npz.bz2", "(file)"),
}


@pytest.mark.parametrize("make, name, field", FILE_CASES.values(), ids=FILE_CASES.keys())
def test_unreadable_scan_file_is_one_line(tmp_path, make, name, field):
    path = tmp_path / name
    make(path)
    one_line_error(lambda: load_scan(path), name, field)


CLI_CASES = {  # the reported cases, through the installed console script
    "scan_id ../ picks the output path": (set_attr("scan_id", "../../outside/scan_0001"), "/entry@scan_id"),
    "complex NaN counts": (spoil_frames(lambda d: np.full(d.shape, np.nan + 1j, np.complex64)), "/entry/data/data"),
    "energy_keV as a string": (replace("/entry/instrument/energy_keV", "8.8 keV"), "/entry/instrument/energy_keV"),
}


@pytest.mark.parametrize("edit, field", CLI_CASES.values(), ids=CLI_CASES.keys())
def test_reconstruct_refuses_before_any_work_and_writes_nothing(tmp_path, edit, field):
    (tmp_path / "acquisition").mkdir()
    path = good_scan(tmp_path / "acquisition" / "scan_0001.h5")
    with h5py.File(path, "a") as f:
        edit(f)
    tree = Tree(tmp_path)
    cli_error(["reconstruct", str(path), "--iterations", "2", "--out", str(tmp_path / "out")], str(path), field)
    assert tree.contained(tmp_path / "out") == []
