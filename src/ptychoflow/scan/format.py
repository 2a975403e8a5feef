"""HDF5 scan files as the detector side writes them (see DESIGN.md, "Scan").

Layout::

    /entry                       attrs: complete (bool), scan_id (str), format_version
    /entry/data/data             (N, H, W) counts, detector order (zero frequency centred)
    /entry/data/positions        (N, 2) probe-centre positions in metres, (y, x)
    /entry/data/dark             (H, W) optional dark frame
    /entry/data/probe_guess      (H, W) complex, optional initial probe
    /entry/instrument            energy_keV, detector_distance_m, detector_pixel_size_m

Frames are appended as they arrive (chunked, resizable datasets); ``/entry@complete`` is set
only when the writer closes, so a reader never mistakes a growing file for a finished scan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Iterator, NamedTuple

import h5py
import numpy as np

from ptychoflow.errors import InputError, ScanError
from ptychoflow.fs import fsync_file
from ptychoflow.names import safe_component
from ptychoflow.scan.frames import REAL_KINDS, FrameReader, open_h5, require_real, scalar

FORMAT_VERSION = 1
PLANCK_EV_M = 1.239841984e-6  # h*c in eV*m


@dataclass(frozen=True)
class Instrument:
    energy_keV: float
    detector_distance_m: float
    detector_pixel_size_m: float

    @property
    def wavelength_m(self) -> float:
        return PLANCK_EV_M / (self.energy_keV * 1e3)

    def object_pixel_size_m(self, detector_shape: int) -> float:
        """Real-space pixel size of the far-field geometry: lambda z / (N dx)."""
        return self.wavelength_m * self.detector_distance_m / (detector_shape * self.detector_pixel_size_m)


class ScanFields(NamedTuple):
    """Where a scan's arrays sit, as the user's file spells them: error messages downstream
    name these, whichever reader made the Scan."""

    data: str = "/entry/data/data"
    positions: str = "/entry/data/positions"
    probe_guess: str = "/entry/data/probe_guess"


@dataclass
class Scan:
    """A complete scan in memory. ``data`` may be an h5py dataset view for large files."""

    path: Path | None
    scan_id: str
    data: np.ndarray
    positions_m: np.ndarray
    instrument: Instrument
    dark: np.ndarray | None = None
    probe_guess: np.ndarray | None = None
    attrs: dict = field(default_factory=dict)  # the file's own attributes (written again by ScanWriter)
    # How it was read (never written into a scan file): the reader's name and options, and the
    # fields as the file spells them.
    read_as: str = "ptychoflow"
    read_options: dict = field(default_factory=dict)
    fields: ScanFields = ScanFields()

    def __post_init__(self) -> None:
        # Every reader's scan id will name files (products, mosaics): refused here if it
        # could escape, whichever reader made this Scan (each reader names its own field first).
        safe_component(self.scan_id, source=self.path or "<scan>", field="scan_id")

    @property
    def n_frames(self) -> int:
        return int(self.data.shape[0])

    @property
    def frame_shape(self) -> tuple[int, int]:
        return (int(self.data.shape[1]), int(self.data.shape[2]))

    @property
    def pixel_size_m(self) -> float:
        return self.instrument.object_pixel_size_m(self.frame_shape[0])

    def positions_px(self) -> np.ndarray:
        """Probe-centre positions in object pixels, (y, x)."""
        return self.positions_m / self.pixel_size_m


class ScanWriter:
    """Append frames to a scan file as a detector would; mark it complete on close.

    Frames go straight into the final file name, the way detectors write; readers and the
    watcher rely on ``/entry@complete`` (set last, then flushed) to know the scan is whole.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        scan_id: str,
        frame_shape: tuple[int, int],
        instrument: Instrument,
        dtype: np.dtype | str = np.uint32,
        dark: np.ndarray | None = None,
        probe_guess: np.ndarray | None = None,
        expected_frames: int | None = None,
        attrs: dict | None = None,
    ) -> None:
        self.path = Path(path)
        self.n_written = 0
        # No HDF5 file locking: readers (watcher, reader) open the growing file concurrently
        # in SWMR mode, as on a network file system at a beamline.
        self._file = h5py.File(self.path, "w", libver="latest", locking=False)
        entry = self._file.create_group("entry")
        entry.attrs["complete"] = False
        entry.attrs["scan_id"] = scan_id
        entry.attrs["format_version"] = FORMAT_VERSION
        for key, value in (attrs or {}).items():
            entry.attrs[key] = value
        inst = entry.create_group("instrument")
        inst["energy_keV"] = instrument.energy_keV
        inst["detector_distance_m"] = instrument.detector_distance_m
        inst["detector_pixel_size_m"] = instrument.detector_pixel_size_m
        data = entry.create_group("data")
        h, w = frame_shape
        initial = expected_frames or 0
        self._frames = data.create_dataset(
            "data", shape=(initial, h, w), maxshape=(None, h, w), dtype=dtype, chunks=(1, h, w)
        )
        self._positions = data.create_dataset(
            "positions", shape=(initial, 2), maxshape=(None, 2), dtype=np.float64, chunks=(4096, 2)
        )
        if dark is not None:
            data["dark"] = np.asarray(dark, dtype=np.float32)
        if probe_guess is not None:
            data["probe_guess"] = np.asarray(probe_guess, dtype=np.complex64)
        self._file.swmr_mode = True

    def append(self, frames: np.ndarray, positions_m: np.ndarray) -> None:
        """Append a batch of frames (B, H, W) with their positions (B, 2), then flush."""
        frames = np.asarray(frames)
        if frames.ndim == 2:
            frames, positions_m = frames[None], np.asarray(positions_m)[None]
        n = frames.shape[0]
        end = self.n_written + n
        if end > self._frames.shape[0]:
            self._frames.resize(end, axis=0)
            self._positions.resize(end, axis=0)
        self._frames[self.n_written : end] = frames
        self._positions[self.n_written : end] = positions_m
        self.n_written = end
        self._file.flush()

    def close(self, *, complete: bool = True) -> None:
        if not self._file.id.valid:
            return
        if self._frames.shape[0] != self.n_written:  # expected_frames overestimated
            self._frames.resize(self.n_written, axis=0)
            self._positions.resize(self.n_written, axis=0)
        self._file["entry"].attrs["complete"] = bool(complete)
        self._file.flush()
        self._file.close()
        if complete:
            fsync_file(self.path)  # a scan marked complete is on disk before anyone acts on it

    @classmethod
    def for_scan(cls, path: str | Path, scan: Scan, *, expected_frames: int | None = None) -> "ScanWriter":
        """A writer for `scan`'s metadata (id, geometry, dark, probe, attrs); frames come after."""
        return cls(path, scan_id=scan.scan_id, frame_shape=scan.frame_shape, instrument=scan.instrument,
                   dtype=np.asarray(scan.data[:1]).dtype, dark=scan.dark, probe_guess=scan.probe_guess,
                   expected_frames=expected_frames, attrs=scan.attrs)

    def __enter__(self) -> "ScanWriter":
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        # A scan interrupted by an exception stays incomplete: nothing downstream picks it up.
        self.close(complete=exc_type is None)


def write_scan(path: str | Path, scan: Scan) -> Path:
    """Write a whole in-memory scan (tests, replays, format conversion)."""
    with ScanWriter.for_scan(path, scan, expected_frames=scan.n_frames) as writer:
        writer.append(np.asarray(scan.data), scan.positions_m)
    return Path(path)


def scan_is_complete(path: str | Path) -> bool:
    """True once the writer has closed the scan. Never raises: unreadable means not complete."""
    return incomplete_reason(path) is None


def incomplete_reason(path: str | Path) -> str | None:
    """None once the writer has closed the scan (``/entry@complete`` true), else why the file
    is not a finished scan, in one line: empty, unreadable, not HDF5, not a scan, or
    incomplete. Never raises."""
    try:
        size = Path(path).stat().st_size
        if size == 0:
            return "empty file (0 bytes)"
        if not h5py.is_hdf5(path):
            return "not HDF5"
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    try:
        with open_h5(path) as f:
            entry = f.get("entry")
            if not isinstance(entry, h5py.Group):
                return "not a scan: no /entry group"
            complete = entry.attrs.get("complete", False)
            if np.ndim(complete) != 0:
                return "not a scan: /entry@complete is not one flag"
            return None if bool(complete) else "incomplete: /entry@complete is not set"
    except ScanError as exc:
        return f"unreadable HDF5: {exc.problem}"
    except (OSError, RuntimeError, ValueError, TypeError) as exc:
        return f"unreadable HDF5 (truncated?): {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"


def read_scan(path: str | Path, *, require_complete: bool = True, load: bool = True) -> Scan:
    """Open and validate a scan; every problem raises ScanError naming the file and field."""
    path = Path(path)
    with open_h5(path) as f:
        return _read_open_file(path, f, require_complete=require_complete, load=load)


def _dataset(path: Path, f: h5py.File, name: str) -> h5py.Dataset:
    node = f.get(name)
    if not isinstance(node, h5py.Dataset):
        raise ScanError(path, name, "missing dataset")
    return node


def _read_open_file(path: Path, f: h5py.File, *, require_complete: bool, load: bool) -> Scan:
    entry = f.get("/entry")
    if not isinstance(entry, h5py.Group):
        raise ScanError(path, "/entry", "missing group (not a ptychoflow scan)")
    if require_complete and not bool(entry.attrs.get("complete", False)):
        raise ScanError(path, "/entry@complete", "scan is not marked complete (still being written?)")
    data = _dataset(path, f, "/entry/data/data")
    positions = _dataset(path, f, "/entry/data/positions")
    if data.ndim != 3:
        raise ScanError(path, "/entry/data/data", f"expected shape (N, H, W), got {data.shape}")
    require_real(path, "/entry/data/data", data.dtype, "counts")
    require_real(path, "/entry/data/positions", positions.dtype, "positions")
    n = data.shape[0]
    if n == 0:
        raise ScanError(path, "/entry/data/data", "no frames")
    if positions.ndim != 2 or positions.shape[1] != 2:
        raise ScanError(path, "/entry/data/positions", f"expected shape (N, 2), got {positions.shape}")
    if positions.shape[0] != n:
        raise ScanError(
            path, "/entry/data/positions", f"{positions.shape[0]} positions for {n} frames (counts must match)"
        )
    try:
        positions_m = positions[()].astype(np.float64)
    except OSError as exc:
        raise ScanError(path, "/entry/data/positions", f"unreadable (truncated file?): {exc}") from None
    if not np.all(np.isfinite(positions_m)):
        raise ScanError(path, "/entry/data/positions", "contains NaN or infinite values")
    instrument = _read_instrument(path, f)
    frames = _read_frames(path, data) if load else data
    dark = _optional(path, f, "/entry/data/dark", expect_shape=data.shape[1:], kinds=REAL_KINDS)
    probe = _optional(path, f, "/entry/data/probe_guess", expect_shape=data.shape[1:], kinds=REAL_KINDS + "c")
    attrs = {k: _plain_attr(v) for k, v in entry.attrs.items()}
    return Scan(
        path=path,
        scan_id=_scan_id(path, entry.attrs.get("scan_id", path.stem)),
        data=frames,
        positions_m=positions_m,
        instrument=instrument,
        dark=dark,
        probe_guess=probe,
        attrs=attrs,
    )


def _scan_id(path: Path, value: object) -> str:
    """``/entry@scan_id`` (else the file stem) as a safe name: it will name product files."""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise ScanError(path, "/entry@scan_id", "is not UTF-8 text") from None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = str(value)  # detectors that number their scans
    try:
        return safe_component(value, source=path, field="/entry@scan_id")
    except InputError as exc:
        raise ScanError(exc.path, exc.field, exc.problem) from None


def _plain_attr(value: object) -> object:
    """An HDF5 attribute as a Python value: scalars unwrapped, arrays as lists."""
    if isinstance(value, np.ndarray):
        return value.item() if value.ndim == 0 else value.tolist()
    return value.item() if isinstance(value, np.generic) else value


def _read_frames(path: Path, data: h5py.Dataset) -> np.ndarray:
    """Load all frames, checking each block for NaN and negative counts as it arrives."""
    frames = FrameReader(path, data.shape[0], None, data.dtype, data.shape[1:])
    frames.take("/entry/data/data", data)
    return frames.result("/entry/data/data")


def _read_instrument(path: Path, f: h5py.File) -> Instrument:
    keys = ("energy_keV", "detector_distance_m", "detector_pixel_size_m")
    return Instrument(**{key: scalar(path, f, f"/entry/instrument/{key}") for key in keys})


def _optional(path: Path, f: h5py.File, name: str, *, expect_shape: tuple[int, ...], kinds: str) -> np.ndarray | None:
    if name not in f:
        return None
    node = _dataset(path, f, name)
    if node.dtype.kind not in kinds:
        raise ScanError(path, name, f"must be numbers, got {node.dtype}")
    value = node[()]
    if value.shape != tuple(expect_shape):
        raise ScanError(path, name, f"expected shape {tuple(expect_shape)}, got {value.shape}")
    if not np.all(np.isfinite(value)):
        raise ScanError(path, name, "contains NaN or infinite values")
    return value


def iter_frame_batches(path: str | Path, batch: int = 256) -> Iterator[np.ndarray]:
    """Stream frames in batches without loading the whole scan (reader benchmark, edge replay)."""
    with open_h5(path) as f:
        data = _dataset(Path(path), f, "/entry/data/data")
        for start in range(0, data.shape[0], batch):
            yield data[start : start + batch]
