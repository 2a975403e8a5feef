"""`ptychoflow dashboard`: the operators' page (runs, watcher journal, models, edge) and /metrics."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from ptychoflow.cli._common import load, profile_option


@click.command()
@profile_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (localhost only by default).")
@click.option("--port", type=int, default=8780, show_default=True)
@click.option("--refresh-ms", type=int, default=2000, show_default=True, help="How often the page refreshes itself.")
@click.option("--no-engine", is_flag=True,
              help="Do not start or restart the local engine worker: something else supervises it (the "
                   "ptychoflow-engine systemd unit). The page and /metrics still show when it is down.")
def dashboard(profile_path: Path | None, host: str, port: int, refresh_ms: int, no_engine: bool) -> None:
    """Serve the operator dashboard: the engine worker's health, flow runs with labelled state
    timelines (a failed run shows the state that failed and why), the watcher journal, the
    model registry and the edge status, refreshing itself; Prometheus metrics at /metrics.
    Logs go to stderr and <state_dir>/dashboard.log.

    \b
    Examples:
      ptychoflow dashboard --profile site/            # http://127.0.0.1:8780 until Ctrl-C
      ptychoflow dashboard --no-engine --port 8781    # beside the engine's systemd unit

    Prometheus scrapes http://127.0.0.1:8780/metrics (ptychoflow_runs_finished_total,
    ptychoflow_engine_up, ptychoflow_state_duration_seconds, …).
    """
    import uvicorn

    from ptychoflow.dashboard.app import create_app
    from ptychoflow.dashboard.sources import profile_sources
    from ptychoflow.local_site import prepare_local_site
    from ptychoflow.servicelog import service_log

    profile = load(profile_path)
    with service_log("dashboard", profile.state_path):
        backend = prepare_local_site(profile, start_engine=not no_engine)
        supervisor = backend.supervise_worker(restart=not no_engine)  # local: the engine worker
        logging.getLogger("ptychoflow.dashboard").info("dashboard on http://%s:%d (%s backend); Ctrl-C to stop",
                                                       host, port, backend.name)
        try:
            uvicorn.run(create_app(profile_sources(profile, backend), refresh_ms=refresh_ms), host=host, port=port,
                        log_level="warning", log_config=None)
        finally:
            if supervisor is not None:
                supervisor.stop()
