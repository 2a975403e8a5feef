"""An independent far-field ptychography simulator, written from the textbook model.

It shares no code and no conventions with ``ptychoflow.simulate`` on purpose: a
reconstruction tuned on ptychoflow's own simulator must also work on data made another way.

The model (Thibault et al. 2008; Maiden & Rodenburg 2009; Goodman, *Fourier Optics*):

    psi_j(r) = P(r - r_j) O(r)          exit wave behind the sample, probe centred on r_j
    I_j(q)   = |F[psi_j](q)|^2          far field, F the unitary DFT
    counts_j ~ Poisson(I_j)             photon noise, sum(|P|^2) = photons per frame

Its own conventions:
- every length is in metres: wavelength from the photon energy, object pixel
  lambda z / (N p), probe optics (numerical aperture, defocus, apertures), scan positions;
- scan positions are stage coordinates (y, x) in metres, zero at the scan centre and
  continuous: the probe is moved by the sub-pixel remainder with the Fourier shift theorem
  (ptychoflow's simulator rounds to whole pixels);
- arrays are centred: real-space index n // 2 is the optical axis and frames are written
  with zero frequency at index n // 2 (the DESIGN's detector order);
- probes are made by physical propagation (angular spectrum) from their optics: a Gaussian
  or Airy focus seen off focus, a zone plate with central stop, a pinhole a short way
  upstream, a band-limited random diffuser; objects are their own generators (cells, fibres).

The file writer uses h5py directly, following the documented scan layout, so ptychoflow's
reader meets a file it did not write.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from scipy import ndimage

HC_KEV_M = 12.3984193e-10  # h c in keV * m (CODATA)


# --------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class Geometry:
    """Photon energy, detector distance and pixel, frame size: everything a pixel size needs."""

    energy_keV: float = 10.0
    distance_m: float = 2.5
    detector_pixel_m: float = 75e-6
    frame: int = 64

    @property
    def wavelength_m(self) -> float:
        return HC_KEV_M / self.energy_keV

    @property
    def pixel_m(self) -> float:
        """Object-plane pixel of the far-field geometry: lambda z / (N p)."""
        return self.wavelength_m * self.distance_m / (self.frame * self.detector_pixel_m)

    def coordinates(self) -> tuple[np.ndarray, np.ndarray]:
        """(y, x) in metres on the frame grid, zero at index n // 2."""
        axis = (np.arange(self.frame) - self.frame // 2) * self.pixel_m
        return np.meshgrid(axis, axis, indexing="ij")

    def frequencies(self) -> tuple[np.ndarray, np.ndarray]:
        """(qy, qx) in cycles per metre, zero at index n // 2 (centred spectrum)."""
        axis = (np.arange(self.frame) - self.frame // 2) / (self.frame * self.pixel_m)
        return np.meshgrid(axis, axis, indexing="ij")


def ft(field: np.ndarray) -> np.ndarray:
    """Centred unitary 2-D DFT over the last two axes."""
    shifted = np.fft.ifftshift(field, axes=(-2, -1))
    return np.fft.fftshift(np.fft.fft2(shifted, norm="ortho"), axes=(-2, -1))


def ift(spectrum: np.ndarray) -> np.ndarray:
    shifted = np.fft.ifftshift(spectrum, axes=(-2, -1))
    return np.fft.fftshift(np.fft.ifft2(shifted, norm="ortho"), axes=(-2, -1))


def propagate(field: np.ndarray, geometry: Geometry, distance_m: float) -> np.ndarray:
    """Angular-spectrum free-space propagation (exact scalar transfer function, no constant phase)."""
    qy, qx = geometry.frequencies()
    q2 = qy**2 + qx**2
    lam = geometry.wavelength_m
    # exp(i 2 pi d (sqrt(1/lam^2 - q^2) - 1/lam)), written without cancellation
    phase = -2 * np.pi * distance_m * lam * q2 / (1 + np.sqrt(np.maximum(1 - (lam**2) * q2, 0.0)))
    return ift(ft(field) * np.exp(1j * phase))


def _disk(radius: np.ndarray, edge: float) -> np.ndarray:
    """Anti-aliased disk: 1 inside `edge`, a one-pixel linear ramp across it."""
    return np.clip(edge - radius + 0.5, 0.0, 1.0)


def _unit_power(field: np.ndarray) -> np.ndarray:
    return field / np.sqrt(np.sum(np.abs(field) ** 2))


# --------------------------------------------------------------------------- probes


def lens_focus(geometry: Geometry, *, pupil_fraction: float, diameter_px: float, central_stop: float = 0.0,
               defocus_sign: float = 1.0) -> np.ndarray:
    """A lens or zone-plate focus seen `defocus` away from focus (Airy pattern when unstopped).

    The pupil fills `pupil_fraction` of the detector's half width (numerical aperture
    NA = fraction * lambda / (2 dx)); the defocus d = D / (2 NA) spreads the focus to a
    geometric spot of `diameter_px`. `central_stop` is the stop's share of the pupil radius.
    """
    lam, dx = geometry.wavelength_m, geometry.pixel_m
    na = pupil_fraction * lam / (2 * dx)
    qy, qx = geometry.frequencies()
    q = np.hypot(qy, qx) * geometry.frame * dx  # in frequency pixels
    radius_px = na / lam * geometry.frame * dx
    pupil = _disk(q, radius_px) * (1.0 - _disk(q, central_stop * radius_px)) if central_stop else _disk(q, radius_px)
    focus = ift(pupil.astype(np.complex128))
    defocus_m = defocus_sign * diameter_px * dx / (2 * na)
    return _unit_power(propagate(focus, geometry, defocus_m))


def gaussian_focus(geometry: Geometry, *, waist_px: float, diameter_px: float) -> np.ndarray:
    """A Gaussian beam of waist w0 seen off focus where its 1/e^2 diameter is `diameter_px`.

    w(z) = w0 sqrt(1 + (z/zR)^2), zR = pi w0^2 / lambda: the probe carries the curved
    wavefront exp(-i k r^2 / 2R(z)) of a beam well past its focus.
    """
    dx, lam = geometry.pixel_m, geometry.wavelength_m
    w0 = waist_px * dx
    y, x = geometry.coordinates()
    waist = np.exp(-(x**2 + y**2) / w0**2)
    rayleigh = np.pi * w0**2 / lam
    ratio = max(diameter_px / (2 * waist_px), 1.0)
    distance = rayleigh * np.sqrt(ratio**2 - 1)
    return _unit_power(propagate(waist.astype(np.complex128), geometry, distance))


def pinhole(geometry: Geometry, *, diameter_px: float, fresnel_number: float = 6.0) -> np.ndarray:
    """A plane wave through a pinhole, propagated to the sample at Fresnel number a^2 / (lambda d)."""
    dx, lam = geometry.pixel_m, geometry.wavelength_m
    y, x = geometry.coordinates()
    aperture = _disk(np.hypot(y, x) / dx, diameter_px / 2)
    a = diameter_px * dx / 2
    return _unit_power(propagate(aperture.astype(np.complex128), geometry, a**2 / (lam * fresnel_number)))


def diffuser(geometry: Geometry, *, diameter_px: float, correlation_px: float = 2.5, phase_rms: float = 2.0,
             fresnel_number: float = 8.0, seed: int = 0) -> np.ndarray:
    """A band-limited random probe: an aperture behind a diffuser (smooth random phase screen).

    The phase screen is white noise low-passed to `correlation_px`, so its angular spread,
    and with it the diffraction, stays on the detector.
    """
    dx, lam = geometry.pixel_m, geometry.wavelength_m
    rng = np.random.default_rng(seed)
    screen = ndimage.gaussian_filter(rng.standard_normal((geometry.frame,) * 2), correlation_px, mode="wrap")
    screen *= phase_rms / screen.std()
    y, x = geometry.coordinates()
    aperture = _disk(np.hypot(y, x) / dx, diameter_px / 2)
    a = diameter_px * dx / 2
    field = aperture * np.exp(1j * screen)
    return _unit_power(propagate(field, geometry, a**2 / (lam * fresnel_number)))


def flat_gaussian(n: int, diameter_px: float) -> np.ndarray:
    """A flat-phase Gaussian whose intensity holds 90 % of its power within `diameter_px`.

    2-D Gaussian intensity exp(-r^2 / 2 s^2) holds 90 % within r = s sqrt(2 ln 10).
    """
    s = diameter_px / 2 / np.sqrt(2 * np.log(10))
    y, x = np.indices((n, n)) - n // 2
    return np.exp(-(x**2 + y**2) / (4 * s**2)).astype(np.complex64)


def power_diameter_px(probe: np.ndarray, fraction: float = 0.9) -> float:
    """Diameter (px) of the disk about the intensity centroid that holds `fraction` of the power."""
    intensity = np.abs(probe) ** 2
    y, x = np.indices(intensity.shape)
    total = intensity.sum()
    cy, cx = (intensity * y).sum() / total, (intensity * x).sum() / total
    radius = np.hypot(y - cy, x - cx).ravel()
    order = np.argsort(radius)
    held = np.cumsum(intensity.ravel()[order]) / total
    return 2.0 * float(radius[order][np.searchsorted(held, fraction)])


# --------------------------------------------------------------------------- objects


def _thickness_to_transmission(thickness: np.ndarray, phase_max: float, beta_over_delta: float) -> np.ndarray:
    """O = exp(-i k (delta - i beta) t): phase k delta t, amplitude exp(-k beta t)."""
    phase = phase_max * thickness
    return np.exp(-beta_over_delta * phase) * np.exp(1j * phase)


def cells(shape: tuple[int, int], *, cell_px: float = 12.0, phase_max: float = 1.2, beta_over_delta: float = 0.15,
          seed: int = 0) -> np.ndarray:
    """Voronoi cells of random thickness with thin dense walls: sharp edges at every scale."""
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    count = max(4, int(shape[0] * shape[1] / cell_px**2))
    seeds = rng.uniform(0, 1, (count, 2)) * np.array(shape)
    tree = cKDTree(seeds)
    grid = np.stack(np.indices(shape), axis=-1).reshape(-1, 2) + 0.5
    distance, index = tree.query(grid, k=2)
    level = rng.uniform(0.2, 0.8, count)[index[:, 0]]
    wall = np.clip(1.2 - (distance[:, 1] - distance[:, 0]), 0, 1) * 0.35
    thickness = ndimage.gaussian_filter((level + wall).reshape(shape), 0.4)
    return _thickness_to_transmission(thickness / thickness.max(), phase_max, beta_over_delta)


def fibres(shape: tuple[int, int], *, count: int | None = None, phase_max: float = 1.0, beta_over_delta: float = 0.1,
           seed: int = 0) -> np.ndarray:
    """Random straight fibres of 1-5 px width over a faint granular background."""
    rng = np.random.default_rng(seed)
    count = count or max(6, int(shape[0] * shape[1] / 600))
    y, x = np.indices(shape).astype(np.float64)
    thickness = 0.15 * ndimage.gaussian_filter(rng.uniform(0, 1, shape), 1.5)
    thickness /= max(thickness.max(), 1e-12) / 0.15
    for _ in range(count):
        cy, cx = rng.uniform(0, 1, 2) * np.array(shape)
        angle = rng.uniform(0, np.pi)
        width = rng.uniform(0.8, 2.5)
        distance = np.abs((y - cy) * np.cos(angle) - (x - cx) * np.sin(angle))
        thickness += rng.uniform(0.3, 0.7) * np.sqrt(np.clip(1 - (distance / width) ** 2, 0, None))
    return _thickness_to_transmission(np.clip(thickness, 0, None) / thickness.max(), phase_max, beta_over_delta)


OBJECTS = {"cells": cells, "fibres": fibres}


# --------------------------------------------------------------------------- scans (metres)


def raster(field_m: tuple[float, float], step_m: float, *, jitter: float = 0.03, seed: int = 0) -> np.ndarray:
    """A snake raster over the field with stage jitter (`jitter` x step RMS, as encoders record it)."""
    rows = np.arange(-field_m[0] / 2, field_m[0] / 2 + 1e-12, step_m)
    cols = np.arange(-field_m[1] / 2, field_m[1] / 2 + 1e-12, step_m)
    points = []
    for i, yy in enumerate(rows):
        for xx in (cols if i % 2 == 0 else cols[::-1]):
            points.append((yy, xx))
    points = np.asarray(points)
    points -= points.mean(axis=0)
    return points + np.random.default_rng(seed).normal(0, jitter * step_m, points.shape)


def archimedean_spiral(field_m: tuple[float, float], step_m: float) -> np.ndarray:
    """r = b theta with turns `step` apart and points `step` apart along the arc, clipped to the field."""
    b = step_m / (2 * np.pi)
    limit = 0.5 * np.hypot(*field_m)
    theta_max = limit / b
    count = int(b * theta_max**2 / (2 * step_m)) + 1
    theta = np.sqrt(2 * step_m * np.arange(count) / b)
    points = np.stack([b * theta * np.sin(theta), b * theta * np.cos(theta)], axis=1)
    return points[_inside(points, field_m)]


def fermat_spiral(field_m: tuple[float, float], step_m: float) -> np.ndarray:
    """Vogel's sunflower: r = c sqrt(k), theta = k x golden angle, one point per step^2 of area."""
    c = step_m / np.sqrt(np.pi)
    limit = 0.5 * np.hypot(*field_m)
    count = int((limit / c) ** 2) + 1
    k = np.arange(count)
    theta = k * np.pi * (3 - np.sqrt(5))
    points = np.stack([c * np.sqrt(k) * np.sin(theta), c * np.sqrt(k) * np.cos(theta)], axis=1)
    return points[_inside(points, field_m)]


def _inside(points: np.ndarray, field_m: tuple[float, float]) -> np.ndarray:
    return (np.abs(points[:, 0]) <= field_m[0] / 2) & (np.abs(points[:, 1]) <= field_m[1] / 2)


SCANS = {"raster": raster, "spiral": archimedean_spiral, "fermat": fermat_spiral}


# --------------------------------------------------------------------------- forward model


@dataclass
class Experiment:
    """Truth and data of one simulated scan."""

    geometry: Geometry
    probe: np.ndarray  # (n, n) complex, sum |P|^2 = photons per frame
    object: np.ndarray  # (H, W) complex transmission
    object_origin_m: np.ndarray  # (y, x) stage coordinates of object pixel [0, 0]
    true_positions_m: np.ndarray  # (N, 2) where the probe really was
    recorded_positions_m: np.ndarray  # (N, 2) what the encoders wrote (true + error)
    frames: np.ndarray  # (N, n, n) photon counts, zero frequency at n // 2

    def object_index(self, positions_m: np.ndarray) -> np.ndarray:
        """Stage metres -> object array index (fractional)."""
        return (np.asarray(positions_m) - self.object_origin_m) / self.geometry.pixel_m


def object_for(positions_m: np.ndarray, geometry: Geometry, kind: str, *, seed: int = 0,
               margin_px: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """An object covering every probe window plus a margin; returns (object, origin in metres)."""
    dx, n = geometry.pixel_m, geometry.frame
    low = positions_m.min(axis=0) / dx - n / 2 - margin_px
    high = positions_m.max(axis=0) / dx + n / 2 + margin_px
    origin_px = np.floor(low)
    shape = tuple(int(v) for v in np.ceil(high - origin_px))
    return OBJECTS[kind]((shape[0], shape[1]), seed=seed), origin_px * dx


def far_field(experiment_object: np.ndarray, object_origin_m: np.ndarray, probe: np.ndarray, positions_m: np.ndarray,
              geometry: Geometry, batch: int = 64) -> np.ndarray:
    """Noise-free centred intensities |F[P(r - r_j) O(r)]|^2 for every position."""
    n, dx = geometry.frame, geometry.pixel_m
    centre = (np.asarray(positions_m) - object_origin_m) / dx  # probe axis in object index units
    whole = np.floor(centre).astype(int)
    fraction = centre - whole
    probe_spectrum = ft(probe)
    qy, qx = (f * dx for f in geometry.frequencies())  # cycles per pixel
    out = np.empty((len(centre), n, n), np.float64)
    for start in range(0, len(centre), batch):
        stop = min(start + batch, len(centre))
        ramp = np.exp(-2j * np.pi * (qy[None] * fraction[start:stop, 0, None, None]
                                      + qx[None] * fraction[start:stop, 1, None, None]))
        shifted = ift(probe_spectrum[None] * ramp)  # P(r - fraction)
        rows = whole[start:stop, 0, None] - n // 2 + np.arange(n)
        cols = whole[start:stop, 1, None] - n // 2 + np.arange(n)
        patches = experiment_object[rows[:, :, None], cols[:, None, :]]
        out[start:stop] = np.abs(ft(shifted * patches)) ** 2
    return out


def simulate(geometry: Geometry, probe: np.ndarray, scan_m: np.ndarray, *, object_kind: str, photons: float,
             position_error_px: float = 0.0, seed: int = 0) -> Experiment:
    """Poisson counts of a scan; the recorded positions miss the true ones by `position_error_px` RMS
    (the length of the 2-D error; each axis gets 1/sqrt(2) of it)."""
    rng = np.random.default_rng(seed)
    obj, origin_m = object_for(scan_m, geometry, object_kind, seed=seed)
    probe = probe * np.sqrt(photons / np.sum(np.abs(probe) ** 2))
    counts = rng.poisson(far_field(obj, origin_m, probe, scan_m, geometry)).astype(np.uint32)
    recorded = scan_m + rng.normal(0, position_error_px / np.sqrt(2) * geometry.pixel_m, scan_m.shape)
    return Experiment(geometry, probe, obj, origin_m, scan_m, recorded, counts)


def write_scan(path: str | Path, experiment: Experiment, scan_id: str) -> Path:
    """The documented scan layout written with plain h5py (no ptychoflow code)."""
    path = Path(path)
    g = experiment.geometry
    with h5py.File(path, "w") as f:
        entry = f.create_group("entry")
        entry.attrs["scan_id"] = scan_id
        data = entry.create_group("data")
        data.create_dataset("data", data=experiment.frames, chunks=(1, g.frame, g.frame), compression="gzip",
                            compression_opts=1)
        data["positions"] = experiment.recorded_positions_m
        instrument = entry.create_group("instrument")
        instrument["energy_keV"] = g.energy_keV
        instrument["detector_distance_m"] = g.distance_m
        instrument["detector_pixel_size_m"] = g.detector_pixel_m
        entry.attrs["complete"] = True
    return path
