"""The beam a model is made for: probe, photon energy, object pixel size, photons per frame.

A PtychoNN model maps one beam's diffraction patterns to phase: a different probe, energy
or pixel size changes every pattern. So each scan in the corpus keeps its beam (the rPIE
probe and the scan's geometry), each registry version records the beam it was trained for
(``probe.npy`` in its directory, the rest in ``extra["beam"]``), and a new experiment starts
from the version whose beam is closest (``nn.reuse``), or from a model pretrained on
physics-made pairs seen through a probe guess (``nn.physics``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ptychoflow.errors import InputError

if TYPE_CHECKING:
    from ptychoflow.nn.registry import ModelVersion

PROBE_FILENAME = "probe.npy"  # in a registry version's directory


@dataclass
class Beam:
    probe: np.ndarray  # (n, n) complex at the detector frame size
    energy_keV: float | None = None
    pixel_size_m: float | None = None  # object pixel size, lambda z / (n dx)
    counts_per_frame: float = 0.0  # mean detected photons per frame (dark subtracted); 0: unknown
    source: str = ""  # where the probe came from, in words

    @property
    def frame_size(self) -> int:
        return int(self.probe.shape[-1])

    def with_geometry(self, energy_keV: float, pixel_size_m: float) -> Beam:
        return replace(self, energy_keV=float(energy_keV), pixel_size_m=float(pixel_size_m))

    def to_json(self) -> dict[str, Any]:
        """Everything but the probe array (which goes to ``PROBE_FILENAME``)."""
        return {"energy_keV": self.energy_keV, "pixel_size_m": self.pixel_size_m, "frame_size": self.frame_size,
                "counts_per_frame": self.counts_per_frame, "source": self.source, "probe": PROBE_FILENAME}

    @classmethod
    def from_json(cls, probe: np.ndarray, data: dict[str, Any]) -> Beam:
        def number(key: str) -> float | None:
            value = data.get(key)
            return None if value is None else float(value)

        return cls(np.asarray(probe, np.complex64), number("energy_keV"), number("pixel_size_m"),
                   number("counts_per_frame") or 0.0, str(data.get("source", "")))

    @classmethod
    def from_file(cls, path: str | Path) -> Beam:
        """A probe guess: a ``.npy`` complex array, a scan (its ``/entry/data/probe_guess`` and
        instrument; it may still be acquiring) or a reconstruction product (its probe and pixel
        size). Anything else is an InputError naming the file."""
        path = Path(path)
        if path.suffix == ".npy":
            try:
                probe = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise InputError(path, "(file)", f"not a readable .npy array: {exc}") from None
            return cls(_checked_probe(path, "(array)", probe), source=f"probe guess {path.name}")
        from ptychoflow.product import PRODUCT_SUFFIX

        if path.name.endswith(PRODUCT_SUFFIX):
            from ptychoflow.product import read_product

            product = read_product(path)
            probe = product.probe[0] if product.probe.ndim == 3 else product.probe
            return cls(_checked_probe(path, "/reconstruction/probe", probe), pixel_size_m=product.pixel_size_m,
                       source=f"rPIE probe of {product.scan_id}")
        from ptychoflow.scan.format import read_scan

        scan = read_scan(path, require_complete=False, load=False)
        if scan.probe_guess is None:
            raise InputError(path, "/entry/data/probe_guess", "missing dataset (a scan used as a probe guess must carry one)")
        return cls(_checked_probe(path, "/entry/data/probe_guess", scan.probe_guess), scan.instrument.energy_keV,
                   scan.pixel_size_m, source=f"probe guess of {scan.scan_id}")


def version_beam(version: ModelVersion) -> Beam | None:
    """The beam a registry version was trained for (None for versions trained before beams
    were kept): ``extra["beam"]`` and the ``PROBE_FILENAME`` beside its checkpoint."""
    info = (version.extra or {}).get("beam")
    probe_path = Path(version.checkpoint_path).parent / PROBE_FILENAME
    if not info or not probe_path.exists():
        return None
    return Beam.from_json(np.load(probe_path, allow_pickle=False), info)


def _checked_probe(path: Path, field: str, probe: np.ndarray) -> np.ndarray:
    probe = np.asarray(probe)
    if probe.ndim != 2 or probe.shape[0] != probe.shape[1]:
        raise InputError(path, field, f"expected a square 2-D probe, got shape {probe.shape}")
    if not np.iscomplexobj(probe) and not np.issubdtype(probe.dtype, np.floating):
        raise InputError(path, field, f"expected a complex (or real) array, got {probe.dtype}")
    if not np.isfinite(probe).all() or not np.abs(probe).any():
        raise InputError(path, field, "must be finite and not all zero")
    return probe.astype(np.complex64)


def fwhm_px(probe: np.ndarray) -> float:
    """The beam's FWHM in pixels, defined for any probe as the diameter of the centred disc
    holding half its intensity: the FWHM itself for a Gaussian beam, and a meaningful width
    for a structured (zone-plate, ring-shaped) one, whose half-maximum contour would only
    outline its central spike. The overlap ratio of a scan is 1 - step / fwhm_px."""
    from ptychoflow.simulate.probe import probe_diameter_px

    return probe_diameter_px(np.asarray(probe), fraction=0.5)


def probe_mismatch(a: np.ndarray, b: np.ndarray) -> float:
    """1 - the best normalised correlation of |a| and |b| over shifts (0: same shape of
    illumination anywhere in the window; 1: nothing in common). Probes of different sizes
    are incomparable (1)."""
    if a.shape != b.shape:
        return 1.0
    ma, mb = np.abs(a).astype(np.float64), np.abs(b).astype(np.float64)
    ma, mb = ma / (np.linalg.norm(ma) or 1.0), mb / (np.linalg.norm(mb) or 1.0)
    correlation = np.fft.ifft2(np.fft.fft2(ma) * np.conj(np.fft.fft2(mb))).real  # circular: probes sit inside the window
    return float(np.clip(1.0 - correlation.max(), 0.0, 1.0))


def beam_distance(a: Beam, b: Beam) -> float:
    """How far apart two beams are for a model: probe mismatch plus the relative differences
    of energy and pixel size (each counted only when both beams know it). 0: the same beam;
    math.inf: different frame sizes, which no model can share."""
    if a.frame_size != b.frame_size:
        return math.inf
    distance = probe_mismatch(a.probe, b.probe)
    for x, y in ((a.energy_keV, b.energy_keV), (a.pixel_size_m, b.pixel_size_m)):
        if x and y:
            distance += abs(x - y) / max(x, y)
    return distance
