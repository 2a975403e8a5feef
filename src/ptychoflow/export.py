"""Export a reconstruction product to the formats users' tools open.

- ``ptychodus``: ptychodus's HDF5 product layout (``object``, ``probe``,
  ``probe_position_{x,y}_m``, ``loss_values`` and root attributes for the geometry), which
  ptychodus opens as a product and can hand on to Pty-chi or Tike for refinement.
- ``cxi``: a CXI 1.6 file (NeXus classes; the probe as ``/entry_1/image_1``, the object as
  ``/entry_1/image_2``, the scan positions as the sample translation), with the few
  ptychodus extension fields that place the object, so ptychodus opens it too.

Conventions shared by both (they are ptychodus's):
- positions are probe centres in metres, (x, y) columns, with ``units`` attributes;
- the object centre is the position of the array's middle, index ((H-1)/2, (W-1)/2)
  (ptychodus 1.7's centred-pixel convention): a probe centre ``c`` (metres) lies at object
  index ``(c - centre) / pixel + (shape - 1) / 2``, exactly our
  ``positions_px - object_origin_px``;
- the probe is stored as reconstructed: ``sum |probe|^2`` is the photon count per frame
  (ptychoflow's orthonormal-FFT convention is ptychodus's photon-count convention).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np

from ptychoflow import __version__
from ptychoflow.errors import InputError
from ptychoflow.fs import atomic_write
from ptychoflow.product import ReconstructionProduct
from ptychoflow.scan.format import Instrument

ELECTRON_VOLT_J = 1.602176634e-19
CXI_VERSION = 160


def _units(dataset: h5py.Dataset, units: str) -> h5py.Dataset:
    dataset.attrs["units"] = units
    return dataset


def _nx(group: h5py.Group, nx_class: str) -> h5py.Group:
    group.attrs["NX_class"] = nx_class
    return group


def object_centre_m(product: ReconstructionProduct) -> tuple[float, float]:
    """(y, x) in metres of the object array's middle, index ((H-1)/2, (W-1)/2), in the scan's frame."""
    h, w = product.object.shape[-2:]
    return ((product.object_origin_px[0] + (h - 1) / 2) * product.pixel_size_m,
            (product.object_origin_px[1] + (w - 1) / 2) * product.pixel_size_m)


def _write_ptychodus(path: Path, product: ReconstructionProduct, instrument: Instrument) -> None:
    centre_y, centre_x = object_centre_m(product)
    yx = product.positions_m
    pixel = float(product.pixel_size_m)
    with h5py.File(path, "w") as f:
        f.attrs.update({
            "name": product.scan_id, "comments": f"ptychoflow {__version__}: {product.engine} rPIE, "
                                                 f"{product.iterations_run} iterations, from {product.source}",
            "detector_object_distance_m": instrument.detector_distance_m,
            "photon_energy_eV": instrument.energy_keV * 1e3,
            "probe_energy_eV": instrument.energy_keV * 1e3,  # the name ptychodus before 1.7 reads
            "probe_photon_count": float(np.sum(np.abs(product.probe) ** 2)),
            "exposure_time_s": 0.0, "mass_attenuation_m2_per_kg": 0.0, "tomography_angle_deg": 0.0,
        })
        f["probe_position_indexes"] = np.arange(len(yx), dtype=np.int64)
        _units(f.create_dataset("probe_position_x_m", data=yx[:, 1]), "m")
        _units(f.create_dataset("probe_position_y_m", data=yx[:, 0]), "m")
        probe = f.create_dataset("probe", data=np.asarray(product.probe, np.complex64))
        probe.attrs.update({"pixel_width_m": pixel, "pixel_height_m": pixel})
        obj = f.create_dataset("object", data=np.asarray(product.object, np.complex64), compression="gzip",
                               compression_opts=1)
        obj.attrs.update({"pixel_width_m": pixel, "pixel_height_m": pixel, "center_x_m": centre_x,
                          "center_y_m": centre_y})
        f["object_layer_spacing_m"] = np.zeros(0, np.float64)
        f["loss_epochs"] = np.arange(len(product.loss_history), dtype=np.int64)
        f["loss_values"] = np.asarray(product.loss_history, np.float64)


def _image(entry: h5py.Group, name: str, array: np.ndarray, pixel: float, kind: str) -> None:
    image = _nx(entry.create_group(name), "NXdata")
    image.create_dataset("data", data=np.asarray(array, np.complex64), compression="gzip", compression_opts=1)
    image.attrs["signal"] = "data"
    image["data_type"] = kind
    image["data_space"] = "real"
    _units(image.create_dataset("image_size", data=np.array([array.shape[-1] * pixel, array.shape[-2] * pixel, 0.0])), "m")
    image["source_1"] = h5py.SoftLink("/entry_1/instrument_1/source_1")


def _write_cxi(path: Path, product: ReconstructionProduct, instrument: Instrument) -> None:
    yx = product.positions_m
    pixel = float(product.pixel_size_m)
    centre_y, centre_x = object_centre_m(product)
    translation = np.zeros((len(yx), 3))
    translation[:, 0], translation[:, 1] = yx[:, 1], yx[:, 0]
    with h5py.File(path, "w") as f:
        f["cxi_version"] = CXI_VERSION
        entry = _nx(f.create_group("entry_1"), "NXentry")
        entry["title"] = product.scan_id
        entry["start_time"] = product.created or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        sample = _nx(entry.create_group("sample_1"), "NXsample")
        sample["name"] = product.scan_id
        geometry = _nx(sample.create_group("geometry_1"), "NXgeometry")
        _units(geometry.create_dataset("translation", data=translation), "m")
        data = _nx(entry.create_group("data_1"), "NXdata")
        data["translation"] = h5py.SoftLink("/entry_1/sample_1/geometry_1/translation")
        instrument_group = _nx(entry.create_group("instrument_1"), "NXinstrument")
        source = _nx(instrument_group.create_group("source_1"), "NXsource")
        _units(source.create_dataset("energy", data=instrument.energy_keV * 1e3 * ELECTRON_VOLT_J), "J")
        detector = _nx(instrument_group.create_group("detector_1"), "NXdetector")
        _units(detector.create_dataset("distance", data=instrument.detector_distance_m), "m")
        for axis in ("x", "y"):
            _units(detector.create_dataset(f"{axis}_pixel_size", data=instrument.detector_pixel_size_m), "m")
        _image(entry, "image_1", product.probe, pixel, "probe")
        source["illumination"] = h5py.SoftLink("/entry_1/image_1/data")
        _image(entry, "image_2", product.object, pixel, "transmission")
        process = _nx(entry.create_group("process_1"), "NXprocess")
        process["program"] = "ptychoflow"
        process["version"] = __version__
        process["note"] = json.dumps({"engine": product.engine, "iterations": product.iterations_run,
                                      "parameters": product.parameters}, sort_keys=True, default=str)
        extras = entry.create_group("ptychodus")  # the fields ptychodus reads to place the object
        for name, value in (("probe_pixel_width_m", pixel), ("probe_pixel_height_m", pixel),
                            ("object_pixel_width_m", pixel), ("object_pixel_height_m", pixel),
                            ("object_center_x_m", centre_x), ("object_center_y_m", centre_y)):
            _units(extras.create_dataset(name, data=value), "m")
        extras["probe_position_indexes"] = np.arange(len(yx), dtype=np.int64)
        extras["loss_epochs"] = np.arange(len(product.loss_history), dtype=np.int64)
        extras["loss_values"] = np.asarray(product.loss_history, np.float64)


Writer = Callable[[Path, ReconstructionProduct, Instrument], None]
FORMATS: dict[str, tuple[str, Writer]] = {
    "ptychodus": (".ptychodus.h5", _write_ptychodus),
    "cxi": (".cxi", _write_cxi),
}


def export_path(product_path: str | Path, fmt: str) -> Path:
    """Where an export goes by default: beside the product, ``<scan>.recon.h5`` -> ``<scan><suffix>``."""
    product_path = Path(product_path)
    stem = product_path.name.removesuffix(".recon.h5").removesuffix(".h5")
    return product_path.with_name(stem + FORMATS[fmt][0])


def export_product(product: ReconstructionProduct, fmt: str, target: str | Path, instrument: Instrument) -> Path:
    """Write `product` as `fmt` to `target` atomically (a failure leaves nothing under that name)."""
    if fmt not in FORMATS:
        raise InputError(target, "--format", f"unknown export format {fmt!r}; known: {', '.join(FORMATS)}")
    if not all(np.isfinite(v) and v > 0 for v in (instrument.energy_keV, instrument.detector_distance_m)):
        raise InputError(product.path or target, "instrument", "the product records no energy and detector distance "
                                                             "(written by an older ptychoflow?); cannot export")
    _, write = FORMATS[fmt]
    return atomic_write(Path(target), lambda tmp: write(tmp, product, instrument))
