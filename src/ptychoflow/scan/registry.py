"""One registry of scan readers, chosen by format detection or by name (a profile setting).

Every reader returns the same ``Scan`` (frames with zero frequency centred, probe-centre
positions in metres as (y, x), the instrument geometry), so nothing downstream knows which
detector or program wrote the file. A facility adds its own layout with ``register_reader``.

    >>> scan = load_scan("fly042_master.h5")                       # detected: eiger
    >>> scan = load_scan("run7.cxi", ReadOptions(frame_size=128))   # detected: cxi
"""

from __future__ import annotations

from pathlib import Path

import h5py

from ptychoflow.errors import ScanError
from ptychoflow.scan.format import Scan
from ptychoflow.scan.reader import ReadOptions, ScanReader

AUTO = "auto"
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".nxs", ".cxi")

_READERS: dict[str, ScanReader] = {}
_builtin_loaded = False


def register_reader(reader: ScanReader, *, replace: bool = False) -> None:
    _ensure_builtin()
    if reader.name in _READERS and not replace:
        raise ValueError(f"a scan reader named {reader.name!r} is already registered")
    _READERS[reader.name] = reader


def readers() -> dict[str, ScanReader]:
    _ensure_builtin()
    return dict(_READERS)


def format_names() -> list[str]:
    return [AUTO, *readers()]


def get_reader(name: str, path: str | Path = "(profile)") -> ScanReader:
    _ensure_builtin()
    try:
        return _READERS[name]
    except KeyError:
        raise ScanError(path, "scan_format", f"unknown scan format {name!r}; known: {', '.join(format_names())}") from None


def detect_format(path: str | Path) -> ScanReader:
    """The reader whose layout `path` has; a ScanError saying what was looked for otherwise."""
    path = Path(path)
    if not path.exists():
        raise ScanError(path, "(file)", "no such file")
    for reader in readers().values():
        if reader.detect(path):
            return reader
    if path.suffix.lower() in HDF5_SUFFIXES:
        from ptychoflow.scan.frames import open_h5

        open_h5(path).close()  # a broken HDF5 file: say that, not "unknown layout"
    raise ScanError(path, "(file)", f"unknown scan format: not a layout ptychoflow reads ({', '.join(readers())}: "
                    "`ptychoflow reconstruct --help` describes them)")


def choose_reader(path: str | Path, scan_format: str = AUTO) -> ScanReader:
    return detect_format(path) if scan_format == AUTO else get_reader(scan_format, path)


def load_scan(path: str | Path, options: ReadOptions | None = None, *, scan_format: str = AUTO,
             require_complete: bool = True, load: bool = True) -> Scan:
    """Read a scan of any registered layout (detected, or the one named by `scan_format`)."""
    reader = choose_reader(path, scan_format)
    options = options or ReadOptions()
    scan = reader.read(Path(path), options, require_complete=require_complete, load=load)
    scan.read_as = reader.name
    scan.read_options = {"frame_size": options.frame_size, "y_source": options.y_source,
                         "positions_file": str(options.positions_file) if options.positions_file else None}
    return scan


def read_again(record: dict) -> tuple[str, ReadOptions]:
    """(scan_format, options) from a product's ``parameters["scan_read"]``: read the scan the
    way rPIE did, so training cuts the frames rPIE saw."""
    options = dict(record.get("options") or {})
    if options.get("positions_file"):
        options["positions_file"] = Path(options["positions_file"])
    scan_format = str(record.get("format", AUTO))
    return (scan_format if scan_format in readers() else AUTO), ReadOptions(**options)


def scan_complete(path: str | Path, scan_format: str = AUTO, options: ReadOptions | None = None) -> bool:
    """True once the scan (and every file it needs) is whole. Never raises."""
    return incomplete_reason(path, scan_format, options) is None


def incomplete_reason(path: str | Path, scan_format: str = AUTO, options: ReadOptions | None = None) -> str | None:
    """None once the scan (and every file it needs) is whole, else why not, in one line (what
    the watcher shows): empty, unreadable, not HDF5, not a scan ptychoflow reads, or what its
    reader says is missing. Never raises."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            return "empty file (0 bytes)"
        if path.suffix.lower() in HDF5_SUFFIXES and not h5py.is_hdf5(path):
            return "not HDF5"
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    if path.suffix.lower() in HDF5_SUFFIXES:
        from ptychoflow.scan.frames import open_h5

        try:  # HDF5 by its signature, yet it will not open: truncated or corrupt
            open_h5(path).close()
        except ScanError as exc:
            return f"unreadable: {exc.problem}"
    try:
        reader = choose_reader(path, scan_format)
    except ScanError as exc:
        return f"not a scan: {exc.problem}"
    options = options or ReadOptions()
    if reader.incomplete_reason is not None:
        return reader.incomplete_reason(path, options)
    return None if reader.is_complete(path, options) else f"incomplete: not all of the {reader.name} scan is there yet"


def _ensure_builtin() -> None:
    """Built-in readers first (detection order), then whatever a facility registered."""
    global _builtin_loaded, _READERS
    if not _builtin_loaded:
        from ptychoflow.scan.builtin_readers import BUILTIN

        _READERS = {**{reader.name: reader for reader in BUILTIN}, **_READERS}
        _builtin_loaded = True
