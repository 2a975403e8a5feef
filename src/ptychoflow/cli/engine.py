"""``ptychoflow engine``: the local engine worker process (serve, status, stop)."""

from __future__ import annotations

from pathlib import Path

import click

from ptychoflow.cli._common import emit, json_option, load, profile_option


@click.group()
def engine() -> None:
    """The local flow engine worker that executes recorded runs.

    \b
    `flows run`, `runs resume`, `watch`, `dashboard` and `demo` start a detached worker
    when none is alive (and `watch` and `dashboard` restart it if it dies); under systemd,
    ptychoflow-engine.service runs it. To see its log in a terminal instead:
      ptychoflow engine status
      ptychoflow engine stop                      # runs pause at their last committed state
      ptychoflow engine serve                     # in the foreground; Ctrl-C stops it
    """


@engine.command()
@profile_option
@click.option("--wait", "wait_for_lock", is_flag=True,
              help="If another worker serves this state directory, wait and take over when it ends, instead of "
                   "exiting (what the systemd unit does: it never fights another worker).")
def serve(profile_path: Path | None, wait_for_lock: bool) -> None:
    """Run the engine worker in the foreground until Ctrl-C / SIGTERM; it logs to stderr and
    to <state_dir>/engine.log (`ptychoflow logs engine`).

    \b
    Example:
      ptychoflow engine serve --profile ./site/ptychoflow.toml
    """
    from ptychoflow.flowengine.providers.base import EngineEnv
    from ptychoflow.flowengine.worker import serve as serve_engine
    from ptychoflow.flowengine.worker import write_env

    profile = load(profile_path)
    if profile.backend != "local":  # the engine unit of a globus deployment: nothing to do, not a failure
        click.echo(f"the {profile.backend} backend runs flows on its service: no local engine worker is needed",
                   err=True)
        return
    env = EngineEnv.from_profile(profile)
    write_env(env)
    click.echo(f"engine worker serving {env.state_dir} (Ctrl-C to stop)", err=True)
    serve_engine(env.state_dir, wait_for_lock=wait_for_lock)


@engine.command()
@profile_option
@json_option
def status(profile_path: Path | None, as_json: bool) -> None:
    """Is a worker alive (and making progress) for this profile, and how many runs wait on it?

    \b
    Example:
      ptychoflow engine status --json
    """
    from ptychoflow.backends import get_backend

    profile = load(profile_path)
    health = get_backend(profile).worker_health()
    if health is None:
        emit({"backend": profile.backend, "engine": None}, as_json,
             f"the {profile.backend} backend runs flows on its service: no local engine worker")
        return
    emit(health.to_json(), as_json, f"engine worker {health.summary()}")


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
