"""The real Velociprobe Siemens-star scan in Tike's layout."""

from __future__ import annotations

import numpy as np
import pytest

from ptychoflow.errors import ScanError
from ptychoflow.scan import read_scan, write_scan
from ptychoflow.scan.tike_npz import read_tike_npz


def test_real_scan_is_converted_to_the_scan_contract(real_scan_path, tmp_path):
    scan = read_tike_npz(real_scan_path)
    assert scan.data.shape == (516, 128, 128)
    assert scan.probe_guess.shape == (128, 128)
    # Tike stores FFT-shifted frames; after conversion the bright zero order is central.
    from scipy import ndimage

    centre = ndimage.center_of_mass(scan.data.mean(axis=0))
    assert np.allclose(centre, (64, 64), atol=4), centre
    # Corner positions became probe centres, and metres convert back to the same pixels.
    raw = np.load(__import__("io").BytesIO(__import__("bz2").decompress(real_scan_path.read_bytes())))["scan"][0]
    np.testing.assert_allclose(scan.positions_px(), raw + 64, atol=1e-6)
    back = read_scan(write_scan(tmp_path / "star.h5", scan))
    np.testing.assert_allclose(back.positions_px(), scan.positions_px())
    assert back.attrs["nominal_geometry"]


def test_corrupt_archive_names_the_file(tmp_path):
    bad = tmp_path / "broken.npz.bz2"
    bad.write_bytes(b"BZh9 definitely not bz2")
    with pytest.raises(ScanError, match="broken.npz.bz2: \\(file\\)"):
        read_tike_npz(bad)


def test_archive_missing_positions(tmp_path):
    path = tmp_path / "noscan.npz"
    np.savez(path, data=np.zeros((1, 3, 8, 8)))
    with pytest.raises(ScanError, match="noscan.npz: scan: missing array"):
        read_tike_npz(path)


@pytest.mark.parametrize("dtype, problem", [(np.complex64, "got complex64"), (bool, "got bool")])
def test_complex_or_boolean_frames_are_refused(tmp_path, dtype, problem):
    path = tmp_path / "field.npz"
    np.savez(path, data=np.ones((1, 12, 8, 8), dtype), scan=np.zeros((1, 12, 2), np.float32))
    with pytest.raises(ScanError, match=f"field.npz: data: .*{problem}"):
        read_tike_npz(path)
