"""``ptychoflow reconstruct``: rPIE on one scan, with a progress bar and a summary table."""

from __future__ import annotations

import click


@click.command("reconstruct")
@click.argument("scan", type=click.Path(dir_okay=False))
@click.option("--engine", type=click.Choice(["auto", "tike", "ptychi"]), default="auto", show_default=True,
              help="auto: Tike when a GPU and tike exist, else Pty-chi on the best device.")
@click.option("--iterations", "-n", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--out", "output_dir", type=click.Path(file_okay=False), default=None,
              help="Output directory [default: the scan's directory].")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Positions per rPIE update; raise it on GPUs.")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True), default=0.1, show_default=True,
              help="rPIE regularisation.")
@click.option("--probe-refinement/--no-probe-refinement", default=True, show_default=True)
@click.option("--position-refinement/--no-position-refinement", default=False, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "gpu"]), default="auto", show_default=True)
@click.option("--time-limit", "time_limit_s", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop cleanly between iterations after this many seconds; the product is still written.")
@click.option("--seed", type=int, default=0, show_default=True)
def reconstruct(scan: str, engine: str, iterations: int, output_dir: str | None, batch_size: int, alpha: float,
                probe_refinement: bool, position_refinement: bool, device: str, time_limit_s: float | None,
                seed: int) -> None:
    """Reconstruct SCAN (ptychoflow .h5, or Tike .npz / .npz.bz2) with rPIE.

    Writes SCAN_ID.recon.h5 (object, probe, positions, loss history, provenance) and a
    SCAN_ID.recon.png preview (phase | amplitude). Bad input fails before any work, with one
    line naming the file and field, and writes nothing.

    \b
    Examples:
      ptychoflow reconstruct acquisition/scan_0001.h5
      ptychoflow reconstruct scan_0001.h5 --engine ptychi --iterations 60 --out recon/
      ptychoflow reconstruct siemens-star-small.npz.bz2 --device cpu --time-limit 120
      ptychoflow reconstruct scan_0001.h5 --engine tike --position-refinement   # GPU machine
    """
    from pathlib import Path

    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from ptychoflow.recon import IterationInfo, RpieOptions, validate_scan
    from ptychoflow.reconstruct import load_scan, run_reconstruction

    options = RpieOptions(iterations=iterations, batch_size=batch_size, alpha=alpha,
                          probe_refinement=probe_refinement, position_refinement=position_refinement,
                          device=device, time_limit_s=time_limit_s, seed=seed)  # type: ignore[arg-type]
    out = output_dir or str(Path(scan).resolve().parent)
    loaded = load_scan(scan)
    validate_scan(loaded)  # fail with one line before any progress output
    console = Console(stderr=True)
    with Progress(TextColumn("rPIE"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
                  TimeElapsedColumn(), console=console, transient=False) as bar:
        task = bar.add_task("rPIE", total=iterations, loss="-")

        def progress(info: IterationInfo) -> None:
            bar.update(task, completed=info.iteration, loss=f"{info.loss:.4g}")

        summary = run_reconstruction(scan, out, options, engine=engine, progress=progress, scan=loaded)
    table = Table(title=f"Reconstruction of {summary.scan_id}", show_header=False)
    rows = [
        ("engine", f"{summary.engine} on {summary.device}"),
        ("why", summary.engine_reason),
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
    Console().print(table)
