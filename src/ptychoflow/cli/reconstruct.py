"""``ptychoflow reconstruct``: rPIE on one scan, with a progress bar and a summary table."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import click

from ptychoflow.cli._common import console, load_if_any, profile_option, scan_options
from ptychoflow.fs import writable_dir
from ptychoflow.recon.base import PROBE_START_MODES, IterationInfo, ProgressCallback, RpieOptions
from ptychoflow.recon.registry import AUTO, DEVICES, ENGINE_CHOICES, ENGINES
from ptychoflow.scan.reader import ReadOptions

if TYPE_CHECKING:
    from ptychoflow.profile import Profile
    from ptychoflow.recon.api import ReconstructionSummary

DEFAULTS = RpieOptions()
DEFAULT_OUTPUT_DIR = "reconstructions"  # below the current directory, when no profile says where products go
ENGINE_HELP = "; ".join([f"{AUTO}: the first of {', '.join(ENGINES)} that runs here (`ptychoflow doctor` lists them)"]
                        + [f"{spec.name}: {spec.summary}" for spec in ENGINES.values()]) + "."


@click.command("reconstruct")
@click.argument("scan", type=click.Path(dir_okay=False))
@click.option("--engine", type=click.Choice(ENGINE_CHOICES), default=AUTO, show_default=True, help=ENGINE_HELP)
@click.option("--iterations", "-n", type=click.IntRange(min=1), default=DEFAULTS.iterations, show_default=True)
@click.option("--out", "output_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output directory [default: with a profile, its <hpc>/products/SCAN_ID (where the flows put "
                   "products); else ./reconstructions/SCAN_ID]. Never the acquisition directory.")
@click.option("--batch-size", type=click.IntRange(min=1), default=DEFAULTS.batch_size, show_default=True,
              help="Positions per rPIE update; raise it on GPUs.")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True), default=DEFAULTS.alpha, show_default=True,
              help="rPIE regularisation.")
@click.option("--momentum", type=click.FloatRange(0, 1, max_open=True), default=DEFAULTS.momentum, show_default=True,
              help="Momentum on the object's steps (0: plain rPIE, the default; docs/reconstruction.md has the sweep).")
@click.option("--probe-refinement/--no-probe-refinement", default=DEFAULTS.probe_refinement, show_default=True)
@click.option("--position-refinement/--no-position-refinement", default=DEFAULTS.position_refinement, show_default=True)
@click.option("--device", type=click.Choice(DEVICES), default=DEFAULTS.device, show_default=True)
@click.option("--time-limit", "time_limit_s", type=click.FloatRange(min=0, min_open=True), default=DEFAULTS.time_limit_s,
              help="Stop cleanly between iterations after this many seconds; the product is still written.")
@click.option("--seed", type=int, default=DEFAULTS.seed, show_default=True)
@click.option("--probe-start", type=click.Choice(PROBE_START_MODES), default=DEFAULTS.probe_start, show_default=True,
              help="auto: try candidate probes (the measured pupil on either side of focus, a few sizes, the "
                   "file's guess) for a few iterations and start from the one that best predicts held-out "
                   "frames; given: the file's own probe guess (else the measured pupil), no trials.")
@click.option("--probe-from", "probe_from", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Start from the probe of an earlier reconstruction (a .recon.h5 of the same optics); "
                   "overrides --probe-start.")
@profile_option
@scan_options
def reconstruct(scan: str, engine: str, iterations: int, output_dir: Path | None, batch_size: int, alpha: float,
                momentum: float, probe_refinement: bool, position_refinement: bool, device: str, time_limit_s: float | None,
                seed: int, probe_start: str, probe_from: str | None, profile_path: Path | None, scan_format: str,
                read_options: ReadOptions) -> None:
    """Reconstruct SCAN with rPIE: a ptychoflow .h5, an Eiger master (with its data files and
    position file beside it), a CXI file, or a Tike .npz / .npz.bz2.

    Writes SCAN_ID.recon.h5 (object, probe, positions in metres, loss history, provenance) and
    a SCAN_ID.recon.png preview (phase and amplitude with scale bars, probe, loss). Bad input,
    or an output directory that cannot be written, fails before any work, with one line
    naming the file and field. Ctrl-C (like --time-limit) stops after the current iteration
    and still writes the product, marked stopped_early; a second Ctrl-C aborts without writing.

    \b
    Examples:
      ptychoflow reconstruct site/acquisition/scan_0001.h5 --iterations 20
      ptychoflow reconstruct site/acquisition/scan_0002.h5 --engine ptychi --iterations 10 --out recon/
      ptychoflow reconstruct ../shared/data/siemens-star-small.npz.bz2 --device cpu --time-limit 20
      ptychoflow reconstruct fly042_master.h5 --frame-size 128 --iterations 10   # Eiger + fly042_positions.txt
      ptychoflow reconstruct run7.cxi --iterations 10
      ptychoflow reconstruct site/acquisition/scan_0001.h5 --engine tike --position-refinement   # on a CUDA machine
      ptychoflow reconstruct site/acquisition/scan_0002.h5 --probe-from site/hpc/products/scan_0001/scan_0001.recon.h5   # same optics, no trials
    """
    from ptychoflow.recon import api
    from ptychoflow.recon.base import validate_scan
    from ptychoflow.recon.iterations import INTERRUPTED
    from ptychoflow.recon.probe_start import reusable_product
    from ptychoflow.recon.registry import choose_engine
    from ptychoflow.scan import load_scan

    options = RpieOptions(iterations=iterations, batch_size=batch_size, alpha=alpha, momentum=momentum,
                          probe_refinement=probe_refinement, position_refinement=position_refinement,
                          device=device, time_limit_s=time_limit_s, seed=seed,
                          probe_start=probe_start)  # type: ignore[arg-type]
    loaded = load_scan(scan, read_options, scan_format=scan_format)
    validate_scan(loaded)  # bad input, or an engine that cannot run here: one line before any progress output
    choose_engine(engine, device)
    if probe_from is not None:
        reusable_product(probe_from, loaded.frame_shape[0], loaded.pixel_size_m)
    out = writable_dir(_output_dir(output_dir, load_if_any(profile_path), loaded.scan_id, scan), field="--out")
    with _progress_bar(iterations) as progress:
        result = api.reconstruct(loaded, options, engine=engine, progress=progress, probe_from=probe_from)
    summary = api.write_reconstruction(result, out)
    _print_summary(summary, result.parameters["probe_start"])
    if summary.stop_reason.startswith(INTERRUPTED):
        raise SystemExit(130)  # saved, but interrupted: a calling script stops here too


def _output_dir(requested: Path | None, profile: Profile | None, scan_id: str, scan: str) -> Path:
    """--out, else where the flows put products (with a profile), else ./reconstructions/SCAN_ID.

    Never the profile's acquisition directory: the product's name (scan_0001.recon.h5) would
    match the watcher's scan pattern, and the detector's folder is often read-only.
    """
    from ptychoflow.errors import InputError
    from ptychoflow.names import safe_component
    from ptychoflow.site import SiteLayout

    layout = SiteLayout.from_profile(profile) if profile is not None else None
    if requested is None:
        if layout is not None:
            return layout.hpc.products_dir(scan_id)
        return Path(DEFAULT_OUTPUT_DIR) / safe_component(scan_id, source=scan, field="scan_id")
    if layout is not None and requested.resolve() == layout.beamline_root.resolve():
        raise InputError(requested, "--out", "this is the acquisition directory: the watcher would take the product "
                                             "for a new scan; choose another directory")
    return requested


@contextlib.contextmanager
def _progress_bar(total: int) -> Iterator[ProgressCallback]:
    """A rich progress bar on stderr; yields the callback that advances it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("rPIE"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
                  TimeElapsedColumn(), console=console(stderr=True), transient=False) as bar:
        task = bar.add_task("rPIE", total=total, loss="-")

        def progress(info: IterationInfo) -> None:
            bar.update(task, completed=info.iteration, loss=f"{info.loss:.4g}")

        yield progress


def _print_summary(summary: ReconstructionSummary, probe_start: dict) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"Reconstruction of {escape(summary.scan_id)}", show_header=False)
    rows = [
        ("engine", f"{summary.engine} on {summary.device}"),
        ("why", summary.engine_reason),
        ("probe start", f"{probe_start['chosen']}: {probe_start['reason']}"),
        ("iterations", f"{summary.iterations}/{summary.iterations_requested}"
         + (f" (stopped early: {summary.stop_reason})" if summary.stopped_early else "")),
        ("final loss", f"{summary.final_loss:.5g}"),
        ("positions", str(summary.n_positions)),
        ("object", "x".join(map(str, summary.object_shape))),
        ("wall time", f"{summary.wall_time_s:.1f} s"),
        ("product", summary.product_path),
        ("preview", summary.preview_path),
    ]
    for key, value in rows:
        table.add_row(key, escape(value))
    console().print(table)
