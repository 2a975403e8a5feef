"""NeXus/HDF5 detector output in the Eiger (Dectris) layout, with an APS position file.

The detector writes a small master file and the frames in data files it links to::

    fly042_master.h5
        /entry/data/data_000001 -> ExternalLink("fly042_data_000001.h5", "/entry/data/data")
        /entry/data/data_000002 -> ...
        /entry/instrument/detector               NX_class NXdetector
            detector_distance (m), x_pixel_size, y_pixel_size (m), beam_center_x, beam_center_y (pixels)
            detectorSpecific/ nimages, ntrigger, photon_energy (eV), pixel_mask (optional)
        /entry/instrument/beam/incident_wavelength (Angstrom; used when photon_energy is absent)
        /entry/sample/goniometer/chi (degrees, optional: x positions are projected by cos(chi))
    fly042_data_000001.h5  /entry/data/data (n, H, W), usually bitshuffle/LZ4 (HDF5 filter 32008)
    fly042_positions.txt   the Velociprobe position file (see ``aps_positions``)

Frames are cropped to a square about the beam centre; pixels flagged in ``pixel_mask``
(module gaps, dead and hot pixels) are set to zero.
"""

from __future__ import annotations

import re
from contextlib import ExitStack
from pathlib import Path

import h5py
import numpy as np

from ptychoflow.errors import ScanError
from ptychoflow.scan.aps_positions import read_velociprobe_positions
from ptychoflow.scan.format import PLANCK_EV_M, Instrument, Scan, ScanFields
from ptychoflow.names import safe_component
from ptychoflow.scan.frames import (Crop, FrameReader, dataset_at, detector_mask, external_file, open_h5, require_real, require_written,
                                     resolve_dataset, scalar)
from ptychoflow.scan.reader import ReadOptions

MASTER_SUFFIX = "_master.h5"
DETECTOR = "/entry/instrument/detector"
SPECIFIC = f"{DETECTOR}/detectorSpecific"
DATA_GROUP = "/entry/data"
_DATA_LINK = re.compile(r"data_\d{6}")
POSITION_FILE_PATTERNS = ("{prefix}_positions.txt", "{prefix}_positions.csv", "{prefix}_pos.txt",
                          "{prefix}_pos.csv", "positions/{prefix}.txt", "positions/{prefix}.csv")


def prefix(master: Path) -> str:
    name = master.name
    return name[: -len(MASTER_SUFFIX)] if name.endswith(MASTER_SUFFIX) else master.stem


def detect(path: Path) -> bool:
    if path.suffix.lower() not in (".h5", ".hdf5", ".nxs"):
        return False
    try:
        with open_h5(path) as f:
            return isinstance(f.get(SPECIFIC), h5py.Group) and isinstance(f.get(DATA_GROUP), h5py.Group)
    except ScanError:
        return False


def data_links(path: Path, f: h5py.File) -> list[str]:
    group = f.get(DATA_GROUP)
    names = sorted(name for name in group if _DATA_LINK.fullmatch(name)) if isinstance(group, h5py.Group) else []
    if not names:
        raise ScanError(path, DATA_GROUP, "no data_NNNNNN links (not an Eiger master file?)")
    return [f"{DATA_GROUP}/{name}" for name in names]


def position_file(master: Path, options: ReadOptions) -> Path:
    if options.positions_file is not None:
        given = Path(options.positions_file)
        return given if given.is_absolute() else master.parent / given
    candidates = [master.parent / pattern.format(prefix=prefix(master)) for pattern in POSITION_FILE_PATTERNS]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    raise ScanError(master, "positions", "no position file beside the master file; looked for "
                    + ", ".join(c.name if c.parent == master.parent else f"{c.parent.name}/{c.name}" for c in candidates)
                    + " (or name one: positions_file in the profile, --positions on the command line)")


def _energy_keV(path: Path, f: h5py.File) -> float:
    if dataset_at(f, f"{SPECIFIC}/photon_energy") is not None:
        return scalar(path, f, f"{SPECIFIC}/photon_energy") / 1e3
    wavelength = "/entry/instrument/beam/incident_wavelength"
    if dataset_at(f, wavelength) is not None:
        return PLANCK_EV_M / (scalar(path, f, wavelength) * 1e-10) / 1e3
    raise ScanError(path, f"{SPECIFIC}/photon_energy", "missing (and no /entry/instrument/beam/incident_wavelength)")


def _pixel_size(path: Path, f: h5py.File) -> float:
    x = scalar(path, f, f"{DETECTOR}/x_pixel_size")
    y = scalar(path, f, f"{DETECTOR}/y_pixel_size")
    if abs(x - y) > 1e-6 * max(x, y):
        raise ScanError(path, f"{DETECTOR}/y_pixel_size", f"{y} m differs from x_pixel_size {x} m (square pixels expected)")
    return x


def _expected_frames(path: Path, f: h5py.File) -> int:
    nimages = int(scalar(path, f, f"{SPECIFIC}/nimages"))
    ntrigger = int(scalar(path, f, f"{SPECIFIC}/ntrigger"))
    return nimages * ntrigger


def _chi_cos(f: h5py.File) -> float:
    node = dataset_at(f, "/entry/sample/goniometer/chi")
    if node is None:
        return 1.0
    return float(np.cos(np.deg2rad(float(np.asarray(h5py.Dataset(node)[()]).reshape(-1)[0]))))


def read(path: Path, options: ReadOptions, *, require_complete: bool = True, load: bool = True) -> Scan:
    path = Path(path)
    with open_h5(path) as f, ExitStack() as stack:
        links = data_links(path, f)
        datasets = [(name, resolve_dataset(path, f, name, stack)) for name in links]
        first = datasets[0][1]
        if first.ndim != 3:
            raise ScanError(path, links[0], f"expected frames (n, H, W), got shape {first.shape}")
        shape = (int(first.shape[1]), int(first.shape[2]))
        for name, dataset in datasets:
            if dataset.ndim != 3 or tuple(dataset.shape[1:]) != shape:
                raise ScanError(path, name, f"frame shape {tuple(dataset.shape[1:])} differs from {links[0]}'s {shape}")
            require_real(path, name, dataset.dtype, "counts")
        available = sum(int(d.shape[0]) for _, d in datasets)
        announced = _expected_frames(path, f)
        if require_complete and available < announced:
            raise ScanError(path, DATA_GROUP, f"{available} frames in the data files, {announced} announced "
                                              "(nimages x ntrigger): acquisition not finished?")
        n = min(available, announced)
        if options.max_frames:
            n = min(n, options.max_frames)
        if n == 0:
            raise ScanError(path, DATA_GROUP, "no frames")
        centre = (scalar(path, f, f"{DETECTOR}/beam_center_y", positive=False),
                  scalar(path, f, f"{DETECTOR}/beam_center_x", positive=False))
        crop = Crop.about(centre, shape, options.frame_size)
        crop.check(path, f"{DETECTOR}/beam_center_x", shape)
        instrument = Instrument(energy_keV=_energy_keV(path, f),
                                detector_distance_m=scalar(path, f, f"{DETECTOR}/detector_distance"),
                                detector_pixel_size_m=_pixel_size(path, f))
        mask = detector_mask(path, f, f"{SPECIFIC}/pixel_mask", shape)
        table = read_velociprobe_positions(position_file(path, options), options.y_source)  # type: ignore[arg-type]
        positions = table.for_frames(n, x_scale=_chi_cos(f))
        frames = FrameReader(path, n, crop, first.dtype, shape, mask)
        if load:
            for name, dataset in datasets:
                frames.take(name, dataset, min(int(dataset.shape[0]), n - frames.filled))
                if frames.filled == n:
                    break
            data = frames.result(DATA_GROUP)
        else:  # metadata only (admission checks): a zero-cost array of the right shape
            remaining = n
            for name, dataset in datasets:  # and every frame stored, so a half-filled data file is waited for
                count = min(int(dataset.shape[0]), remaining)
                require_written(path, name, dataset, count)
                remaining -= count
            data = np.broadcast_to(np.zeros((), first.dtype), (n, crop.size, crop.size))
    return Scan(
        path=path, scan_id=safe_component(prefix(path), source=path, field="(file name)"), data=data, positions_m=positions, instrument=instrument,
        attrs={"source_layout": "eiger", "positions_file": table.path.name, "y_source": options.y_source,
               "crop_centre_yx": list(crop.centre), "frame_size": crop.size, "masked_pixels": frames.masked_pixels},
        fields=ScanFields(DATA_GROUP, f"{table.path.name}: positions"),
    )


def incomplete_reason(path: Path, options: ReadOptions) -> str | None:
    """None once every announced frame is stored in the data files and the position file covers
    them; else why not, in one line (what the watcher shows while it waits)."""
    try:
        read(path, options, require_complete=True, load=False)
    except ScanError as exc:
        return f"incomplete: {exc.field}: {exc.problem}"
    except (OSError, KeyError, RuntimeError, ValueError) as exc:
        return f"incomplete: {exc}"
    return None


def is_complete(path: Path, options: ReadOptions) -> bool:
    return incomplete_reason(path, options) is None


def companions(path: Path, options: ReadOptions) -> list[Path]:
    """The data files and the position file: what a transfer must move with the master."""
    with open_h5(path) as f:
        files = []
        for name in data_links(path, f):
            link = f.get(name, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                files.append(external_file(path, name, link))
    return [*dict.fromkeys(files), position_file(path, options)]
