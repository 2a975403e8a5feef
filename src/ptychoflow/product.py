"""The Reconstruction product (HDF5) with its PNG preview: writer and reader.

Layout (``/reconstruction``, NX_class NXprocess; every length has a ``units`` attribute)::

    object            (H, W) complex64   the reconstructed transmission
    probe             (n, n) complex64   ortho-FFT convention: |fft2(probe*patch, "ortho")|^2 = counts
    positions_m       (N, 2) float64     probe centres (y, x) in metres, scan's own frame (refined if asked)
    positions_px      (N, 2) float64     the same in object pixels
    object_origin_px  (2,)   float64     scan-frame pixel coordinates of object[0, 0]
    pixel_size_m      scalar
    loss_history      (iterations_run,)
    instrument/       NXinstrument: energy_keV, detector_distance_m, detector_pixel_size_m
                      (from the scan; absent in products written before format 2)
    attrs: format_version, scan_id, source, engine, engine_reason, versions (JSON),
           parameters (JSON), iterations_run, stopped_early, stop_reason, wall_time_s, created

``ptychoflow.export`` turns a product into ptychodus's and CXI files; ``ptychoflow.preview``
draws its picture.

A patch for the scan position ``c`` (centre, pixels) starts at object index
``rint(c - n/2) - object_origin_px``, exactly as the simulator cuts its truth, so
``cut_patch`` output compares directly with ``<scan>.truth.npz``.

Both files are written under temporary names and renamed into place, the preview first:
the product's appearance means the whole result is there, and a failure leaves nothing.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ptychoflow.errors import InputError
from ptychoflow.fs import atomic_write
from ptychoflow.names import safe_component
from ptychoflow.scan.format import Instrument

FORMAT_VERSION = 2
GROUP = "reconstruction"
PRODUCT_SUFFIX = ".recon.h5"
PREVIEW_SUFFIX = ".recon.png"


@dataclass
class ReconstructionProduct:
    object: np.ndarray
    probe: np.ndarray
    positions_px: np.ndarray
    object_origin_px: np.ndarray
    pixel_size_m: float
    loss_history: np.ndarray
    scan_id: str
    engine: str
    engine_reason: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)
    iterations_run: int = 0
    stopped_early: bool = False
    stop_reason: str = "completed"
    wall_time_s: float = 0.0
    source: str = ""
    created: str = ""
    path: Path | None = None
    energy_keV: float = float("nan")  # the scan's instrument: what exports need to describe the geometry
    detector_distance_m: float = float("nan")
    detector_pixel_size_m: float = float("nan")

    def instrument(self) -> Instrument:
        return Instrument(self.energy_keV, self.detector_distance_m, self.detector_pixel_size_m)

    @property
    def positions_m(self) -> np.ndarray:
        """Probe centres (y, x) in metres."""
        return np.asarray(self.positions_px, np.float64) * self.pixel_size_m

    @property
    def phase(self) -> np.ndarray:
        return np.angle(self.object)

    @property
    def amplitude(self) -> np.ndarray:
        return np.abs(self.object)

    @property
    def final_loss(self) -> float:
        return float(self.loss_history[-1]) if len(self.loss_history) else float("nan")

    def positions_in_object(self) -> np.ndarray:
        """Probe centres in object-array indices."""
        return self.positions_px - self.object_origin_px

    def cut_patch(self, centre_px: np.ndarray, n: int | None = None) -> np.ndarray:
        """The (n, n) object patch at scan-frame centre `centre_px` (corner = rint(c - n/2))."""
        n = n or self.probe.shape[-1]
        corner = np.rint(np.asarray(centre_px, np.float64) - n / 2 - self.object_origin_px).astype(int)
        if (corner < 0).any() or (corner + n > np.array(self.object.shape)).any():
            raise ValueError(f"patch at {tuple(centre_px)} lies outside the reconstructed object")
        return self.object[corner[0] : corner[0] + n, corner[1] : corner[1] + n]

    def illumination(self) -> np.ndarray:
        """Sum of |probe|^2 over all positions, on the object grid (where the data constrain it)."""
        return illumination_map(self.probe, self.positions_in_object(), self.object.shape)

    def lit_mask(self, fraction: float = 0.1) -> np.ndarray:
        """Pixels whose illumination exceeds `fraction` of the maximum: the trustworthy region."""
        lit = self.illumination()
        return lit > fraction * lit.max()


def illumination_map(probe: np.ndarray, positions_in_object: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    n = probe.shape[-1]
    intensity = np.abs(probe) ** 2
    out = np.zeros(shape[-2:], np.float64)
    for corner in np.rint(positions_in_object - n / 2).astype(int):
        y0, x0 = corner
        ys, xs = slice(max(y0, 0), min(y0 + n, out.shape[0])), slice(max(x0, 0), min(x0 + n, out.shape[1]))
        if ys.start < ys.stop and xs.start < xs.stop:
            out[ys, xs] += intensity[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]
    return out


def product_paths(output_dir: str | Path, scan_id: str) -> tuple[Path, Path]:
    output_dir = Path(output_dir)
    name = safe_component(scan_id, source=output_dir, field="scan_id")
    return output_dir / f"{name}{PRODUCT_SUFFIX}", output_dir / f"{name}{PREVIEW_SUFFIX}"


INSTRUMENT_FIELDS = {"energy_keV": "keV", "detector_distance_m": "m", "detector_pixel_size_m": "m"}


def _with_units(group: h5py.Group, name: str, value: Any, units: str) -> None:
    group.create_dataset(name, data=value).attrs["units"] = units


def _write_h5(path: Path, product: ReconstructionProduct) -> None:
    with h5py.File(path, "w") as f:
        g = f.create_group(GROUP)
        g.attrs["NX_class"] = "NXprocess"
        g.create_dataset("object", data=np.asarray(product.object, np.complex64), compression="gzip", compression_opts=1)
        g["probe"] = np.asarray(product.probe, np.complex64)
        _with_units(g, "positions_m", product.positions_m, "m")
        _with_units(g, "positions_px", np.asarray(product.positions_px, np.float64), "pixel")
        _with_units(g, "object_origin_px", np.asarray(product.object_origin_px, np.float64), "pixel")
        _with_units(g, "pixel_size_m", float(product.pixel_size_m), "m")
        g["loss_history"] = np.asarray(product.loss_history, np.float64)
        instrument = g.create_group("instrument")
        instrument.attrs["NX_class"] = "NXinstrument"
        for name, units in INSTRUMENT_FIELDS.items():
            _with_units(instrument, name, float(getattr(product, name)), units)
        attrs = g.attrs
        attrs["format_version"] = FORMAT_VERSION
        for key in ("scan_id", "engine", "engine_reason", "stop_reason", "source", "created"):
            attrs[key] = str(getattr(product, key))
        attrs["iterations_run"] = int(product.iterations_run)
        attrs["stopped_early"] = bool(product.stopped_early)
        attrs["wall_time_s"] = float(product.wall_time_s)
        attrs["versions"] = json.dumps(product.versions, sort_keys=True)
        attrs["parameters"] = json.dumps(product.parameters, sort_keys=True, default=str)


def write_preview(path: Path, product: ReconstructionProduct) -> None:
    """The picture people read (see ``ptychoflow.preview``): phase, amplitude, probe, loss."""
    from ptychoflow.preview import render_preview

    render_preview(product, path)


def write_product(product: ReconstructionProduct, output_dir: str | Path) -> tuple[Path, Path]:
    """Write the product and its preview atomically; returns (product_path, preview_path)."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    target, preview = product_paths(output_dir, product.scan_id)
    product.created = product.created or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    def write_h5_then_preview(tmp_h5: Path) -> None:
        # The preview takes its name while the product is still temporary, so a product in
        # place always has its preview; a failure in either leaves no product.
        _write_h5(tmp_h5, product)
        atomic_write(preview, lambda tmp_png: write_preview(tmp_png, product))

    atomic_write(target, write_h5_then_preview)
    product.path = target
    return target, preview


def read_product(path: str | Path) -> ReconstructionProduct:
    """Load a product; a malformed file raises InputError naming the file and field."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "(file)", "no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(path, "(file)", f"not a readable HDF5 file: {exc}") from None
    with f:
        g = f.get(GROUP)
        if not isinstance(g, h5py.Group):
            raise InputError(path, f"/{GROUP}", "missing group (not a reconstruction product)")

        def dataset(name: str) -> np.ndarray:
            node = g.get(name)
            if not isinstance(node, h5py.Dataset):
                raise InputError(path, f"/{GROUP}/{name}", "missing dataset")
            return node[()]

        a = g.attrs
        instrument = g.get("instrument")
        geometry = {name: float(instrument[name][()]) for name in INSTRUMENT_FIELDS
                    if isinstance(instrument, h5py.Group) and name in instrument}
        return ReconstructionProduct(
            object=dataset("object"),
            probe=dataset("probe"),
            positions_px=dataset("positions_px"),
            object_origin_px=dataset("object_origin_px"),
            pixel_size_m=float(dataset("pixel_size_m")),
            loss_history=dataset("loss_history"),
            scan_id=str(a.get("scan_id", path.stem)),
            engine=str(a.get("engine", "")),
            engine_reason=str(a.get("engine_reason", "")),
            versions=json.loads(a.get("versions", "{}")),
            parameters=json.loads(a.get("parameters", "{}")),
            iterations_run=int(a.get("iterations_run", 0)),
            stopped_early=bool(a.get("stopped_early", False)),
            stop_reason=str(a.get("stop_reason", "")),
            wall_time_s=float(a.get("wall_time_s", 0.0)),
            source=str(a.get("source", "")),
            created=str(a.get("created", "")),
            path=path,
            **geometry,
        )


PROBE_PIXEL_TOLERANCE = 0.01  # a reused probe's object pixel may differ from the scan's by this fraction


def probe_misfit(probe_shape: tuple[int, ...], probe_pixel_m: float, frame: int, pixel_size_m: float) -> tuple[str, str] | None:
    """(field, problem) when a product's probe cannot start a scan of `frame`-pixel frames at
    `pixel_size_m` object pixels; None when it fits."""
    if tuple(probe_shape) != (frame, frame):
        return f"/{GROUP}/probe", f"{probe_shape[0]}x{probe_shape[-1]} probe, but the scan's frames are {frame}x{frame}"
    if not np.isclose(probe_pixel_m, pixel_size_m, rtol=PROBE_PIXEL_TOLERANCE, atol=0.0):
        return (f"/{GROUP}/pixel_size_m", f"{probe_pixel_m:.4g} m, but the scan's object pixel is {pixel_size_m:.4g} m "
                                          "(energy, distance or detector changed)")
    return None


def latest_good_product(products_root: str | Path, *, frame: int, pixel_size_m: float,
                        exclude: str | Path | None = None) -> Path | None:
    """The newest product in ``products_root/*/`` whose probe could start a scan like this one.

    Good means: it ran to completion (not stopped early), its loss is finite, and its probe
    fits frames of `frame` pixels at this object pixel (``probe_misfit``). Products in
    `exclude` (the directory being written now) and unreadable files are passed over. This is
    how a session reuses its last good probe (the flow policy ``probe_start = "last"``).
    """
    excluded = Path(exclude).resolve() if exclude is not None else None
    found = sorted(Path(products_root).glob(f"*/*{PRODUCT_SUFFIX}"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in found:
        if excluded is not None and path.parent.resolve() == excluded:
            continue
        try:
            with h5py.File(path, "r") as f:
                g = f[GROUP]
                finished = not bool(g.attrs.get("stopped_early", False))
                losses = g["loss_history"][()]
                probe = g["probe"]
                fits = probe_misfit(probe.shape, float(g["pixel_size_m"][()]), frame, pixel_size_m) is None
                if finished and fits and len(losses) and np.isfinite(losses[-1]) and np.isfinite(probe[()]).all():
                    return path
        except (OSError, KeyError):
            continue
    return None


def from_result(result: Any, *, scan_id: str, source: str = "") -> ReconstructionProduct:
    """Build a product from an engine ``ReconstructionResult`` (the scan's instrument rides in
    ``result.parameters["instrument"]``)."""
    geometry = {name: float(value) for name, value in result.parameters.get("instrument", {}).items()
                if name in INSTRUMENT_FIELDS}
    return ReconstructionProduct(
        object=result.object,
        probe=result.probe,
        positions_px=result.positions_px,
        object_origin_px=result.object_origin_px,
        pixel_size_m=result.pixel_size_m,
        loss_history=result.loss_history,
        scan_id=scan_id,
        engine=result.engine,
        engine_reason=result.engine_reason,
        versions=result.versions,
        parameters=result.parameters,
        iterations_run=result.iterations_run,
        stopped_early=result.stopped_early,
        stop_reason=result.stop_reason,
        wall_time_s=result.wall_time_s,
        source=source,
        **geometry,
    )
