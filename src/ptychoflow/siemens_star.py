"""Resolution read off a Siemens star: where its centre is, and how close to it the spokes resolve.

A star with N spoke pairs is periodic in angle: on a ring of radius r its phase repeats N
times, a period of 2 pi r / N pixels. Near the centre the period shrinks below what the
reconstruction resolves and the N-th angular harmonic sinks into the noise. The smallest
radius where it still stands clear of that noise gives a half-period resolution of
pi r / N pixels, read directly off the sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

RING_SAMPLES = 1024
RESOLVED_SNR = 3.0  # the spoke harmonic's amplitude over the RMS of its neighbouring harmonics


class StarImage:
    """A phase image prepared for ring sampling (complex, so interpolation is wrap-safe)."""

    def __init__(self, phase: np.ndarray) -> None:
        wave = np.exp(1j * np.asarray(phase, np.float64))
        self.real, self.imag = wave.real.copy(), wave.imag.copy()

    def ring_spectrum(self, centre: tuple[float, float], radius: float) -> np.ndarray:
        """Amplitudes of the angular harmonics of the phase on one ring."""
        angles = np.linspace(0, 2 * np.pi, RING_SAMPLES, endpoint=False)
        coords = [centre[0] + radius * np.sin(angles), centre[1] + radius * np.cos(angles)]
        ring = ndimage.map_coordinates(self.real, coords, order=1) + 1j * ndimage.map_coordinates(self.imag, coords, order=1)
        spectrum = np.abs(np.fft.rfft(np.angle(ring * np.conj(ring.mean())))) / RING_SAMPLES
        spectrum[0] = 0.0
        return spectrum


def _image(phase: np.ndarray | StarImage) -> StarImage:
    return phase if isinstance(phase, StarImage) else StarImage(phase)


def spoke_snr(phase: np.ndarray | StarImage, centre: tuple[float, float], radius: float, spokes: int) -> float:
    """Amplitude of the spoke harmonic over the RMS amplitude of the harmonics around it (its noise)."""
    spectrum = _image(phase).ring_spectrum(centre, radius)
    band = np.r_[spokes // 2 : spokes - 2, spokes + 3 : 3 * spokes // 2 + 1]
    noise = float(np.sqrt(np.mean(spectrum[band] ** 2)))
    return float(spectrum[spokes]) / max(noise, 1e-12)


def dominant_harmonic(phase: np.ndarray | StarImage, centre: tuple[float, float], radii: np.ndarray) -> tuple[int, float]:
    """(the strongest angular harmonic summed over `radii`, its share of the power in harmonics 1-199)."""
    image = _image(phase)
    total = sum(image.ring_spectrum(centre, r) ** 2 for r in radii)
    harmonic = int(np.argmax(total[1:200])) + 1
    return harmonic, float(total[harmonic] / total[1:200].sum())


def strongest_periodicity(phase: np.ndarray | StarImage, guess: tuple[float, float], radii: np.ndarray, *,
                          search_px: int = 40, step_px: int = 5) -> tuple[int, float, tuple[float, float]]:
    """(dominant harmonic, its share, the centre) at the centre near `guess` where one harmonic
    stands out most. It knows no spoke count: a star's count must emerge, not be assumed, and the
    mean scan position is often tens of pixels from the star's centre."""
    image = _image(phase)
    offsets = range(-search_px, search_px + 1, step_px)
    found = ((*dominant_harmonic(image, c, radii), c) for c in
             ((float(guess[0] + dy), float(guess[1] + dx)) for dy in offsets for dx in offsets))
    return max(found, key=lambda item: item[1])


def find_centre(phase: np.ndarray | StarImage, guess: tuple[float, float], spokes: int, radii: np.ndarray, *,
                search_px: float = 40.0) -> tuple[float, float]:
    """The centre that maximises the spoke harmonic on `radii`: a coarse grid, then finer ones.

    Small radii need the centre within a fraction of a pixel (a 1 px error shifts the
    angular phase by N/r radians), so the last pass steps by a quarter pixel.
    """
    image = _image(phase)
    best = (float(guess[0]), float(guess[1]))
    for step, span in ((5.0, search_px), (1.0, 5.0), (0.25, 1.0)):
        offsets = np.arange(-span, span + 1e-9, step)
        scores = {}
        for dy in offsets:
            for dx in offsets:
                c = (best[0] + dy, best[1] + dx)
                scores[c] = sum(image.ring_spectrum(c, r)[spokes] ** 2 for r in radii)
        best = max(scores, key=scores.get)
    return best


@dataclass
class SpokeResolution:
    centre: tuple[float, float]
    spokes: int
    radius_px: float  # smallest radius from which outward every ring resolves the spokes
    half_period_px: float  # pi r / N at that radius
    snr: np.ndarray  # per radius in `radii`
    radii: np.ndarray


def spoke_resolution(phase: np.ndarray | StarImage, centre: tuple[float, float], spokes: int, radii: np.ndarray) -> SpokeResolution:
    """Walk inward from the largest radius while the spoke harmonic stays above RESOLVED_SNR."""
    image = _image(phase)
    radii = np.sort(np.asarray(radii, np.float64))
    snr = np.array([spoke_snr(image, centre, r, spokes) for r in radii])
    resolved = snr >= RESOLVED_SNR
    if not resolved[-1]:
        smallest = float("inf")
    else:
        failing = np.nonzero(~resolved)[0]
        smallest = float(radii[failing[-1] + 1] if failing.size else radii[0])
    return SpokeResolution(centre, spokes, smallest, np.pi * smallest / spokes, snr, radii)
