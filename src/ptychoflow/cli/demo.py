"""`ptychoflow demo`: the whole pipeline on this machine, no GPU and no Globus account needed."""

from __future__ import annotations

from pathlib import Path

import click

from ptychoflow.demo.scenario import DemoOptions


@click.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("demo-output"), show_default=True,
              help="Working directory (profile, sites, state, report). Run again to resume.")
@click.option("--scans", type=int, default=4, show_default=True, help="Number of scans the virtual beamline acquires.")
@click.option("--iterations", type=int, default=60, show_default=True, help="rPIE iterations per scan.")
@click.option("--epochs", type=int, default=25, show_default=True, help="Training epochs per retraining.")
@click.option("--train-time-limit", type=float, default=150.0, show_default=True, help="Seconds per retraining, at most.")
@click.option("--ssim-tolerance", type=float, default=0.5, show_default=True,
              help="Skip retraining while the best model scores at least this SSIM against rPIE.")
@click.option("--object-size", type=int, default=256, show_default=True, help="Simulated object size in pixels.")
@click.option("--pretrain-time", type=click.FloatRange(min=0), default=DemoOptions.pretrain_s, show_default=True,
              help="Seconds of pretraining on physics-made pairs from the optics' probe guess before scan 1, so scan 1 "
                   "has a live image while it is acquired; 0: scan 1 waits for its own training.")
@click.option("--sparse", is_flag=True,
              help="After the scans, one more at low overlap over a sample never seen: the report compares rPIE and "
                   "the live image with the ground truth.")
@click.option("--sparse-overlap", type=click.FloatRange(min=0, max=0.95), default=DemoOptions.sparse_overlap,
              show_default=True, help="Overlap of the sparse scan: 1 - step / beam FWHM.")
def demo(out: Path, scans: int, iterations: int, epochs: int, train_time_limit: float, ssim_tolerance: float,
         object_size: int, pretrain_time: float, sparse: bool, sparse_overlap: float) -> None:
    """Run the whole pipeline locally and write an HTML report.

    A virtual beamline acquires scans and streams their frames; the watcher starts the
    reconstruct_and_train flow for each on the local engine (transfer -> rPIE -> validate ->
    train -> promote -> ship to edge -> activate); the edge service infers later scans live.
    It ends with OUT/report.html and stops every process it started. Killed halfway, run it
    again: it resumes without repeating finished work.

    \b
    Examples:
      ptychoflow demo                          # about 5-10 minutes on 2 CPU cores
      ptychoflow demo --scans 2 --epochs 5     # a quick look
      ptychoflow demo --sparse                 # then a low-overlap scan of a new sample, scored
    """
    from ptychoflow.cli._common import console
    from ptychoflow.demo.run import run_demo

    run_demo(out, DemoOptions(scans=scans, iterations=iterations, train_epochs=epochs,
                              train_time_limit_s=train_time_limit, ssim_tolerance=ssim_tolerance, object_size=object_size,
                              pretrain_s=pretrain_time, sparse=sparse, sparse_overlap=sparse_overlap),
             console())
