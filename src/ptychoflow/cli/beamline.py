"""`ptychoflow beamline`: a virtual beamline that writes and streams scans like a detector."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import click
import zmq
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ptychoflow.cli._common import console, load_if_any, profile_option, scan_options
from ptychoflow.errors import InputError
from ptychoflow.scan.format import Scan
from ptychoflow.scan.reader import ReadOptions
from ptychoflow.simulate.beamline import SimulationOptions, emit_scan, save_truth, scan_filename, simulate_scan
from ptychoflow.simulate.objects import OBJECT_KINDS
from ptychoflow.stream import FramePublisher


@click.group()
def beamline() -> None:
    """A virtual beamline: simulated or replayed scans, written and streamed like a detector.

    Inside a profile, scans go to its acquisition directory and frames to its edge's
    stream address, so the watcher and the edge service see them.

    \b
    Examples:
      ptychoflow beamline simulate --scans 2
      ptychoflow beamline replay ../shared/data/siemens-star-small.npz.bz2 --out acq --no-stream
    """


DEFAULT_STREAM = "tcp://127.0.0.1:5555"


@contextlib.contextmanager
def _publisher(stream: str | None, profile_path: Path | None, no_stream: bool, wait_subscribers: int,
               wait_s: float) -> Iterator[FramePublisher | None]:
    """The frame publisher: --stream, else the profile's edge.stream_address, else the default."""
    if no_stream:
        yield None
        return
    if stream is None:
        profile = load_if_any(profile_path)
        stream = profile.edge.stream_address if profile is not None else DEFAULT_STREAM
    try:
        publisher = FramePublisher(stream)
    except zmq.ZMQError as exc:
        raise InputError(stream, "--stream", f"cannot publish frames here: {exc} (another beamline or test "
                                             "already streams there? pass --stream or --no-stream)") from None
    try:
        if wait_subscribers and not publisher.wait_for_subscribers(wait_subscribers, wait_s):
            click.echo(f"warning: only {publisher.subscribers} of {wait_subscribers} subscribers after {wait_s:.0f}s; streaming anyway", err=True)
        yield publisher
    finally:
        publisher.close()


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("frames"),
        TimeRemainingColumn(), console=console(stderr=True), transient=False,
    )


OUT_HELP = "Acquisition directory [default: the profile's beamline directory, where the watcher looks]."


def _acquisition_dir(out: Path | None, profile_path: Path | None) -> Path:
    """--out, else the profile's beamline directory; without either there is nowhere to write."""
    if out is not None:
        return out
    profile = load_if_any(profile_path)
    if profile is None:
        raise click.UsageError("--out DIR is needed outside a profile (no --profile, $PTYCHOFLOW_PROFILE or "
                               "./ptychoflow.toml)")
    from ptychoflow.site import SiteLayout

    return SiteLayout.from_profile(profile).beamline_root


def _emit(scan: Scan, path: Path, publisher: FramePublisher | None, rate: float, progress: Progress) -> None:
    task = progress.add_task(path.name, total=scan.n_frames)
    emit_scan(scan, path, publisher=publisher, frame_rate=rate, on_progress=lambda n: progress.update(task, completed=n))


_stream_options = [
    click.option("--rate", type=float, default=0.0, show_default=True, help="Detector frame rate in Hz (0: as fast as possible)."),
    click.option("--stream", default=None,
                 help=f"ZeroMQ address to publish frames on [default: the profile's edge.stream_address, else {DEFAULT_STREAM}]."),
    click.option("--no-stream", is_flag=True, help="Only write files; publish nothing."),
    click.option("--wait-subscribers", type=int, default=0, show_default=True, help="Wait for this many stream subscribers before the first frame."),
    click.option("--wait-timeout", type=float, default=30.0, show_default=True, help="Seconds to wait for subscribers."),
]


def stream_options(func):
    for option in reversed(_stream_options):
        func = option(func)
    return func


@beamline.command()
@click.option("--scans", type=int, default=1, show_default=True, help="Number of scans (each a different region of the sample).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None, help=OUT_HELP)
@profile_option
@click.option("--first", type=int, default=1, show_default=True, help="Number of the first scan file (scan_0001.h5).")
@click.option("--frame-size", type=click.Choice(["64", "128"]), default="64", show_default=True, help="Detector frame size (pixels).")
@click.option("--object-size", type=int, default=256, show_default=True, help="Object size in pixels.")
@click.option("--step", type=float, default=10.0, show_default=True, help="Scan step in object pixels.")
@click.option("--probe-diameter", type=float, default=None, help="Probe diameter in pixels [default: 0.56 x frame size].")
@click.option("--probe", type=click.Choice(["zoneplate", "gaussian"]), default="zoneplate", show_default=True)
@click.option("--trajectory", type=click.Choice(["spiral", "raster"]), default="spiral", show_default=True)
@click.option("--amplitude", type=click.Choice(OBJECT_KINDS), default="camera", show_default=True, help="Image for the amplitude.")
@click.option("--phase", type=click.Choice(OBJECT_KINDS), default="astronaut", show_default=True, help="Image for the phase.")
@click.option("--phase-range", type=float, default=1.0, show_default=True, help="Phase span in radians.")
@click.option("--dose", type=float, default=1e6, show_default=True, help="Photons per frame (sets Poisson noise).")
@click.option("--dark-current", type=float, default=0.0, show_default=True, help="Mean dark counts per pixel per frame.")
@click.option("--seed", type=int, default=0, show_default=True)
@stream_options
def simulate(scans: int, out: Path | None, profile_path: Path | None, first: int, frame_size: str, object_size: int, step: float, probe_diameter: float | None,
             probe: str, trajectory: str, amplitude: str, phase: str, phase_range: float, dose: float, dark_current: float,
             seed: int, rate: float, stream: str, no_stream: bool, wait_subscribers: int, wait_timeout: float) -> None:
    """Simulate far-field ptychography scans and emit them like a detector.

    Each scan file grows frame by frame and is marked complete when closed; every frame is
    also published on the ZeroMQ stream; the ground truth lands beside it as *.truth.npz.

    \b
    Examples:
      ptychoflow beamline simulate --scans 2                  # into the profile's acquisition directory
      ptychoflow beamline simulate --scans 3 --first 3 --object-size 160 --rate 1000
      ptychoflow beamline simulate --frame-size 128 --object-size 512 --step 20 --out acq --no-stream
    """
    out = _acquisition_dir(out, profile_path)
    size = int(frame_size)
    options = SimulationOptions(
        frame_size=size, object_size=object_size, step_px=step, probe_diameter_px=probe_diameter or 0.5625 * size,
        probe=probe, trajectory=trajectory, amplitude=amplitude, phase=phase, phase_range=phase_range, dose=dose,
        dark_current=dark_current, seed=seed,
    )
    out.mkdir(parents=True, exist_ok=True)
    click.echo(f"overlap {options.overlap:.0%}, pixel size {options.instrument.object_pixel_size_m(size) * 1e9:.1f} nm")
    with _publisher(stream, profile_path, no_stream, wait_subscribers, wait_timeout) as publisher, _progress() as progress:
        for k in range(scans):
            number = first + k
            sim = simulate_scan(options, scan_id=f"scan_{number:04d}", region=number - 1)
            path = out / scan_filename(number)
            _emit(sim.scan, path, publisher, rate, progress)
            save_truth(sim, path)
    click.echo(f"wrote {scans} scan(s) to {out}")


@beamline.command()
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None, help=OUT_HELP)
@profile_option
@click.option("--name", default=None, help="Output file name [default: scan_<source>.h5].")
@click.option("--max-frames", type=click.IntRange(min=1), default=None, help="Replay only the first N frames.")
@stream_options
@scan_options
def replay(source: Path, out: Path | None, profile_path: Path | None, name: str | None, max_frames: int | None,
           rate: float, stream: str | None, no_stream: bool, wait_subscribers: int, wait_timeout: float, scan_format: str,
           read_options: ReadOptions) -> None:
    """Replay a recorded scan as if it were being measured: written as a ptychoflow .h5 and
    streamed to the edge. SOURCE is any layout ptychoflow reads (ptychoflow .h5, Eiger master,
    CXI, Tike .npz/.npz.bz2).

    \b
    Examples:
      ptychoflow beamline replay ../shared/data/siemens-star-small.npz.bz2 --out acq --rate 500
      ptychoflow beamline replay ../shared/data/siemens-star-small.npz.bz2 --max-frames 100 --name scan_0100.h5
    """
    from dataclasses import replace

    from ptychoflow.scan import load_scan

    out = _acquisition_dir(out, profile_path)
    scan = load_scan(source, replace(read_options, max_frames=max_frames), scan_format=scan_format)
    out.mkdir(parents=True, exist_ok=True)
    target = out / (name or f"scan_{scan.scan_id}.h5")
    with _publisher(stream, profile_path, no_stream, wait_subscribers, wait_timeout) as publisher, _progress() as progress:
        _emit(scan, target, publisher, rate, progress)
    click.echo(f"replayed {scan.n_frames} frames to {target}")
