"""The Scan contract: round trips, incremental writing, and every malformed-file case."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from ptychoflow.errors import ScanError
from ptychoflow.scan import Instrument, ScanWriter, read_scan, scan_is_complete, write_scan
from ptychoflow.scan.format import iter_frame_batches

INSTRUMENT = Instrument(8.8, 1.92, 75e-6)


def test_round_trip_preserves_every_field(tmp_path, small_scan):
    scan = small_scan.scan
    scan.dark = np.full(scan.frame_shape, 0.5, np.float32)
    scan.probe_guess = small_scan.truth_probe
    path = write_scan(tmp_path / "s.h5", scan)
    back = read_scan(path)
    assert back.scan_id == "tiny"
    np.testing.assert_array_equal(back.data, scan.data)
    np.testing.assert_array_equal(back.positions_m, scan.positions_m)
    np.testing.assert_allclose(back.positions_px(), small_scan.positions_px)
    np.testing.assert_array_equal(back.dark, scan.dark)
    np.testing.assert_allclose(back.probe_guess, small_scan.truth_probe, rtol=1e-6)
    assert back.instrument == scan.instrument
    assert back.attrs["simulated"]


def test_incremental_writing_is_not_complete_until_closed(tmp_path):
    path = tmp_path / "growing.h5"
    writer = ScanWriter(path, scan_id="g", frame_shape=(8, 8), instrument=INSTRUMENT)
    writer.append(np.ones((3, 8, 8), np.uint32), np.zeros((3, 2)))
    assert not scan_is_complete(path)
    with pytest.raises(ScanError, match=r"/entry@complete"):
        read_scan(path)
    partial = read_scan(path, require_complete=False)
    assert partial.n_frames == 3
    writer.append(np.ones((2, 8, 8), np.uint32), np.ones((2, 2)))
    writer.close()
    assert scan_is_complete(path)
    assert read_scan(path).n_frames == 5


def test_exception_while_writing_leaves_scan_incomplete(tmp_path):
    path = tmp_path / "aborted.h5"
    with pytest.raises(RuntimeError):
        with ScanWriter(path, scan_id="a", frame_shape=(8, 8), instrument=INSTRUMENT) as writer:
            writer.append(np.ones((2, 8, 8), np.uint32), np.zeros((2, 2)))
            raise RuntimeError("detector fault")
    assert not scan_is_complete(path)


def test_batches_stream_all_frames(scan_file, small_scan):
    frames = np.concatenate(list(iter_frame_batches(scan_file, batch=7)))
    np.testing.assert_array_equal(frames, small_scan.scan.data)


def _mutate(path, action):
    with h5py.File(path, "a") as f:
        action(f)
    return path


def _replace(name, value):
    def action(f):
        del f[name]
        f[name] = value

    return action


MALFORMED = {
    "missing data": (lambda f: f.__delitem__("/entry/data/data"), "/entry/data/data: missing dataset"),
    "missing positions": (lambda f: f.__delitem__("/entry/data/positions"), "/entry/data/positions: missing dataset"),
    "missing energy": (lambda f: f.__delitem__("/entry/instrument/energy_keV"), "/entry/instrument/energy_keV: missing"),
    "2-D data": (_replace("/entry/data/data", np.ones((8, 8))), r"/entry/data/data: expected shape \(N, H, W\)"),
    "positions (N,3)": (_replace("/entry/data/positions", np.zeros((5, 3))), r"/entry/data/positions: expected shape \(N, 2\)"),
    "count mismatch": (_replace("/entry/data/positions", np.zeros((4, 2))), "4 positions for 5 frames"),
    "NaN counts": (_replace("/entry/data/data", np.where(np.arange(5)[:, None, None] == 3, np.nan, np.ones((5, 8, 8)))), "frame 3 contains NaN"),
    "negative counts": (_replace("/entry/data/data", -np.ones((5, 8, 8), np.int32)), "frame 0 contains negative counts"),
    "NaN positions": (_replace("/entry/data/positions", np.full((5, 2), np.nan)), "/entry/data/positions: contains NaN"),
    "zero energy": (_replace("/entry/instrument/energy_keV", 0.0), "energy_keV: must be a positive finite number"),
    "dark wrong shape": (_replace("/entry/data/dark", np.zeros((4, 4))), r"/entry/data/dark: expected shape \(8, 8\)"),
    "no frames": (_replace("/entry/data/data", np.zeros((0, 8, 8))), "/entry/data/data: no frames"),
    "complex counts": (_replace("/entry/data/data", np.ones((5, 8, 8)) * (1 + 0.5j)), "/entry/data/data: counts must be real numbers .integer or float., got complex"),
    "complex, zero imaginary part": (_replace("/entry/data/data", np.ones((5, 8, 8), np.complex64)), "/entry/data/data: counts must be real numbers .integer or float., got complex"),
    "boolean mask": (_replace("/entry/data/data", np.ones((5, 8, 8), bool)), "/entry/data/data: counts must be real numbers .integer or float., got bool"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_scans_raise_one_line_naming_file_and_field(tmp_path, case):
    path = tmp_path / "bad.h5"
    with ScanWriter(path, scan_id="b", frame_shape=(8, 8), instrument=INSTRUMENT, dark=np.zeros((8, 8))) as w:
        w.append(np.ones((5, 8, 8), np.uint32), np.zeros((5, 2)))
    action, expected = MALFORMED[case]
    _mutate(path, action)
    with pytest.raises(ScanError, match=expected) as info:
        read_scan(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message


def test_truncated_file_is_reported_not_crashed(scan_file):
    data = scan_file.read_bytes()
    scan_file.write_bytes(data[: len(data) // 3])
    with pytest.raises(ScanError, match=r"(file|/entry)"):
        read_scan(scan_file)
    assert not scan_is_complete(scan_file)


def test_not_hdf5_and_missing_file(tmp_path):
    junk = tmp_path / "junk.h5"
    junk.write_text("not hdf5")
    with pytest.raises(ScanError, match="not a readable HDF5 file"):
        read_scan(junk)
    with pytest.raises(ScanError, match="no such file"):
        read_scan(tmp_path / "absent.h5")


def test_other_hdf5_layout_is_rejected(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["x"] = 1
    with pytest.raises(ScanError, match="/entry: missing group"):
        read_scan(path)
