"""``ptychoflow engine``: the local engine worker process (serve, status, stop)."""

from __future__ import annotations

from pathlib import Path

import click

from ptychoflow.cli._common import load, profile_option


@click.group()
def engine() -> None:
    """The local flow engine worker that executes recorded runs.

    \b
    `flows run`, `runs resume`, `watch` and `demo` start a detached worker when none is
    alive; run one in the foreground to see its log:
      ptychoflow engine serve
      ptychoflow engine status
      ptychoflow engine stop
    """


@engine.command()
@profile_option
def serve(profile_path: Path | None) -> None:
    """Run the engine worker in the foreground until Ctrl-C / SIGTERM.

    \b
    Example:
      ptychoflow engine serve --profile ./site/ptychoflow.toml
    """
    import logging

    from ptychoflow.flowengine.providers.base import EngineEnv
    from ptychoflow.flowengine.worker import serve as serve_engine
    from ptychoflow.flowengine.worker import write_env

    logging.getLogger("ptychoflow").setLevel(logging.INFO)
    env = EngineEnv.from_profile(load(profile_path))
    write_env(env)
    click.echo(f"engine worker serving {env.state_dir} (Ctrl-C to stop)")
    serve_engine(env.state_dir)


@engine.command()
@profile_option
def status(profile_path: Path | None) -> None:
    """Is a worker alive for this profile, and how many runs are active?

    \b
    Example:
      ptychoflow engine status
    """
    from ptychoflow.flowengine.store import Store
    from ptychoflow.flowengine.worker import engine_pid

    state_dir = load(profile_path).state_path
    pid = engine_pid(state_dir)
    active = len(Store(state_dir).active_run_ids())
    click.echo(f"engine worker: {'running, pid ' + str(pid) if pid else 'not running'}; active runs: {active}")


@engine.command()
@profile_option
def stop(profile_path: Path | None) -> None:
    """Stop the worker gracefully (active runs resume when a worker starts again).

    \b
    Example:
      ptychoflow engine stop
    """
    from ptychoflow.flowengine.worker import stop_engine

    pid = stop_engine(load(profile_path).state_path)
    click.echo(f"stopped engine worker {pid}" if pid else "no engine worker was running")
