"""Scan file -> rPIE -> Reconstruction product: the one path the CLI and the remote function share."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ptychoflow.recon import ProgressCallback, RpieOptions, reconstruct_scan
from ptychoflow.errors import ScanError
from ptychoflow.product import from_result, write_product
from ptychoflow.scan.format import Scan, read_scan

log = logging.getLogger(__name__)
TIKE_SUFFIXES = (".npz", ".npz.bz2")


def load_scan(path: str | Path) -> Scan:
    """A ptychoflow HDF5 scan, or a Tike ``.npz``/``.npz.bz2`` (chosen by the file name)."""
    path = Path(path)
    if path.name.endswith(TIKE_SUFFIXES):
        from ptychoflow.scan.tike_npz import read_tike_npz

        return read_tike_npz(path)
    if path.suffix.lower() in (".h5", ".hdf5", ".hdf", ".nxs"):
        return read_scan(path)
    raise ScanError(path, "(file)", "unknown scan format: expected .h5/.hdf5 or Tike .npz/.npz.bz2")


@dataclass
class ReconstructionSummary:
    """What the remote function returns: small and JSON-able."""

    product_path: str
    preview_path: str
    scan_id: str
    engine: str
    engine_reason: str
    device: str
    iterations: int
    iterations_requested: int
    stopped_early: bool
    stop_reason: str
    final_loss: float
    wall_time_s: float
    object_shape: list[int]
    n_positions: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def run_reconstruction(
    scan_path: str | Path,
    output_dir: str | Path,
    options: RpieOptions | None = None,
    *,
    engine: str = "auto",
    progress: ProgressCallback | None = None,
    scan: Scan | None = None,
) -> ReconstructionSummary:
    """Load and validate (ScanError before any work), reconstruct, write the product atomically.

    `scan` may pass the already loaded `scan_path` (the CLI validates before showing progress).
    """
    start = time.perf_counter()
    options = options or RpieOptions()
    scan = scan if scan is not None else load_scan(scan_path)
    result = reconstruct_scan(scan, options, engine, progress)
    result.wall_time_s = time.perf_counter() - start
    product = from_result(result, scan_id=scan.scan_id, source=str(scan_path))
    product.parameters = {**product.parameters, "engine_requested": engine, "scan_attrs": _plain(scan.attrs)}
    product_path, preview_path = write_product(product, output_dir)
    log.info("wrote %s (%s, %d iterations, %.1f s)", product_path, result.engine, result.iterations_run, result.wall_time_s)
    return ReconstructionSummary(
        product_path=str(product_path),
        preview_path=str(preview_path),
        scan_id=scan.scan_id,
        engine=result.engine,
        engine_reason=result.engine_reason,
        device=str(result.parameters.get("device", "")),
        iterations=result.iterations_run,
        iterations_requested=options.iterations,
        stopped_early=result.stopped_early,
        stop_reason=result.stop_reason,
        final_loss=float(result.loss_history[-1]) if len(result.loss_history) else float("nan"),
        wall_time_s=round(time.perf_counter() - start, 3),
        object_shape=list(result.object.shape),
        n_positions=int(result.positions_px.shape[0]),
    )


def _plain(attrs: dict) -> dict:
    return {str(k): (v if isinstance(v, (str, int, float, bool)) else str(v)) for k, v in attrs.items()}
