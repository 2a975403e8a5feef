"""`ptychoflow dashboard`: the operators' page (runs, watcher journal, models, edge) and /metrics."""

from __future__ import annotations

from pathlib import Path

import click

from ptychoflow.cli._common import load, profile_option


@click.command()
@profile_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (localhost only by default).")
@click.option("--port", type=int, default=8780, show_default=True)
@click.option("--refresh-ms", type=int, default=2000, show_default=True, help="How often the page refreshes itself.")
@click.option("--no-engine", is_flag=True, help="Do not start the local engine worker if none is running.")
def dashboard(profile_path: Path | None, host: str, port: int, refresh_ms: int, no_engine: bool) -> None:
    """Serve the operator dashboard: flow runs with state timelines, the watcher journal, the
    model registry and the edge status, refreshing itself; Prometheus metrics at /metrics.

    \b
    Examples:
      ptychoflow dashboard --profile site/            # http://127.0.0.1:8780
      curl -s localhost:8780/metrics | grep ptychoflow_runs
    """
    import uvicorn

    from ptychoflow.dashboard.app import create_app
    from ptychoflow.dashboard.sources import profile_sources
    from ptychoflow.local_site import prepare_local_site

    profile = load(profile_path)
    backend = prepare_local_site(profile, start_engine=not no_engine)
    click.echo(f"dashboard on http://{host}:{port} ({backend.name} backend); Ctrl-C to stop", err=True)
    uvicorn.run(create_app(profile_sources(profile, backend), refresh_ms=refresh_ms), host=host, port=port,
                log_level="warning")
