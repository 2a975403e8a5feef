"""Reader for Tike's test-data layout (e.g. the APS Velociprobe Siemens-star scan).

Tike's conventions differ from the Scan contract:
- diffraction is FFT-shifted (zero frequency at the corners): we shift it back to centred;
- ``scan`` is the probe's *minimum corner* in object pixels: we convert to probe centres;
- the file carries no geometry: we attach a nominal instrument (flagged ``nominal_geometry``)
  whose object pixel size makes the metre positions round-trip to the same pixels.
"""

from __future__ import annotations

import bz2
import io
from pathlib import Path

import numpy as np

from ptychoflow.errors import InputError, ScanError
from ptychoflow.names import safe_component
from ptychoflow.scan.format import Instrument, Scan, ScanFields
from ptychoflow.scan.frames import REAL_KINDS

# Nominal Velociprobe-like geometry: 8.8 keV, 1.92 m, 75 um pixels.
NOMINAL_INSTRUMENT = Instrument(energy_keV=8.8, detector_distance_m=1.92, detector_pixel_size_m=75e-6)


def read_tike_npz(path: str | Path, *, max_frames: int | None = None) -> Scan:
    """Load a (possibly bz2-compressed) Tike ``.npz`` with ``data``, ``scan`` and ``probe``."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if path.suffix == ".bz2":
            raw = bz2.decompress(raw)
        arrays = np.load(io.BytesIO(raw))
    except FileNotFoundError:
        raise ScanError(path, "(file)", "no such file") from None
    except (OSError, ValueError, EOFError) as exc:
        raise ScanError(path, "(file)", f"not a readable (bz2) npz archive: {exc}") from None
    for key in ("data", "scan"):
        if key not in arrays:
            raise ScanError(path, key, "missing array")
    data, scan = _array(path, arrays, "data"), _array(path, arrays, "scan").astype(np.float64)
    if not np.isfinite(scan).all():
        raise ScanError(path, "scan", "contains NaN or infinite values")
    data = data.reshape(-1, *data.shape[-2:])  # (1, N, H, W) -> (N, H, W)
    scan = scan.reshape(-1, 2)
    if scan.shape[0] != data.shape[0]:
        raise ScanError(path, "scan", f"{scan.shape[0]} positions for {data.shape[0]} frames")
    if max_frames is not None:
        data, scan = data[:max_frames], scan[:max_frames]
    frames = np.fft.fftshift(data, axes=(-2, -1)).astype(np.float32)
    probe = None
    if "probe" in arrays:
        try:
            probe = np.asarray(arrays["probe"]).reshape(-1, *data.shape[-2:])[0].astype(np.complex64)
        except (ValueError, TypeError) as exc:
            raise ScanError(path, "probe", f"unusable probe: {exc}") from None
    h, w = frames.shape[-2:]
    centres_px = scan + np.array([h / 2, w / 2])
    pixel = NOMINAL_INSTRUMENT.object_pixel_size_m(h)
    return Scan(
        path=path,
        scan_id=_scan_id(path),
        data=frames,
        positions_m=centres_px * pixel,
        instrument=NOMINAL_INSTRUMENT,
        probe_guess=probe,
        attrs={"source_layout": "tike-npz", "nominal_geometry": True},
        fields=ScanFields("data", "scan", "probe"),
    )


def _array(path: Path, arrays: np.lib.npyio.NpzFile, key: str) -> np.ndarray:
    """A real-valued array from the archive (object arrays are never unpickled)."""
    try:
        value = np.asarray(arrays[key])
    except (ValueError, OSError) as exc:
        raise ScanError(path, key, f"unreadable array: {exc}") from None
    if value.dtype.kind not in REAL_KINDS or value.ndim < 2:
        raise ScanError(path, key, f"expected real numbers of 2 or more dimensions, got {value.dtype} of shape {value.shape}")
    return value


def _scan_id(path: Path) -> str:
    """The file name up to its first dot: it will name product files, so it must be safe."""
    try:
        return safe_component(path.name.split(".")[0], source=path, field="(file name)")
    except InputError as exc:
        raise ScanError(exc.path, exc.field, exc.problem) from None
