"""Training pairs from a reconstruction: (preprocessed pattern, phase/amplitude patch).

The corpus builder only needs a product-like view of a reconstruction: the complex object,
its probe, the probe-centre positions in pixels of the scan's position frame, and
``object_origin_px`` (where the object array's [0, 0] sits in that frame). The rPIE product
plugs in through ``ReconstructionLike.from_product``; the simulator's truth through
``from_simulation`` (a stand-in until real rPIE products exist).

Phase reference: the diffraction pattern is blind to a constant phase on the exit wave, so
a patch's absolute phase is not predictable from its pattern. Every target patch therefore
has its |P|^2-weighted mean phase removed (computed as the angle of the weighted complex
mean, which is wrap-safe). Stitching averages such patches where they overlap and the
comparison with rPIE removes offset and ramp (metrics.phase_ssim), which is consistent
with this choice; ``stitch.Mosaic(align_offsets=True)`` additionally re-levels each patch
against the mosaic so low spatial frequencies survive.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from ptychoflow.errors import InputError
from ptychoflow.preprocess import PreprocessConfig, preprocess
from ptychoflow.stitch import probe_weight


@dataclass
class ReconstructionLike:
    """The part of a reconstruction product that training needs."""

    object: np.ndarray  # (Ho, Wo) complex
    probe: np.ndarray  # (n, n) complex
    positions_px: np.ndarray  # (N, 2) probe centres (y, x) in the scan's pixel frame
    object_origin_px: tuple[float, float] = (0.0, 0.0)  # frame coordinates of object[0, 0]

    @classmethod
    def from_simulation(cls, sim) -> "ReconstructionLike":
        """The simulator's truth as a stand-in for rPIE (object pixels are the scan frame)."""
        return cls(sim.truth_object, sim.truth_probe, np.asarray(sim.positions_px, float), (0.0, 0.0))

    @classmethod
    def from_file(cls, path: str | Path) -> "ReconstructionLike":
        """A reconstruction product (HDF5: object, probe, positions_px, object_origin_px) or a
        simulator ``*.truth.npz``; missing fields raise InputError naming the field."""
        path = Path(path)
        if path.suffix == ".npz":
            try:
                with np.load(path) as f:
                    return cls(f["object"], f["probe"], np.asarray(f["positions_px"], float), (0.0, 0.0))
            except KeyError as exc:
                raise InputError(path, str(exc.args[0]), "missing array") from None
            except (OSError, ValueError) as exc:
                raise InputError(path, "(file)", f"unreadable npz: {exc}") from None
        return cls._from_hdf5(path)

    @classmethod
    def _from_hdf5(cls, path: Path) -> "ReconstructionLike":
        import h5py

        def find(f: "h5py.File", *names: str) -> np.ndarray:
            for name in names:
                if name in f and isinstance(f[name], h5py.Dataset):
                    return f[name][()]
            raise InputError(path, names[0], "missing dataset")

        try:
            f = h5py.File(path, "r", locking=False)
        except OSError as exc:
            raise InputError(path, "(file)", f"not a readable HDF5 file: {exc}") from None
        with f:
            obj = find(f, "object", "/reconstruction/object", "/entry/object")
            probe = find(f, "probe", "/reconstruction/probe", "/entry/probe")
            pos = find(f, "positions_px", "/reconstruction/positions_px", "/entry/positions_px")
            origin = (0.0, 0.0)
            for name in ("object_origin_px", "/reconstruction/object_origin_px"):
                if name in f:
                    origin = tuple(float(v) for v in np.ravel(f[name][()])[:2])
                elif name in f.attrs:
                    origin = tuple(float(v) for v in np.ravel(f.attrs[name])[:2])
        if probe.ndim == 3:  # multiple probe modes: the first carries most power
            probe = probe[0]
        return cls(obj, probe, np.asarray(pos, float), origin)  # type: ignore[arg-type]


def cut_patches(obj: np.ndarray, centres_px: np.ndarray, size: int, origin_px=(0.0, 0.0)) -> np.ndarray:
    """(N, size, size) complex patches whose pixel i sits at centre - size/2 + i (sub-pixel,
    bilinear on the complex values so phase wraps are harmless); outside the object is 0."""
    local = np.asarray(centres_px, float) - np.asarray(origin_px, float) - size / 2
    grid = np.arange(size, dtype=float)
    out = np.empty((len(local), size, size), np.complex64)
    for k, (r, c) in enumerate(local):
        if float(r).is_integer() and float(c).is_integer():
            r0, c0 = int(r), int(c)
            if 0 <= r0 and 0 <= c0 and r0 + size <= obj.shape[0] and c0 + size <= obj.shape[1]:
                out[k] = obj[r0 : r0 + size, c0 : c0 + size]
                continue
        rows, cols = np.meshgrid(r + grid, c + grid, indexing="ij")
        coords = np.stack([rows, cols])
        out[k] = ndimage.map_coordinates(obj.real, coords, order=1, cval=0.0) + 1j * ndimage.map_coordinates(
            obj.imag, coords, order=1, cval=0.0
        )
    return out


def demeaned_phase(patches: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Phase of each complex patch relative to its weight-averaged phase (wrap-safe)."""
    mean = np.einsum("nij,ij->n", patches, weight.astype(np.complex64))
    reference = np.exp(-1j * np.angle(mean)).astype(np.complex64)
    return np.angle(patches * reference[:, None, None]).astype(np.float32)


def probe_symmetry(probe: np.ndarray) -> float:
    """Worst |<P, T P>| / |P|^2 over the mirrors and the transpose about pixel n/2 (1: exact).

    Flip/transpose augmentation of training pairs is physics only for a symmetric probe.
    """
    p = np.asarray(probe, np.complex128)
    norm = float(np.vdot(p, p).real) or 1.0
    mirrors = (np.roll(p[::-1], 1, 0), np.roll(p[:, ::-1], 1, 1), p.T)
    return float(min(abs(np.vdot(p, m)) for m in mirrors) / norm)


@dataclass
class Pairs:
    """Pairs from one scan, ready for the corpus."""

    diffraction: np.ndarray  # (N, 1, h, w) float32, preprocessed
    phase: np.ndarray  # (N, h, w) float32, de-meaned
    amplitude: np.ndarray  # (N, h, w) float32
    positions_px: np.ndarray  # (N, 2)
    weight: np.ndarray  # (h, w) probe intensity |P|^2: the base of the model's stitching weight
    reference_phase: np.ndarray  # the reconstruction's phase over the scanned area
    reference_origin_px: tuple[float, float]
    probe_symmetry: float = 0.0


def make_pairs(
    frames: np.ndarray,
    recon: ReconstructionLike,
    config: PreprocessConfig,
    *,
    dark: np.ndarray | None = None,
) -> Pairs:
    """Pair each frame with the reconstruction patch at its position.

    Cropping the pattern from n to c detector pixels makes real-space pixels n/c times
    larger (same field of view); binning by b keeps the pixel size and keeps the central
    c/b pixels of the window. Positions, patches and the reference are all returned in the
    network's pixel grid (object pixels divided by n/c), so stitching needs no extra scale.
    """
    frames = np.asarray(frames)
    if len(frames) != len(recon.positions_px):
        raise ValueError(f"{len(frames)} frames but {len(recon.positions_px)} positions")
    n = frames.shape[-1]
    if n % config.crop:
        raise ValueError(f"frame size {n} is not a multiple of the crop {config.crop}")
    scale = n // config.crop
    size = config.output_size
    diffraction = preprocess(frames, config, dark=dark)
    obj = recon.object if scale == 1 else _downsample(recon.object, scale)
    origin = np.asarray(recon.object_origin_px, float) / scale
    positions = np.asarray(recon.positions_px, float) / scale
    patches = cut_patches(obj, positions, size, origin)
    weight = probe_weight(recon.probe if scale == 1 and config.bin_factor == 1 else None, size)
    return Pairs(
        diffraction=diffraction[:, None].astype(np.float32),
        phase=demeaned_phase(patches, weight),
        amplitude=np.abs(patches).astype(np.float32),
        positions_px=positions,
        weight=weight,
        reference_phase=np.angle(obj).astype(np.float32),
        reference_origin_px=(float(origin[0]), float(origin[1])),
        probe_symmetry=probe_symmetry(recon.probe),
    )


def _downsample(obj: np.ndarray, factor: int) -> np.ndarray:
    h, w = (obj.shape[0] // factor) * factor, (obj.shape[1] // factor) * factor
    return obj[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))
