"""Reconstruction quality: simulated truth (RMSE/SSIM) and the real Siemens star (spoke periodicity)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from _recon_helpers import lit_mask_on_truth
from ptychoflow.recon.api import reconstruct
from ptychoflow.recon.base import RpieOptions
from ptychoflow.metrics import phase_rmse, phase_ssim
from ptychoflow.product import read_product
from ptychoflow.simulate.beamline import SimulationOptions, simulate_scan

SIEMENS_STAR = Path("/work/shared/data/siemens-star-small.npz.bz2")
FUNCTION_FILE = Path(__file__).resolve().parents[1] / "functions" / "reconstruct.py"


def _in_truth_frame(result, shape: tuple[int, int]) -> np.ndarray:
    """The reconstruction resampled onto the truth's pixel grid via object_origin_px."""
    out = np.ones(shape, np.complex64)
    oy, ox = np.rint(result.object_origin_px).astype(int)
    ys = slice(max(0, oy), min(shape[0], oy + result.object.shape[0]))
    xs = slice(max(0, ox), min(shape[1], ox + result.object.shape[1]))
    out[ys, xs] = result.object[ys.start - oy : ys.stop - oy, xs.start - ox : xs.stop - ox]
    return out


@pytest.mark.slow
def test_simulated_scan_phase_matches_truth():
    options = SimulationOptions()  # 64x64 probe, ~378 positions, 72% overlap, 1e6 photons/frame
    sim = simulate_scan(options, scan_id="quality")
    assert sim.scan.n_frames >= 300 and options.overlap >= 0.70
    result = reconstruct(sim.scan, RpieOptions(iterations=90, batch_size=8, device="cpu"), engine="ptychi")
    recon = _in_truth_frame(result, sim.truth_object.shape)
    mask = lit_mask_on_truth(sim)
    rmse = phase_rmse(np.angle(recon), np.angle(sim.truth_object), mask)
    ssim = phase_ssim(np.angle(recon), np.angle(sim.truth_object), mask)
    print(f"phase RMSE {rmse:.4f} rad, SSIM {ssim:.3f}, loss {result.loss_history[-1]:.4g}, {result.wall_time_s:.1f} s")
    assert rmse <= 0.08
    assert ssim >= 0.85
    assert result.loss_history[-1] < 0.5 * result.loss_history[0]


def azimuthal_spectrum(phase: np.ndarray, centre: tuple[float, float], radii: range) -> np.ndarray:
    """Power of the phase's angular harmonics on rings about `centre`, summed over `radii`."""
    wave = np.exp(1j * phase)
    angles = np.linspace(0, 2 * np.pi, 1024, endpoint=False)
    total = np.zeros(513)
    for r in radii:
        coords = [centre[0] + r * np.sin(angles), centre[1] + r * np.cos(angles)]
        ring = ndimage.map_coordinates(wave.real, coords, order=1) + 1j * ndimage.map_coordinates(wave.imag, coords, order=1)
        total += np.abs(np.fft.rfft(np.angle(ring * np.conj(ring.mean())))) ** 2
    total[0] = 0
    return total


def star_periodicity(phase: np.ndarray, guess: np.ndarray, search: int = 40) -> tuple[int, float]:
    """(dominant harmonic, its share of the angular power) at the best centre near `guess`.

    A Siemens star's phase is periodic in angle with one period per spoke pair, so a correct
    reconstruction concentrates the azimuthal power in a single harmonic (the spoke count).
    """
    best = (0, 0.0)
    for dy in range(-search, search + 1, 5):
        for dx in range(-search, search + 1, 5):
            spectrum = azimuthal_spectrum(phase, (guess[0] + dy, guess[1] + dx), range(40, 140, 6))
            share = float(spectrum.max() / spectrum[1:200].sum())
            if share > best[1]:
                best = (int(np.argmax(spectrum)), share)
    return best


@pytest.mark.slow
@pytest.mark.skipif(not SIEMENS_STAR.exists(), reason=f"real scan not present at {SIEMENS_STAR}")
def test_real_siemens_star_through_the_remote_function(tmp_path):
    spec = importlib.util.spec_from_file_location("remote_reconstruct", FUNCTION_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.reconstruct(str(SIEMENS_STAR), str(tmp_path), engine="auto", iterations=10, device="cpu")
    assert result["engine"] == "ptychi" and result["iterations"] == 10
    product = read_product(result["product_path"])
    harmonic, share = star_periodicity(product.phase, product.positions_in_object().mean(axis=0))
    print(f"dominant azimuthal harmonic {harmonic}, share {share:.2f}, {result['wall_time_s']:.1f} s")
    assert harmonic == 30  # the star's spoke count
    assert share > 0.25  # one harmonic dominates: sharp, correctly placed spokes
    # a control: an unreconstructed (flat) object has no such structure
    flat = np.zeros_like(product.phase)
    flat += np.random.default_rng(0).normal(0, 0.1, flat.shape)
    assert star_periodicity(flat, product.positions_in_object().mean(axis=0), search=0)[1] < 0.05
