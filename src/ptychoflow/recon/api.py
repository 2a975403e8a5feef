"""The one way to reconstruct: ``reconstruct`` (in memory), then ``write_reconstruction`` (files).

    result = reconstruct("scan_0001.h5", RpieOptions(iterations=60), engine="auto")
    summary = write_reconstruction(result, "products/scan_0001")

The CLI, the remote function and the benchmarks all go through these two steps.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ptychoflow.recon.base import PreparedScan, ProgressCallback, ReconstructionResult, RpieOptions, prepare_scan
from ptychoflow.recon.probe_start import EngineRun, choose_start, given_start, product_start
from ptychoflow.recon.registry import AUTO, EngineChoice, choose_engine, get_engine
from ptychoflow.scan.format import Scan
from ptychoflow.scan import load_scan
from ptychoflow.scan.reader import ReadOptions

log = logging.getLogger(__name__)


def reconstruct(
    scan: Scan | str | Path,
    options: RpieOptions | None = None,
    *,
    engine: str = AUTO,
    progress: ProgressCallback | None = None,
    read_options: ReadOptions | None = None,
    scan_format: str = AUTO,
    probe_from: str | Path | None = None,
) -> ReconstructionResult:
    """rPIE on `scan` (a Scan, or a path to one of any layout the readers know, read with
    `read_options` as `scan_format`); writes nothing.

    The scan is validated first (one ScanError naming file and field, before any work), then
    the engine is resolved ("auto" records what it picked and why in ``engine_reason``), then
    the probe start is chosen and recorded in ``parameters["probe_start"]``: the probe of the
    product `probe_from` if given, else as ``options.probe_start`` says.
    """
    start = time.perf_counter()
    options = options or RpieOptions()
    scan = scan if isinstance(scan, Scan) else load_scan(scan, read_options, scan_format=scan_format)
    prepared = prepare_scan(scan)
    choice, run = engine_run(engine, options.device)
    log.info("engine %s on %s (%s)", choice.engine, choice.device, choice.reason)
    if probe_from is not None:
        probe_start = product_start(prepared, probe_from)
    elif options.probe_start == "auto":
        probe_start = choose_start(prepared, options, run)
    else:
        probe_start = given_start(prepared)
    log.info("probe start: %s (%s)", probe_start.chosen, probe_start.reason)
    prepared.probe = probe_start.probe
    result = run(prepared, options, progress)
    result.engine_reason = choice.reason
    result.scan_id, result.source = prepared.scan_id, prepared.source
    result.parameters = {**result.parameters, "engine_requested": engine, "scan_attrs": _plain(scan.attrs),
                         "instrument": asdict(scan.instrument),
                         "scan_read": {"format": scan.read_as, "options": scan.read_options},
                         "probe_start": probe_start.to_json()}
    result.wall_time_s = time.perf_counter() - start
    return result


def engine_run(engine: str, device: str) -> tuple[EngineChoice, EngineRun]:
    """The engine "auto" (or the name) resolves to here, and a function that runs it on its device."""
    choice = choose_engine(engine, device)
    spec = get_engine(choice.engine)

    def run(prepared: PreparedScan, options: RpieOptions, progress: ProgressCallback | None = None) -> ReconstructionResult:
        return spec.run(prepared, options, device=choice.device, progress=progress)

    return choice, run


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


def write_reconstruction(result: ReconstructionResult, output_dir: str | Path) -> ReconstructionSummary:
    """Write the product and its preview atomically into `output_dir`; return the summary."""
    from ptychoflow.product import from_result, write_product

    start = time.perf_counter()
    product_path, preview_path = write_product(from_result(result, scan_id=result.scan_id, source=result.source),
                                               output_dir)
    wall_time_s = result.wall_time_s + time.perf_counter() - start
    log.info("wrote %s (%s, %d iterations, %.1f s)", product_path, result.engine, result.iterations_run, wall_time_s)
    return ReconstructionSummary(
        product_path=str(product_path),
        preview_path=str(preview_path),
        scan_id=result.scan_id,
        engine=result.engine,
        engine_reason=result.engine_reason,
        device=str(result.parameters.get("device", "")),
        iterations=result.iterations_run,
        iterations_requested=int(result.parameters["iterations"]),
        stopped_early=result.stopped_early,
        stop_reason=result.stop_reason,
        final_loss=result.final_loss,
        wall_time_s=round(wall_time_s, 3),
        object_shape=list(result.object.shape),
        n_positions=int(result.positions_px.shape[0]),
    )


def _plain(attrs: dict) -> dict:
    """Scan attributes as JSON-able scalars (provenance in the product)."""
    return {str(k): (v if isinstance(v, (str, int, float, bool)) else str(v)) for k, v in attrs.items()}
