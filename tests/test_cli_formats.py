"""The installed console script on facility files: reconstruct an Eiger scan, show the
product, export it for ptychodus and as CXI, and bad input as one line with exit status 2."""

from __future__ import annotations

import subprocess

import numpy as np
from PIL import Image

from console_script import ptychoflow
from foreign_files import write_eiger


def _ptychoflow(*args: str) -> subprocess.CompletedProcess:
    return ptychoflow(*args, check=False, timeout=300)


def test_eiger_scan_to_ptychodus_from_the_command_line(tmp_path, small_scan):
    from ptychodus.plugins.cxi_file import CXIProductFileIO
    from ptychodus.plugins.h5_product_file import H5ProductFileIO

    frames, positions = np.asarray(small_scan.scan.data, np.uint32), small_scan.scan.positions_m
    master = write_eiger(tmp_path / "acq", "fly042", frames, positions, detector_shape=(40, 44), frames_per_file=40)
    done = _ptychoflow("reconstruct", str(master), "--iterations", "3", "--frame-size", "32", "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    product = tmp_path / "out" / "fly042.recon.h5"
    shown = _ptychoflow("show", str(product), "--out", str(tmp_path / "look.png"))
    assert shown.returncode == 0, shown.stderr
    assert "fly042" in shown.stdout and "nm" in shown.stdout
    width, height = Image.open(tmp_path / "look.png").size
    assert width >= 1200 and height >= 350
    for fmt, name, reader in (("ptychodus", "fly042.ptychodus.h5", H5ProductFileIO), ("cxi", "fly042.cxi", CXIProductFileIO)):
        exported = _ptychoflow("export", str(product), "--format", fmt)
        assert exported.returncode == 0, exported.stderr
        theirs = reader().read(tmp_path / "out" / name)
        assert len(theirs.probe_positions) == len(frames)
        assert theirs.metadata.photon_energy_eV == np.float64(8800.0)


def test_eiger_scan_with_a_missing_data_file_is_one_line(tmp_path, small_scan):
    frames, positions = np.asarray(small_scan.scan.data, np.uint32), small_scan.scan.positions_m
    master = write_eiger(tmp_path, "fly043", frames, positions, frames_per_file=40)
    (tmp_path / "fly043_data_000002.h5").unlink()
    done = _ptychoflow("reconstruct", str(master), "--iterations", "3")
    assert done.returncode == 2
    assert done.stderr.strip() == (f"error: {master}: /entry/data/data_000002: external data file fly043_data_000002.h5 "
                                   "is missing (not yet written or not transferred?)")
    assert not list(tmp_path.glob("*.recon.*"))
