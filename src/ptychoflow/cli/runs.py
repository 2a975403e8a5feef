"""``ptychoflow runs``: list, inspect, follow, cancel and resume flow runs (any backend)."""

from __future__ import annotations

from pathlib import Path

import click

from ptychoflow.cli._common import (
    STATUS_STYLE, backend_for, follow, json_option, load, print_json, profile_option, run_panel, run_to_dict,
)


@click.group()
def runs() -> None:
    """Flow runs: list, show, logs, watch, cancel, resume.

    \b
    Examples:
      ptychoflow runs list
      ptychoflow runs show 3f2a        # an id prefix is enough
      ptychoflow runs watch 3f2a
      ptychoflow runs list --json | jq '.[].status'
    """


@runs.command("list")
@click.option("--limit", default=20, show_default=True, help="How many recent runs.")
@json_option
@profile_option
def list_(limit: int, as_json: bool, profile_path: Path | None) -> None:
    """Recent runs, newest first.

    \b
    Example:
      ptychoflow runs list --limit 5
    """
    from datetime import datetime

    from rich.console import Console
    from rich.table import Table

    found = backend_for(profile_path).list_runs(limit=limit)
    if as_json:
        print_json([run_to_dict(r) for r in found])
        return
    table = Table("run", "status", "state", "label", "created", "duration")
    for r in found:
        duration = f"{r.completed - r.created:.1f} s" if r.completed and r.created else ""
        created = datetime.fromtimestamp(r.created).strftime("%m-%d %H:%M:%S") if r.created else ""
        style = STATUS_STYLE.get(r.status.value, "")
        table.add_row(r.run_id[:8], f"[{style}]{r.status.value}[/]", r.current_state or "", r.label, created, duration)
    table.caption = "ids are shortened; any unique prefix works (--json has the full ids)"
    Console().print(table)


@runs.command()
@click.argument("run_id")
@json_option
@profile_option
def show(run_id: str, as_json: bool, profile_path: Path | None) -> None:
    """One run: status and state timeline (name, status, duration).

    \b
    Example:
      ptychoflow runs show 3f2a --json
    """
    from rich.console import Console

    info = backend_for(profile_path).get_run(run_id)
    if as_json:
        print_json(run_to_dict(info))
    else:
        Console().print(run_panel(info))


@runs.command()
@click.argument("run_id")
@json_option
@profile_option
def logs(run_id: str, as_json: bool, profile_path: Path | None) -> None:
    """A run's event log, oldest first.

    \b
    Example:
      ptychoflow runs logs 3f2a
    """
    from datetime import datetime

    entries = backend_for(profile_path).get_run_log(run_id)
    if as_json:
        print_json(entries)
        return
    for entry in entries:
        try:
            when = datetime.fromisoformat(str(entry.get("time"))).astimezone().strftime("%H:%M:%S.%f")[:-3]
        except ValueError:
            when = str(entry.get("time"))
        click.echo(f"{when}  {entry['code']:<24} {entry['description']}")


@runs.command()
@click.argument("run_id")
@profile_option
def watch(run_id: str, profile_path: Path | None) -> None:
    """Follow a run live until it finishes (exit 1 unless it succeeds).

    \b
    Example:
      ptychoflow runs watch 3f2a
    """
    from ptychoflow.backends import get_backend

    profile = load(profile_path)
    backend = get_backend(profile)
    if profile.backend == "local" and backend.get_run(run_id).status.value == "ACTIVE":
        from ptychoflow.flowengine.worker import engine_pid

        if engine_pid(profile.state_path) is None:
            click.secho(f"note: no engine worker is running for {profile.state_path}; "
                        f"start one with `ptychoflow runs resume {run_id}`", fg="yellow", err=True)
    info = follow(lambda: backend.get_run(run_id))
    if info.status.value != "SUCCEEDED":
        raise SystemExit(1)


@runs.command()
@click.argument("run_id")
@profile_option
def cancel(run_id: str, profile_path: Path | None) -> None:
    """Cancel an active run.

    \b
    Example:
      ptychoflow runs cancel 3f2a
    """
    info = backend_for(profile_path).cancel_run(run_id)
    click.echo(f"{info.run_id}  {info.status.value}")


@runs.command()
@click.argument("run_id")
@profile_option
def resume(run_id: str, profile_path: Path | None) -> None:
    """Continue a run from its last committed state (starts the engine worker if needed).

    \b
    Example:
      ptychoflow runs resume 3f2a
    """
    from ptychoflow.backends import get_backend

    profile = load(profile_path)
    backend = get_backend(profile)
    if not hasattr(backend, "resume_run"):
        from ptychoflow.errors import PtychoflowError

        raise PtychoflowError(f"the {profile.backend} backend resumes runs by itself; nothing to do")
    info = backend.resume_run(run_id)
    if info.status.value == "ACTIVE" and profile.backend == "local":  # Globus runs on the service
        from ptychoflow.flowengine.worker import ensure_engine_running

        pid = ensure_engine_running(profile)
        click.echo(f"{info.run_id}  ACTIVE at {info.current_state}  (engine worker pid {pid})")
    elif info.status.value == "ACTIVE":
        click.echo(f"{info.run_id}  ACTIVE" + (f"  {info.web_url}" if info.web_url else ""))
    else:
        click.echo(f"{info.run_id}  {info.status.value}: finished runs cannot resume")
