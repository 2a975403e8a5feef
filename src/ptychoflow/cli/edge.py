"""``ptychoflow edge``: run the edge inference service and ask it how it is doing."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ptychoflow import clock
from ptychoflow.cli._common import json_option, load, print_json, profile_option


@click.group()
def edge() -> None:
    """Live PtychoNN inference on the detector's frame stream (see `serve`).

    \b
    Examples:
      ptychoflow edge serve --profile site/       # until Ctrl-C; the live page on http://127.0.0.1:8765/
      ptychoflow edge status                      # model, frames/s, counters (exit 1 if none runs)
    """


@edge.command()
@profile_option
@click.option("--host", "http_host", default=None, help="HTTP bind address (profile edge.http_host; default 127.0.0.1).")
@click.option("--port", "http_port", type=int, default=None, help="HTTP port; 0 picks a free one (profile edge.http_port).")
@click.option("--stream", "stream_address", default=None, help="Frame stream to subscribe to (edge.stream_address).")
@click.option("--results", "results_address", default=None, help="Results stream to bind (edge.results_address).")
@click.option("--batch-size", type=int, default=None, help="Frames per inference call (edge.batch_size).")
@click.option("--max-wait-ms", type=float, default=None, help="Longest wait to fill a batch (edge.max_wait_ms).")
@click.option("--queue-frames", type=int, default=None, help="Frames queued before dropping (edge.queue_frames).")
@click.option("--providers", default=None,
              help="Comma-separated providers in preference order: ONNX Runtime's (TensorrtExecutionProvider, "
                   "CUDAExecutionProvider, CPUExecutionProvider) or the torch backend's (TorchCUDA, TorchCPU). "
                   "Default: the best there is, TensorRT -> CUDA -> TorchCUDA -> CPU.")
@click.option("--threads", "intra_op_threads", type=int, default=None, help="ONNX Runtime intra-op threads.")
@click.option("--pva-channel", default=None,
              help="Also read NTNDArray frames from this pvAccess channel, e.g. 13SIM1:Pva1:Image (edge.pva_channel).")
@click.option("--pva-pixel-size", "pva_pixel_size_m", type=float, default=None,
              help="Object pixel size (m) of the pvAccess frames (edge.pva_pixel_size_m).")
@click.option("--pva-output", default=None, help="Serve the live phase as an NTNDArray on this PV (edge.pva_output).")
@click.option("--align-offsets/--no-align-offsets", default=None,
              help="Shift each phase patch to agree with the mosaic (phase is known up to a constant).")
def serve(profile_path: Path | None, providers: str | None, **overrides: object) -> None:
    """Serve until SIGTERM/Ctrl-C: infer every frame, stitch the live mosaic, publish results.

    \b
    Reads <edge.path>/model/ (hot-swapped when a new manifest.json appears), writes
    mosaics to <edge.path>/mosaics/ and its status to <edge.path>/edge-status.json; logs to
    stderr and <state_dir>/edge.log (`ptychoflow logs edge`).
    Example:
      ptychoflow edge serve --profile site/ptychoflow.toml
      # page: http://127.0.0.1:8765/   status: /status   Prometheus: /metrics
      ptychoflow edge serve --pva-channel 2IDD:Pva1:Image --pva-pixel-size 1e-8 --pva-output 2IDD:Ptycho:Phase
    """
    from ptychoflow.servicelog import service_log
    from ptychoflow_edge.config import EdgeConfig
    from ptychoflow_edge.service import EdgeService

    profile = load(profile_path)
    config = EdgeConfig.from_profile(profile, providers=providers.split(",") if providers else None, **overrides)
    with service_log("edge", profile.state_path):
        EdgeService(config).serve_forever()


def _iso_times(status: dict) -> dict:
    """The service's status with its epoch times as the CLI shows every time in JSON (ISO 8601)."""
    return {**status, "started_at": clock.iso(status.get("started_at")), "updated_at": clock.iso(status.get("updated_at")),
            "model_events": [{**e, "at": clock.iso(e.get("at"))} for e in status.get("model_events", [])]}


@edge.command()
@profile_option
@json_option
def status(profile_path: Path | None, as_json: bool) -> None:
    """Show the running service's model, rates and counters (exit 1 if none is running)."""
    from ptychoflow_edge.config import EdgeConfig
    from ptychoflow_edge.statusfile import fetch_http_status, read_status, running_status

    path = EdgeConfig.from_profile(load(profile_path)).status_file
    live = running_status(path)
    current = (fetch_http_status(live["http_url"]) if live and live.get("http_url") else None) or live
    if current is None:
        last = read_status(path)
        click.echo(f"no edge service running ({path}: {'last state ' + last['state'] if last else 'no status file'})")
        sys.exit(1)
    if as_json:
        print_json(_iso_times(current))
        return
    model = current["model"]
    c = current["counters"]
    click.echo(f"edge pid {current['pid']}  {current['http_url'] or '(no page)'}  stream {current['stream_address']}")
    click.echo(f"model    {model['version'] + ' on ' + model['provider'] if model else 'none yet'}")
    click.echo(f"frames   received {c['received']}  inferred {c['inferred']}  dropped {c['dropped']}  "
               f"malformed {c['malformed']}  queue {current['queue']['depth']}/{current['queue']['capacity']}")
    latency = current["latency_ms"]
    click.echo(f"rate     {current['fps']:.1f} frames/s  latency p50 {latency['p50']} ms  p99 {latency['p99']} ms")
