"""The Reconstruction product: round trip, patch geometry, atomic writes."""

from __future__ import annotations

import numpy as np
import pytest

from ptychoflow.errors import InputError
from ptychoflow.product import ReconstructionProduct, illumination_map, read_product, write_product
from ptychoflow.simulate.forward import extract_patches


def _product(scan_id: str = "p1") -> ReconstructionProduct:
    rng = np.random.default_rng(0)
    obj = np.exp(1j * rng.normal(size=(50, 60))).astype(np.complex64)
    return ReconstructionProduct(
        object=obj,
        probe=np.ones((16, 16), np.complex64),
        positions_px=np.array([[20.0, 25.0], [30.0, 35.0], [25.0, 40.0]]),
        object_origin_px=np.array([-3.0, 2.0]),
        pixel_size_m=1e-8,
        loss_history=np.array([1.0, 0.5, 0.25]),
        scan_id=scan_id,
        engine="ptychi",
        engine_reason="test",
        versions={"ptychi": "2.2.0"},
        parameters={"iterations": 3, "alpha": 0.1},
        iterations_run=3,
    )


def test_round_trip(tmp_path):
    product = _product()
    path, preview = write_product(product, tmp_path)
    assert preview.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    loaded = read_product(path)
    np.testing.assert_array_equal(loaded.object, product.object)
    np.testing.assert_array_equal(loaded.object_origin_px, product.object_origin_px)
    assert loaded.parameters == product.parameters and loaded.versions == product.versions
    assert loaded.final_loss == 0.25 and loaded.iterations_run == 3 and not loaded.stopped_early
    assert loaded.created and loaded.engine == "ptychi"


def test_cut_patch_uses_the_simulator_geometry():
    product = _product()
    # the same patch the simulator would cut from an object whose [0, 0] sits at the origin
    centre = product.positions_px[1]
    in_object = (centre - product.object_origin_px)[None]
    np.testing.assert_array_equal(product.cut_patch(centre), extract_patches(product.object, in_object, 16)[0])
    with pytest.raises(ValueError, match="outside"):
        product.cut_patch(np.array([0.0, 0.0]))


def test_illumination_and_lit_mask():
    lit = illumination_map(np.ones((4, 4)), np.array([[5.0, 5.0]]), (10, 10))
    assert lit.sum() == 16 and lit[3:7, 3:7].all()
    assert _product().lit_mask().any()


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    import ptychoflow.product as module

    def broken_preview(path, product):
        path.write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(module, "write_preview", broken_preview)
    with pytest.raises(OSError, match="disk full"):
        write_product(_product(), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_reader_rejects_non_products(tmp_path):
    bogus = tmp_path / "x.recon.h5"
    bogus.write_bytes(b"not hdf5")
    with pytest.raises(InputError, match="not a readable HDF5"):
        read_product(bogus)
    import h5py

    with h5py.File(tmp_path / "empty.h5", "w"):
        pass
    with pytest.raises(InputError, match="/reconstruction"):
        read_product(tmp_path / "empty.h5")


@pytest.mark.parametrize("scan_id", ["../escape", "/abs", "a/b", ".hidden", ""])
def test_scan_id_from_data_never_chooses_a_path(tmp_path, scan_id):
    out = tmp_path / "products"
    with pytest.raises(InputError, match="scan_id"):
        write_product(_product(scan_id), out)
    assert not any(tmp_path.rglob("*.recon.*"))
