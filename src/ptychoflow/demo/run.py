"""`ptychoflow demo`: run the whole pipeline on the local backend and write the HTML report."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console

from ptychoflow.dashboard.sources import registry_rows
from ptychoflow.demo.collect import decision, edge_section, run_for, scan_section
from ptychoflow.demo.profile import ensure_demo_profile
from ptychoflow.demo.scenario import DemoOptions, Timings, acquire, wait_for_run
from ptychoflow.demo.services import ServiceProcess, ServiceRegistry
from ptychoflow.local_site import prepare_local_site
from ptychoflow.report import DemoReport, render_report
from ptychoflow.simulate.beamline import scan_filename
from ptychoflow.site import SiteLayout
from ptychoflow.stream import FramePublisher

REPORT_FILENAME = "report.html"


def run_demo(out: Path, options: DemoOptions, console: Console | None = None) -> Path:
    """Run (or resume) the demo in `out`; returns the report's path. Stops every service it started."""
    console = console or Console()
    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    profile, created = ensure_demo_profile(out.resolve(), options.policy, {"settle_seconds": 0.5, "max_active_runs": 1})
    layout = SiteLayout.from_profile(profile)
    state = layout.state_dir
    state.mkdir(parents=True, exist_ok=True)
    registry = ServiceRegistry(state)
    leftovers = registry.stop_leftovers()
    console.print(f"[bold]ptychoflow demo[/] in {out} ({'new' if created else 'resuming'})"
                  + (f"; stopped leftovers of a previous run: {', '.join(leftovers)}" if leftovers else ""))
    backend = prepare_local_site(profile)
    console.print(f"  engine worker running; functions registered; flow [cyan]{profile.watcher.flow}[/]")
    logs = state / "logs"
    edge = ServiceProcess("edge", ["edge", "serve", "--profile", str(profile.root)], logs / "edge.log").start()
    watcher = ServiceProcess("watcher", ["watch", "--profile", str(profile.root)], logs / "watcher.log").start()
    registry.record([edge, watcher])
    publisher = FramePublisher(profile.edge.stream_address)
    acquisition = layout.beamline_root
    timings = Timings(state)
    edge_status: dict | None = None
    try:
        from ptychoflow_edge import read_status, wait_until_ready

        ready = wait_until_ready(layout.edge.status_file, pid=edge.pid, timeout_s=60)
        console.print(f"  edge service up: live page {ready.get('http_url', '?')}")
        if not publisher.wait_for_subscribers(1, 30):
            console.print("  [yellow]warning: the edge has not subscribed; live images may be missing[/]")

        def check() -> None:
            edge.check()
            watcher.check()

        for number in range(1, options.scans + 1):
            scan_path = acquisition / scan_filename(number)
            if acquire(options, number, acquisition, publisher, timings):
                console.print(f"  {scan_path.stem}: acquired and streamed to the edge")
            else:
                console.print(f"  {scan_path.stem}: already acquired (resume)")
            with console.status(f"{scan_path.stem}: waiting for its flow run") as spinner:
                result, _ = wait_for_run(state, scan_path, timeout_s=options.run_timeout_s, check=check,
                                         heartbeat=lambda s: spinner.update(f"{scan_path.stem}: journal says {s}"))
            decided = decision(run_for(state, scan_path, backend))
            console.print(f"  {scan_path.stem}: run {result}; {decided}")
        edge_status = read_status(layout.edge.status_file)
    finally:
        publisher.close()
        watcher.stop()
        edge.stop()
        from ptychoflow.flowengine.worker import stop_engine

        stop_engine(state)
        registry.clear()
    recorded = timings.data
    sections = [scan_section(acquisition / scan_filename(n), layout, backend, recorded) for n in range(1, options.scans + 1)]
    report = DemoReport(
        title="ptychoflow demo: beamline -> rPIE -> PtychoNN -> edge",
        scans=sections,
        edge=edge_section(edge_status),
        models=registry_rows(layout.hpc.registry_dir),
        wall_time_s=time.monotonic() - started,
        notes=[f"{options.scans} simulated scans ({options.frame_size}x{options.frame_size} frames) of one sample, "
               f"different regions; rPIE {options.iterations} iterations; training up to {options.train_epochs} epochs; "
               f"retraining is skipped while the best model scores SSIM >= {options.ssim_tolerance} against rPIE."],
    )
    path = render_report(report, out / REPORT_FILENAME)
    console.print(f"[bold green]report:[/] {path}  ({report.wall_time_s:.0f} s)")
    return path
