"""The remote function end to end on tiny scans, and every bad input failing cleanly."""

from __future__ import annotations

import bz2
import importlib.util
import io
import json
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from _recon_helpers import tiny_scan, write_tiny
from ptychoflow.errors import ScanError
from ptychoflow.product import read_product

FUNCTION_FILE = Path(__file__).resolve().parents[1] / "functions" / "reconstruct.py"


def load_function():
    """Exactly as the local compute pool does: load the file by path, take the same-named function."""
    spec = importlib.util.spec_from_file_location("remote_reconstruct", FUNCTION_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.reconstruct


def test_function_is_self_contained():
    source = FUNCTION_FILE.read_text()
    top_level = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert top_level == [], "Globus Compute serialises the function: imports belong inside its body"


def test_tiny_scan_end_to_end_is_fast(tmp_path):
    scan_path = write_tiny(tmp_path)
    start = time.perf_counter()
    result = load_function()(str(tmp_path), scan_path.name, "out", engine="ptychi", iterations=3, device="cpu")
    elapsed = time.perf_counter() - start
    json.dumps(result)  # small and JSON-able
    assert result["engine"] == "ptychi" and result["iterations"] == 3 and not result["stopped_early"]
    assert "ptychi" in result["engine_reason"] and np.isfinite(result["final_loss"])
    product = read_product(tmp_path / result["product_path"])
    assert (tmp_path / result["preview_path"]).stat().st_size > 0
    sim = tiny_scan()
    assert product.object.dtype == np.complex64 and product.loss_history.shape == (3,)
    np.testing.assert_allclose(product.positions_px, sim.positions_px, atol=1e-6)
    assert product.engine == "ptychi" and product.versions["ptychi"] and product.parameters["iterations"] == 3
    # a patch cut at a scan position has the frame's size and lies in the reconstructed object
    assert product.cut_patch(sim.positions_px[0]).shape == (32, 32)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["tiny.recon.h5", "tiny.recon.png"]
    assert elapsed < 30  # < 10 s on an idle 2-core machine; generous for shared CI


def test_time_limit_stops_between_iterations_and_still_writes(tmp_path):
    scan_path = write_tiny(tmp_path)
    result = load_function()(str(tmp_path), scan_path.name, "out", engine="ptychi", iterations=500,
                             time_limit_s=0.01, device="cpu")
    assert result["stopped_early"] and result["iterations"] == 1
    assert "time limit" in result["stop_reason"]
    product = read_product(tmp_path / result["product_path"])
    assert product.stopped_early and product.iterations_run == 1 and "time limit" in product.stop_reason


def _assert_fails_cleanly(tmp_path: Path, scan_path: Path, field: str, words: str) -> None:
    out = tmp_path / "out"
    with pytest.raises(ScanError) as info:
        load_function()(str(tmp_path), str(scan_path.relative_to(tmp_path)), "out", engine="ptychi", iterations=2,
                        device="cpu")
    message = str(info.value)
    assert str(scan_path) in message and field in message and words in message
    assert "\n" not in message
    assert not out.exists() or list(out.iterdir()) == []  # no partial product


def test_corrupt_file(tmp_path):
    path = write_tiny(tmp_path)
    path.write_bytes(path.read_bytes()[:2000])
    _assert_fails_cleanly(tmp_path, path, "(file)", "corrupt")


def test_too_few_positions(tmp_path):
    sim = tiny_scan()
    path = write_tiny(tmp_path, data=sim.scan.data[:5], positions_m=sim.scan.positions_m[:5])
    _assert_fails_cleanly(tmp_path, path, "/entry/data/positions", "only 5 positions")


def test_all_zero_frames(tmp_path):
    sim = tiny_scan()
    path = write_tiny(tmp_path, data=np.zeros_like(sim.scan.data))
    _assert_fails_cleanly(tmp_path, path, "/entry/data/data", "all frames are zero")


def test_an_all_zero_probe_guess(tmp_path):
    path = write_tiny(tmp_path)
    with h5py.File(path, "a") as f:
        f["/entry/data/probe_guess"] = np.zeros((32, 32), np.complex64)
    _assert_fails_cleanly(tmp_path, path, "/entry/data/probe_guess", "is all zero")


def test_one_zero_frame(tmp_path):
    data = tiny_scan().scan.data.copy()
    data[7] = 0
    _assert_fails_cleanly(tmp_path, write_tiny(tmp_path, data=data), "/entry/data/data", "first at index 7")


def test_nan_in_frames(tmp_path):
    data = tiny_scan().scan.data.astype(np.float32)
    data[3, 1, 1] = np.nan
    _assert_fails_cleanly(tmp_path, write_tiny(tmp_path, data=data), "/entry/data/data", "NaN")


def test_nan_in_positions(tmp_path):
    positions = tiny_scan().scan.positions_m.copy()
    positions[2, 0] = np.nan
    _assert_fails_cleanly(tmp_path, write_tiny(tmp_path, positions_m=positions), "/entry/data/positions", "NaN")


def test_positions_in_the_wrong_unit(tmp_path):
    positions = tiny_scan().scan.positions_m * 1e6  # micrometres written as metres
    _assert_fails_cleanly(tmp_path, write_tiny(tmp_path, positions_m=positions), "/entry/data/positions", "wrong unit")


def test_positions_all_identical(tmp_path):
    positions = np.zeros_like(tiny_scan().scan.positions_m)
    _assert_fails_cleanly(tmp_path, write_tiny(tmp_path, positions_m=positions), "/entry/data/positions", "coincide")


def test_mismatched_position_count(tmp_path):
    path = write_tiny(tmp_path)
    with h5py.File(path, "a") as f:
        f["/entry/data/positions"].resize(20, axis=0)
    _assert_fails_cleanly(tmp_path, path, "/entry/data/positions", "20 positions")


def test_tike_npz_with_nan(tmp_path):
    sim = tiny_scan()
    data = np.fft.ifftshift(sim.scan.data.astype(np.float32), axes=(-2, -1))
    data[4, 0, 0] = np.nan
    buffer = io.BytesIO()
    np.savez(buffer, data=data[None], scan=(sim.positions_px - 16)[None].astype(np.float32))
    path = tmp_path / "bad.npz.bz2"
    path.write_bytes(bz2.compress(buffer.getvalue()))
    _assert_fails_cleanly(tmp_path, path, ": data:", "frame 4 contains NaN")


def test_complex_frames_in_memory_scan_are_refused_before_any_work():
    """A Scan built in memory (not from a file) meets the same check in validation."""
    from ptychoflow.recon.base import validate_scan

    scan = tiny_scan().scan
    scan.data = scan.data.astype(np.complex64)
    with pytest.raises(ScanError, match=r"/entry/data/data: counts must be real numbers \(integer or float\), got complex"):
        validate_scan(scan)


def test_unknown_format(tmp_path):
    path = tmp_path / "scan.tif"
    path.write_bytes(b"nope")
    _assert_fails_cleanly(tmp_path, path, "(file)", "unknown scan format")


def test_position_refinement_runs_and_reports_refined_positions(tmp_path):
    scan_path = write_tiny(tmp_path)
    result = load_function()(str(tmp_path), scan_path.name, "out", engine="ptychi", iterations=4,
                             position_refinement=True, device="cpu")
    product = read_product(tmp_path / result["product_path"])
    assert product.parameters["position_refinement"] is True
    assert product.positions_px.shape == (tiny_scan().scan.n_frames, 2) and np.isfinite(product.positions_px).all()
    # refinement moves positions by sub-pixel amounts on a correct, noise-limited scan
    assert np.abs(product.positions_px - tiny_scan().positions_px).max() < 2.0
