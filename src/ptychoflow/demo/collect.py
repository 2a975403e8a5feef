"""Gather the report's facts from what the pipeline left on disk.

All images share one frame: scan-frame object pixels, in which the simulator's truth (origin
0), the rPIE object (`object_origin_px`) and the edge mosaic (`origin_px`) all place their
[0, 0]. Comparisons use the well-overlapped pixels (OVERLAP_FRACTION) and, for the live
image, only those the edge covered.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ptychoflow import metrics
from ptychoflow.backends.base import Backend, RunInfo
from ptychoflow.errors import InputError
from ptychoflow.report import EdgeSection, ScanSection
from ptychoflow.simulate.beamline import load_truth
from ptychoflow.site import SiteLayout
from ptychoflow.watcher.journal import JOURNAL_FILENAME, Journal

if TYPE_CHECKING:
    from ptychoflow.product import ReconstructionProduct

log = logging.getLogger(__name__)
# Images are compared where the scan overlaps well: illumination >= half its maximum. Farther
# out, pixels are lit by one or two positions and neither rPIE nor the network is reliable.
OVERLAP_FRACTION = 0.5


def place(image: np.ndarray, origin: tuple[float, float], frame_origin: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
    """`image` (whose [0, 0] sits at `origin`) resampled onto a frame; NaN where it has no data."""
    out = np.full(shape, np.nan)
    oy, ox = (int(round(o)) - f for o, f in zip(origin, frame_origin))
    y0, x0 = max(oy, 0), max(ox, 0)
    y1, x1 = min(oy + image.shape[0], shape[0]), min(ox + image.shape[1], shape[1])
    if y1 > y0 and x1 > x0:
        out[y0:y1, x0:x1] = image[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
    return out


def mosaic_on_product(mosaic_path: Path, product: ReconstructionProduct, dataset: str = "phase") -> tuple[np.ndarray, dict]:
    """A saved edge mosaic (`dataset`: ``phase`` or ``network_phase``) on the grid of its scan's
    rPIE product, NaN where it has no data, and its attributes. A network on a centred crop of
    the frame has pixels n/c times larger: each covers that many of the product's pixels."""
    from ptychoflow_edge.mosaics import read_mosaic

    image, attrs = read_mosaic(mosaic_path, dataset)
    pixel = float(attrs.get("pixel_size_m", float("nan")))
    if not (np.isfinite(pixel) and pixel > 0):
        raise InputError(mosaic_path, "pixel_size_m", f"expected a positive pixel size in metres, got {pixel!r}")
    repeat = max(1, int(round(pixel / product.pixel_size_m)))
    image = np.repeat(np.repeat(image, repeat, axis=0), repeat, axis=1)
    origin = tuple(float(v) * repeat for v in attrs["origin_px"])
    frame_origin = tuple(int(round(v)) for v in product.object_origin_px)
    return place(image, origin, frame_origin, product.phase.shape), attrs


def _bounding_box(mask: np.ndarray) -> tuple[slice, slice]:
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def run_for(state_dir: Path, scan_path: Path, backend: Backend) -> RunInfo | None:
    journal_path = state_dir / JOURNAL_FILENAME
    if not journal_path.exists():
        return None
    journal = Journal(journal_path, readonly=True)
    try:
        row = journal.get(str(scan_path))
        run_row = journal.get_run(row.run_key) if row and row.run_key else None
    finally:
        journal.close()
    if run_row is None or run_row.run_id is None:
        return None
    return backend.get_run(run_row.run_id)


def _output(run: RunInfo | None, state: str) -> dict[str, Any]:
    """A state's compute result from the run's final document (empty if it never ran)."""
    try:
        return run.output[state]["details"]["results"][0]["output"] or {}
    except (TypeError, KeyError, IndexError, AttributeError):
        return {}


def decision(run: RunInfo | None) -> str:
    """What the adaptive policy decided for this scan, in words."""
    if run is None:
        return "no run"
    if run.status.value == "FAILED":
        return f"run failed: {run.error or 'see ptychoflow runs logs'}"
    validated, trained = _output(run, "ValidateModel"), _output(run, "TrainModel")
    ssim, tolerance = validated.get("ssim"), validated.get("tolerance")
    if not trained:
        return f"retraining skipped: model SSIM {ssim:.2f} >= tolerance {tolerance:.2f}" if ssim is not None else "not trained"
    why = "no model yet" if ssim is None else f"model SSIM {ssim:.2f} < tolerance {tolerance:.2f}"
    outcome = f"promoted {trained.get('version')}" if trained.get("promoted") else "candidate not better; kept best"
    return f"retrained ({why}): {outcome}"


def model_origins(layout: SiteLayout, versions: list[str]) -> str:
    """`versions` with where each came from (pretrained, reused, trained on which scans)."""
    from ptychoflow.nn.registry import Registry

    registry = Registry(layout.hpc.registry_dir)
    described = []
    for version in versions:
        try:
            described.append(f"{version}: {registry.get(version).origin}")
        except InputError:
            described.append(version)
    return "; ".join(described)


def polish_note(record: dict[str, Any]) -> str:
    """The edge's polish record in words (ptychoflow_edge.mosaics)."""
    if record.get("sweeps"):
        probe = record.get("probe_source") or "the model's probe"
        how = (f"from the {probe}" + ("" if record.get("probe_measured") else " (a guess)")
               + f", refined with the object (it moved {record.get('probe_change', 0):.2f})")
        return f"polished across {record['frames']} frames: {record['sweeps']} rPIE sweeps in {record['seconds']:.1f} s {how}"
    if "skipped" in record:
        return f"not polished: {record['skipped']}"
    return "not polished: the model came without a probe"


def scan_section(scan_path: Path, layout: SiteLayout, backend: Backend, timings: dict[str, dict[str, float]], *,
                 sparse: bool = False) -> ScanSection:
    from ptychoflow.preview import render_preview
    from ptychoflow.product import read_product

    scan_id = scan_path.stem
    section = ScanSection(scan_id, sparse=sparse)
    section.run = run_for(layout.state_dir, scan_path, backend)
    section.decision = decision(section.run)
    product_path = next(layout.hpc.products_dir(scan_id).glob("*.recon.h5"), None)
    mosaic_path = layout.edge.mosaics_dir / f"{scan_id}.h5"
    scan_end = timings.get(scan_id, {}).get("scan_end")
    if product_path is None:
        return section
    product = read_product(product_path)
    section.rpie_preview_png = render_preview(product)
    frame_origin = tuple(int(round(v)) for v in product.object_origin_px)
    rpie = product.phase
    lit = product.lit_mask(OVERLAP_FRACTION)
    box = _bounding_box(lit)
    section.rpie_phase = rpie[box]
    if scan_end is not None:
        section.wait_rpie_s = product_path.stat().st_mtime - scan_end
    truth = load_truth(scan_path)
    truth_phase = None
    if truth is not None:
        truth_phase = place(np.angle(truth["object"]), (0, 0), frame_origin, rpie.shape)
        usable = lit & np.isfinite(truth_phase)
        section.truth_phase = truth_phase[box]
        section.rpie_ssim = metrics.phase_ssim(rpie, np.nan_to_num(truth_phase), usable)
        section.rpie_rmse = metrics.phase_rmse(rpie, np.nan_to_num(truth_phase), usable)
    if mosaic_path.exists():
        live, attrs = mosaic_on_product(mosaic_path, product)
        try:
            network = mosaic_on_product(mosaic_path, product, "network_phase")[0]
        except KeyError:  # a mosaic saved before the polish existed: the network's image is the live one
            network = live
        covered = lit & np.isfinite(live)
        section.edge_phase, section.network_phase = live[box], network[box]
        section.edge_polish = polish_note(json.loads(attrs.get("polish", "{}")))
        models = attrs.get("models")
        if models is not None:
            versions = [str(v) for v in np.atleast_1d(models)]
            section.edge_model_version = ", ".join(versions)
            section.edge_model_origin = model_origins(layout, versions)
        if covered.sum() > 64:
            section.edge_ssim = metrics.phase_ssim(live, rpie, covered)
            section.network_ssim = metrics.phase_ssim(network, rpie, covered)
            if truth_phase is not None:
                both = covered & np.isfinite(truth_phase)
                section.edge_truth_ssim = metrics.phase_ssim(live, np.nan_to_num(truth_phase), both)
        if scan_end is not None:
            section.wait_edge_s = mosaic_path.stat().st_mtime - scan_end
    return section


def edge_section(status: dict[str, Any] | None) -> EdgeSection:
    if not status:
        return EdgeSection()
    counters = status.get("counters", {})
    busy = sum(status.get("stage_seconds", {}).values())
    inferred = int(counters.get("inferred", 0))
    latency = status.get("latency_ms") or {}
    model = status.get("model") or {}
    return EdgeSection(
        frames_inferred=inferred,
        frames_dropped=int(sum(status.get("dropped_by_reason", {}).values())),
        fps=inferred / busy if busy > 0 else None,
        latency_p50_ms=latency.get("p50"),
        latency_p99_ms=latency.get("p99"),
        provider=model.get("provider") or ", ".join(status.get("providers", [])),
    )
