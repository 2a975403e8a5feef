"""CXI files (Coherent X-ray Imaging data bank format, ``/entry_1/...``), as PtyPy, SHARP and
ptychodus write them.

    /entry_1/data_1/data                       -> (N, H, W) frames (usually a soft link to
                                                  /entry_1/instrument_1/detector_1/data)
    /entry_1/sample_1/geometry_1/translation   (N, 3) metres, (x, y, z); older files:
                                                  /entry_1/data_1/translation
    /entry_1/instrument_1/detector_1/          distance, x_pixel_size, y_pixel_size (m),
                                                  mask (non-zero: bad pixel), corner_position
    /entry_1/instrument_1/source_1/energy      joules
    /entry_1/instrument_1/source_1/illumination  optional probe guess

Translations are read as probe positions with their signs as stored, as ptychodus does.
Frames are cropped to a square about the detector centre (the CXI convention for the
optical axis); a mask zeroes bad pixels.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import h5py
import numpy as np

from ptychoflow.errors import ScanError
from ptychoflow.names import safe_component
from ptychoflow.scan.format import Instrument, Scan, ScanFields
from ptychoflow.scan.frames import Crop, FrameReader, detector_mask, open_h5, require_real, resolve_dataset, scalar
from ptychoflow.scan.reader import ReadOptions

ELECTRON_VOLT_J = 1.602176634e-19
ENTRY = "/entry_1"
DETECTOR = "/entry_1/instrument_1/detector_1"
SOURCE = "/entry_1/instrument_1/source_1"
DATA_PATHS = ("/entry_1/data_1/data", f"{DETECTOR}/data")
TRANSLATION_PATHS = ("/entry_1/sample_1/geometry_1/translation", "/entry_1/data_1/translation")
PROBE_PATHS = (f"{SOURCE}/illumination", f"{SOURCE}/probe", "/entry_1/image_1/probe")


def detect(path: Path) -> bool:
    if path.suffix.lower() not in (".cxi", ".h5", ".hdf5"):
        return False
    try:
        with open_h5(path) as f:
            return isinstance(f.get(ENTRY), h5py.Group) and any(name in f for name in DATA_PATHS)
    except ScanError:
        return False


def _first(path: Path, f: h5py.File, names: tuple[str, ...]) -> str:
    for name in names:
        if name in f or f.get(name, getlink=True) is not None:
            return name
    raise ScanError(path, names[0], "missing dataset" + (f" (also looked at {', '.join(names[1:])})" if len(names) > 1 else ""))


def _positions(path: Path, f: h5py.File, n: int) -> tuple[np.ndarray, str]:
    name = _first(path, f, TRANSLATION_PATHS)
    node = f[name]
    if not isinstance(node, h5py.Dataset):
        raise ScanError(path, name, "expected a dataset")
    translation = np.asarray(node[()], np.float64)
    if translation.ndim != 2 or translation.shape[1] not in (2, 3):
        raise ScanError(path, name, f"expected shape (N, 3) as (x, y, z), got {translation.shape}")
    if translation.shape[0] < n:
        raise ScanError(path, name, f"{translation.shape[0]} positions for {n} frames (counts must match)")
    if not np.isfinite(translation[:n, :2]).all():
        raise ScanError(path, name, "contains NaN or infinite values")
    return np.ascontiguousarray(translation[:n, 1::-1]), name  # (x, y, ...) -> (y, x)


def _pixel_size(path: Path, f: h5py.File) -> float:
    x = scalar(path, f, f"{DETECTOR}/x_pixel_size")
    y = scalar(path, f, f"{DETECTOR}/y_pixel_size") if f"{DETECTOR}/y_pixel_size" in f else x
    if abs(x - y) > 1e-6 * max(x, y):
        raise ScanError(path, f"{DETECTOR}/y_pixel_size", f"{y} m differs from x_pixel_size {x} m (square pixels expected)")
    return x


def _probe(f: h5py.File, crop: Crop, shape: tuple[int, int]) -> tuple[np.ndarray | None, str]:
    """The first usable probe among PROBE_PATHS, and where it was found (for messages)."""
    for name in PROBE_PATHS:
        node = f.get(name)
        if isinstance(node, h5py.Dataset) and node.ndim >= 2:
            probe = np.asarray(node[()]).reshape(-1, *node.shape[-2:])[0]
            if probe.shape == (crop.size, crop.size) and np.isfinite(probe).all():
                return probe.astype(np.complex64), name
            if probe.shape == shape and np.isfinite(probe).all():
                ys, xs = crop.slices()
                return probe[ys, xs].astype(np.complex64), name
    return None, PROBE_PATHS[0]


def read(path: Path, options: ReadOptions, *, require_complete: bool = True, load: bool = True) -> Scan:
    path = Path(path)
    with open_h5(path) as f, ExitStack() as stack:
        data_name = _first(path, f, DATA_PATHS)
        data = resolve_dataset(path, f, data_name, stack)
        if data.ndim != 3:
            raise ScanError(path, data_name, f"expected frames (N, H, W), got shape {data.shape}")
        require_real(path, data_name, data.dtype, "counts")
        n = int(data.shape[0]) if not options.max_frames else min(int(data.shape[0]), options.max_frames)
        if n == 0:
            raise ScanError(path, data_name, "no frames")
        shape = (int(data.shape[1]), int(data.shape[2]))
        crop = Crop.about((shape[0] // 2, shape[1] // 2), shape, options.frame_size)
        crop.check(path, data_name, shape)
        positions, positions_name = _positions(path, f, n)
        energy_j = scalar(path, f, f"{SOURCE}/energy")
        instrument = Instrument(energy_keV=energy_j / ELECTRON_VOLT_J / 1e3,
                                detector_distance_m=scalar(path, f, f"{DETECTOR}/distance"),
                                detector_pixel_size_m=_pixel_size(path, f))
        mask = detector_mask(path, f, f"{DETECTOR}/mask", shape)
        frames = FrameReader(path, n, crop, data.dtype, shape, mask)
        if load:
            frames.take(data_name, data, n)
            array = frames.result(data_name)
        else:
            array = np.broadcast_to(np.zeros((), data.dtype), (n, crop.size, crop.size))
        probe, probe_name = _probe(f, crop, shape)
    return Scan(
        path=path, scan_id=safe_component(path.stem, source=path, field="(file name)"), data=array,
        positions_m=positions, instrument=instrument, probe_guess=probe,
        attrs={"source_layout": "cxi", "frame_size": crop.size, "masked_pixels": frames.masked_pixels},
        fields=ScanFields(data_name, positions_name, probe_name),
    )


def is_complete(path: Path, options: ReadOptions) -> bool:
    """A CXI file is written whole by its program: complete once it reads."""
    try:
        read(path, options, load=False)
    except (ScanError, OSError, KeyError, RuntimeError, ValueError):
        return False
    return True
