"""The virtual beamline's physics."""

from __future__ import annotations

import numpy as np
import pytest

from ptychoflow.simulate import forward, positions, probe
from ptychoflow.simulate.beamline import SimulationOptions, load_truth, save_truth, simulate_scan
from ptychoflow.simulate.objects import complex_object


def test_counts_obey_parseval_within_poisson_noise():
    """Expected total counts per frame = dose x mean |O|^2 under the normalised |P|^2."""
    options = SimulationOptions(frame_size=32, object_size=96, step_px=8, probe_diameter_px=16, dose=2e4, seed=1)
    sim = simulate_scan(options, scan_id="p")
    weights = np.abs(sim.truth_probe) ** 2
    patches = forward.extract_patches(sim.truth_object, sim.positions_px, 32)
    expected = (weights[None] * np.abs(patches) ** 2).sum(axis=(1, 2))
    measured = sim.scan.data.sum(axis=(1, 2)).astype(float)
    np.testing.assert_allclose(weights.sum(), options.dose, rtol=1e-4)
    z = (measured - expected) / np.sqrt(expected)  # Poisson: variance = mean
    assert abs(z.mean()) < 4 / np.sqrt(len(z)) + 0.05
    assert 0.7 < z.std() < 1.3


def test_noise_free_intensity_equals_exit_wave_power():
    obj = complex_object("camera", "coins", 64)
    p = probe.make_probe("gaussian", 32, diameter_px=12)
    centres = np.array([[32.0, 32.0], [20.0, 40.0]])
    intensity = forward.expected_intensity(obj, p, centres)
    exit_power = (np.abs(p[None] * forward.extract_patches(obj, centres, 32)) ** 2).sum(axis=(1, 2))
    np.testing.assert_allclose(intensity.sum(axis=(1, 2)), exit_power, rtol=1e-5)
    assert np.unravel_index(intensity[0].argmax(), (32, 32)) == (16, 16)  # zero order centred


@pytest.mark.parametrize("trajectory", ["spiral", "raster"])
def test_positions_keep_the_probe_inside_the_object(trajectory):
    centres = positions.make_positions(trajectory, 256, 64, 10)
    assert len(centres) > 300
    assert centres.min() >= 32 and centres.max() <= 256 - 32


def test_default_scan_meets_the_reconstruction_bar():
    options = SimulationOptions()
    centres = positions.make_positions(options.trajectory, options.object_size, options.frame_size, options.step_px)
    assert len(centres) >= 300 and options.overlap >= 0.7


@pytest.mark.parametrize("kind", ["zoneplate", "gaussian"])
def test_probe_diameter_matches_request(kind):
    p = probe.make_probe(kind, 64, diameter_px=36)
    assert np.isclose((np.abs(p) ** 2).sum(), 1.0, rtol=1e-5)
    assert 25 < probe.probe_diameter_px(p) < 50


def test_same_seed_same_scan_other_region_other_object():
    options = SimulationOptions(frame_size=32, object_size=96, step_px=8, probe_diameter_px=16, dose=1e4)
    a, b = simulate_scan(options, scan_id="a"), simulate_scan(options, scan_id="a")
    np.testing.assert_array_equal(a.scan.data, b.scan.data)
    c = simulate_scan(options, scan_id="c", region=1)
    assert not np.allclose(c.truth_object, a.truth_object)


def test_dark_current_adds_counts_and_a_dark_frame():
    base = SimulationOptions(frame_size=32, object_size=96, step_px=8, probe_diameter_px=16, dose=1e4)
    dark = SimulationOptions(**{**base.__dict__, "dark_current": 2.0})
    clean, noisy = simulate_scan(base, scan_id="a"), simulate_scan(dark, scan_id="a")
    extra = noisy.scan.data.sum(axis=(1, 2)).mean() - clean.scan.data.sum(axis=(1, 2)).mean()
    assert abs(extra - 2.0 * 32 * 32) < 0.1 * 2.0 * 32 * 32
    assert noisy.scan.dark is not None and clean.scan.dark is None


def test_truth_is_saved_beside_the_scan(tmp_path, small_scan):
    path = tmp_path / "scan_0001.h5"
    save_truth(small_scan, path)
    truth = load_truth(path)
    np.testing.assert_array_equal(truth["object"], small_scan.truth_object)
    assert load_truth(tmp_path / "other.h5") is None
