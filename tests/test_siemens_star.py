"""Resolution read off a Siemens star: the star's centre, its spoke count, and where spokes blur out."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from ptychoflow import siemens_star as star
from ptychoflow.simulate.objects import siemens_star

SPOKES = 36
SIZE = 256
CENTRE = ((SIZE - 1) / 2, (SIZE - 1) / 2)


def _star_phase(blur: float, noise: float = 0.02, seed: int = 0) -> np.ndarray:
    """ptychoflow's simulated star (a different generator than the analysis), blurred, with noise."""
    phase = ndimage.gaussian_filter(siemens_star(SIZE, spokes=SPOKES), blur)
    return phase + np.random.default_rng(seed).normal(0, noise, phase.shape)


def test_spoke_count_and_centre_are_found():
    phase = _star_phase(0.5)
    harmonic, share = star.dominant_harmonic(phase, CENTRE, np.arange(40, 110, 6))
    assert harmonic == SPOKES and share > 0.5
    found = star.find_centre(phase, (CENTRE[0] + 6, CENTRE[1] - 4), SPOKES, np.arange(15, 90, 8), search_px=10)
    assert np.hypot(found[0] - CENTRE[0], found[1] - CENTRE[1]) < 0.5


def test_more_blur_resolves_spokes_only_farther_out():
    radii = np.arange(4, 110)
    sharp = star.spoke_resolution(_star_phase(0.7, noise=0.1), CENTRE, SPOKES, radii)
    soft = star.spoke_resolution(_star_phase(3.0, noise=0.1), CENTRE, SPOKES, radii)
    assert sharp.radius_px < soft.radius_px < 110
    # a Gaussian blur of sigma passes a half-period h with contrast exp(-pi^2 sigma^2 / 2 h^2):
    # above the noise here only for h of about sigma and more
    assert 0.8 < soft.half_period_px / 3.0 < 3.0
    assert soft.half_period_px == pytest.approx(np.pi * soft.radius_px / SPOKES)


def test_noise_alone_is_never_resolved():
    noise = np.random.default_rng(1).normal(0, 0.3, (SIZE, SIZE))
    result = star.spoke_resolution(noise, CENTRE, SPOKES, np.arange(10, 110, 4))
    assert result.radius_px == float("inf")
