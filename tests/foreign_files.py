"""Scan files as other programs write them, made here with h5py (or ptychodus's own writer)
to the published layouts, never with ptychoflow's writer:

- ``write_eiger``: a Dectris Eiger master file (NeXus classes, ``units`` attributes as fixed
  byte strings, as the SIMPLON API writes them) linking to data files compressed with
  bitshuffle/LZ4 (HDF5 filter 32008, through hdf5plugin), plus a position file in the APS
  Velociprobe text layout;
- ``write_cxi``: a CXI 1.6 file (``cxi_version``, ``/entry_1`` with soft links from
  ``data_1`` to the detector data and the sample translation), as PtyPy and SHARP write it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np

PLANCK_EV_M = 1.239841984e-6
EIGER_GAP = np.uint32(0xFFFFFFFF)  # what an Eiger writes into module gaps and dead pixels


@dataclass
class Geometry:
    energy_eV: float = 8800.0
    distance_m: float = 1.92
    pixel_m: float = 75e-6


def _nx(group: h5py.Group, nx_class: str) -> h5py.Group:
    group.attrs["NX_class"] = np.bytes_(nx_class)
    return group


def _value(group: h5py.Group, name: str, value, units: str | None = None) -> h5py.Dataset:
    dataset = group.create_dataset(name, data=value)
    if units is not None:
        dataset.attrs["units"] = np.bytes_(units)
    return dataset


def write_eiger(directory: Path, prefix: str, frames: np.ndarray, positions_yx_m: np.ndarray, *,
                geometry: Geometry = Geometry(), detector_shape: tuple[int, int] | None = None,
                beam_centre_yx: tuple[int, int] | None = None, frames_per_file: int = 100,
                bad_pixels: list[tuple[int, int]] = (), compression: str = "bitshuffle",
                position_file: bool = True, chi_deg: float = 0.0) -> Path:
    """Embed `frames` (N, n, n) in a detector of `detector_shape` centred on `beam_centre_yx`."""
    directory.mkdir(parents=True, exist_ok=True)
    n_frames, n, _ = frames.shape
    detector_shape = detector_shape or (n, n)
    beam_centre_yx = beam_centre_yx or (detector_shape[0] // 2, detector_shape[1] // 2)
    full = np.zeros((n_frames, *detector_shape), np.uint32)
    y0, x0 = beam_centre_yx[0] - n // 2, beam_centre_yx[1] - n // 2
    full[:, y0 : y0 + n, x0 : x0 + n] = frames
    mask = np.zeros(detector_shape, np.uint32)
    for y, x in bad_pixels:
        mask[y, x] = 1
        full[:, y, x] = EIGER_GAP
    filters = dict(hdf5plugin.Bitshuffle(nelems=0, cname="lz4")) if compression == "bitshuffle" else {}
    master = directory / f"{prefix}_master.h5"
    with h5py.File(master, "w") as f:
        entry = _nx(f.create_group("entry"), "NXentry")
        data = _nx(entry.create_group("data"), "NXdata")
        for k, start in enumerate(range(0, n_frames, frames_per_file), start=1):
            name = f"{prefix}_data_{k:06d}.h5"
            block = full[start : start + frames_per_file]
            with h5py.File(directory / name, "w") as d:
                group = _nx(_nx(d.create_group("entry"), "NXentry").create_group("data"), "NXdata")
                dataset = group.create_dataset("data", data=block, chunks=(1, *detector_shape), **filters)
                dataset.attrs["image_nr_low"] = np.int32(start + 1)
                dataset.attrs["image_nr_high"] = np.int32(start + block.shape[0])
            data[f"data_{k:06d}"] = h5py.ExternalLink(name, "/entry/data/data")
        instrument = _nx(entry.create_group("instrument"), "NXinstrument")
        beam = _nx(instrument.create_group("beam"), "NXbeam")
        _value(beam, "incident_wavelength", PLANCK_EV_M / geometry.energy_eV * 1e10, "angstrom")
        detector = _nx(instrument.create_group("detector"), "NXdetector")
        _value(detector, "description", np.bytes_("Dectris EIGER2 Si 500K"))
        _value(detector, "detector_distance", geometry.distance_m, "m")
        _value(detector, "x_pixel_size", geometry.pixel_m, "m")
        _value(detector, "y_pixel_size", geometry.pixel_m, "m")
        _value(detector, "beam_center_x", float(beam_centre_yx[1]), "pixel")
        _value(detector, "beam_center_y", float(beam_centre_yx[0]), "pixel")
        _value(detector, "bit_depth_readout", np.uint32(32))
        _value(detector, "count_time", 0.001, "s")
        specific = _nx(detector.create_group("detectorSpecific"), "NXcollection")
        _value(specific, "nimages", np.uint32(1))
        _value(specific, "ntrigger", np.uint32(n_frames))
        _value(specific, "photon_energy", geometry.energy_eV, "eV")
        _value(specific, "x_pixels_in_detector", np.uint32(detector_shape[1]))
        _value(specific, "y_pixels_in_detector", np.uint32(detector_shape[0]))
        specific.create_dataset("pixel_mask", data=mask, **filters)
        sample = _nx(entry.create_group("sample"), "NXsample")
        goniometer = _nx(sample.create_group("goniometer"), "NXtransformations")
        _value(goniometer, "chi", np.array([chi_deg]), "degree")
    if position_file:
        write_velociprobe_positions(directory / f"{prefix}_positions.txt", positions_yx_m)
    return master


def write_velociprobe_positions(path: Path, positions_yx_m: np.ndarray) -> Path:
    """One row per trigger: x, interferometer y, ..., encoder y (opposite sign), ..., trigger; nm."""
    lines = ["# time, x_nm, y_li_nm, z_nm, theta, y_enc_nm, status, trigger"]
    for trigger, (y, x) in enumerate(np.rint(np.asarray(positions_yx_m) / 1e-9).astype(np.int64)):
        lines.append(f"{trigger * 10},{x},{y},0,0,{-y},0,{trigger}")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_cxi(path: Path, frames: np.ndarray, positions_yx_m: np.ndarray, *, geometry: Geometry = Geometry(),
              probe: np.ndarray | None = None, mask: np.ndarray | None = None, legacy_translation: bool = False) -> Path:
    """A CXI 1.6 file: detector data and sample translation, with the data_1 soft links."""
    translation = np.zeros((len(positions_yx_m), 3))
    translation[:, 0], translation[:, 1] = positions_yx_m[:, 1], positions_yx_m[:, 0]
    with h5py.File(path, "w") as f:
        f["cxi_version"] = 160
        entry = _nx(f.create_group("entry_1"), "NXentry")
        entry["start_time"] = np.bytes_("2026-01-01T00:00:00")
        instrument = _nx(entry.create_group("instrument_1"), "NXinstrument")
        source = _nx(instrument.create_group("source_1"), "NXsource")
        source["energy"] = geometry.energy_eV * 1.602176634e-19
        if probe is not None:
            source["illumination"] = probe
        detector = _nx(instrument.create_group("detector_1"), "NXdetector")
        detector["distance"] = geometry.distance_m
        detector["x_pixel_size"] = geometry.pixel_m
        detector["y_pixel_size"] = geometry.pixel_m
        detector.create_dataset("data", data=frames, chunks=(1, *frames.shape[1:]), compression="gzip")
        if mask is not None:
            detector["mask"] = mask.astype(np.uint32)
        data = _nx(entry.create_group("data_1"), "NXdata")
        data["data"] = h5py.SoftLink("/entry_1/instrument_1/detector_1/data")
        if legacy_translation:
            data["translation"] = translation
        else:
            geometry_group = _nx(_nx(entry.create_group("sample_1"), "NXsample").create_group("geometry_1"), "NXgeometry")
            geometry_group["translation"] = translation
            data["translation"] = h5py.SoftLink("/entry_1/sample_1/geometry_1/translation")
    return path
