"""Exported products open in ptychodus (its own readers, installed in the test env) with the
object, probe, positions, pixel size and losses intact, and in the right place."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from ptychoflow.errors import InputError
from ptychoflow.export import FORMATS, export_path, export_product
from ptychoflow.product import ReconstructionProduct
from ptychoflow.scan.format import Instrument


@pytest.fixture
def product(small_scan):
    """A product whose object array starts at scan pixel (5, 7): the origin must survive export."""
    obj = small_scan.truth_object[5:, 7:].astype(np.complex64)
    return ReconstructionProduct(
        object=obj, probe=small_scan.truth_probe.astype(np.complex64), positions_px=small_scan.positions_px,
        object_origin_px=np.array([5.0, 7.0]), pixel_size_m=small_scan.scan.pixel_size_m,
        loss_history=np.geomspace(1.0, 0.01, 12), scan_id="tiny", engine="ptychi", iterations_run=12,
        source="scan_0001.h5")


def _check(theirs, product, instrument):
    """ptychodus's Product against ours, field by field, and its geometry against ours."""
    np.testing.assert_array_equal(theirs.object_.get_layer(0), product.object)
    np.testing.assert_array_equal(theirs.probes.get_array()[0, 0], product.probe)
    pixel = theirs.object_.get_pixel_geometry()
    assert pixel.width_m == pixel.height_m == pytest.approx(product.pixel_size_m, rel=1e-12)
    assert theirs.probes.get_pixel_geometry().width_m == pytest.approx(product.pixel_size_m, rel=1e-12)
    positions = theirs.probe_positions
    np.testing.assert_allclose(positions.get_coordinates_y_m(), product.positions_px[:, 0] * product.pixel_size_m)
    np.testing.assert_allclose(positions.get_coordinates_x_m(), product.positions_px[:, 1] * product.pixel_size_m)
    geometry = theirs.object_.get_geometry()  # where ptychodus (and Pty-chi after it) puts each probe
    in_object = product.positions_in_object()
    np.testing.assert_allclose(geometry.map_probe_positions_to_object_y_px(positions), in_object[:, 0], atol=1e-9)
    np.testing.assert_allclose(geometry.map_probe_positions_to_object_x_px(positions), in_object[:, 1], atol=1e-9)
    np.testing.assert_allclose([loss.value for loss in theirs.losses], product.loss_history)
    assert theirs.metadata.detector_distance_m == pytest.approx(instrument.detector_distance_m)
    assert theirs.metadata.photon_energy_eV == pytest.approx(instrument.energy_keV * 1e3)


def test_ptychodus_export_round_trips_through_ptychodus(tmp_path, product, small_scan):
    from ptychodus.plugins.h5_product_file import H5ProductFileIO

    instrument = small_scan.scan.instrument
    path = export_product(product, "ptychodus", tmp_path / "tiny.ptychodus.h5", instrument)
    _check(H5ProductFileIO().read(path), product, instrument)
    with h5py.File(path) as f:
        assert f["probe_position_x_m"].attrs["units"] == "m" and f["probe_position_y_m"].attrs["units"] == "m"
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.ptychodus.h5"]  # no temporary left behind


def test_cxi_export_round_trips_through_ptychodus(tmp_path, product, small_scan):
    from ptychodus.plugins.cxi_file import CXIProductFileIO

    instrument = small_scan.scan.instrument
    path = export_product(product, "cxi", tmp_path / "tiny.cxi", instrument)
    _check(CXIProductFileIO().read(path), product, instrument)
    with h5py.File(path) as f:
        assert f["cxi_version"][()] == 160
        for group, nx_class in (("/entry_1", "NXentry"), ("/entry_1/sample_1", "NXsample"),
                                ("/entry_1/instrument_1/source_1", "NXsource"),
                                ("/entry_1/instrument_1/detector_1", "NXdetector"), ("/entry_1/image_2", "NXdata")):
            assert f[group].attrs["NX_class"] == nx_class
        assert f["/entry_1/sample_1/geometry_1/translation"].attrs["units"] == "m"
        np.testing.assert_allclose(f["/entry_1/data_1/translation"][:, 1], product.positions_px[:, 0] * product.pixel_size_m)


def test_export_names_and_refusals(tmp_path, product):
    assert export_path(tmp_path / "scan_0001.recon.h5", "ptychodus").name == "scan_0001.ptychodus.h5"
    assert export_path(tmp_path / "scan_0001.recon.h5", "cxi").name == "scan_0001.cxi"
    assert set(FORMATS) == {"ptychodus", "cxi"}
    with pytest.raises(InputError, match="unknown export format 'tiff'"):
        export_product(product, "tiff", tmp_path / "x", Instrument(8.8, 1.92, 75e-6))
    with pytest.raises(InputError, match="no energy and detector distance"):
        export_product(product, "cxi", tmp_path / "x.cxi", Instrument(float("nan"), float("nan"), 75e-6))
    assert not list(tmp_path.iterdir())


def test_product_stores_metres_with_units_and_its_instrument(tmp_path, product, small_scan):
    from ptychoflow.product import read_product, write_product

    instrument = small_scan.scan.instrument
    product.energy_keV, product.detector_distance_m = instrument.energy_keV, instrument.detector_distance_m
    product.detector_pixel_size_m = instrument.detector_pixel_size_m
    path, preview = write_product(product, tmp_path)
    back = read_product(path)
    assert back.instrument() == instrument
    with h5py.File(path) as f:
        group = f["reconstruction"]
        assert group.attrs["NX_class"] == "NXprocess" and group["instrument"].attrs["NX_class"] == "NXinstrument"
        assert group["positions_m"].attrs["units"] == "m" and group["pixel_size_m"].attrs["units"] == "m"
        assert group["positions_px"].attrs["units"] == "pixel"
        np.testing.assert_allclose(group["positions_m"][()], product.positions_px * product.pixel_size_m)
    assert preview.stat().st_size > 40_000  # the four-panel picture, not the old grey pair
    exported = export_product(back, "ptychodus", tmp_path / "x.ptychodus.h5", back.instrument())
    assert exported.exists()
