"""``ptychoflow runs``: list, inspect, follow, cancel and resume flow runs (any backend)."""

from __future__ import annotations

from pathlib import Path

import click

from ptychoflow.cli._common import (
    STATUS_STYLE, backend_for, failure_lines, follow, json_option, print_json, profile_option, run_panel,
    run_to_dict, shown,
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
        table.add_row(shown(r.run_id[:8]), f"[{style}]{r.status.value}[/]", shown(r.current_state), shown(r.label),
                      created, duration)
    table.caption = "ids are shortened; any unique prefix works (--json has the full ids)"
    Console().print(table)


@runs.command()
@click.argument("run_id")
@json_option
@profile_option
def show(run_id: str, as_json: bool, profile_path: Path | None) -> None:
    """One run: status, why it failed (if it did: state, error, reason), and its state timeline.

    \b
    Example:
      ptychoflow runs show 3f2a --json
    """
    from rich.console import Console

    info = backend_for(profile_path).get_run(run_id)
    if as_json:
        print_json(run_to_dict(info))
    else:
        Console(soft_wrap=True).print(run_panel(info))  # long reasons stay whole lines (grep)


@runs.command()
@click.argument("run_id")
@json_option
@profile_option
def logs(run_id: str, as_json: bool, profile_path: Path | None) -> None:
    """A run's event log, oldest first (a failed run's cause first of all).

    \b
    Example:
      ptychoflow runs logs 3f2a
    """
    from datetime import datetime

    from ptychoflow.names import printable

    backend = backend_for(profile_path)
    entries = backend.get_run_log(run_id)
    if as_json:
        print_json(entries)
        return
    for line in failure_lines(backend.get_run(run_id)):  # the cause first
        click.secho(line, fg="red", err=False)
    for entry in entries:
        try:
            when = datetime.fromisoformat(str(entry.get("time"))).astimezone().strftime("%H:%M:%S.%f")[:-3]
        except ValueError:
            when = str(entry.get("time"))
        click.echo(f"{when}  {entry['code']:<24} {printable(entry['description'])}")


@runs.command()
@click.argument("run_id")
@profile_option
def watch(run_id: str, profile_path: Path | None) -> None:
    """Follow a run live until it finishes or goes INACTIVE (exit 1 unless it succeeds).

    \b
    Example:
      ptychoflow runs watch 3f2a
    """
    backend = backend_for(profile_path)
    if backend.get_run(run_id).status.value == "ACTIVE":
        backend.ensure_worker()  # a local run needs its engine worker alive to move on
    info = follow(backend, run_id)
    if info.status.value != "SUCCEEDED":
        if info.error:
            click.secho(info.error, fg="red", err=True)
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
@click.option("--no-check", is_flag=True,
              help="Resume without first checking that what the run waits for is granted (after a session update).")
@profile_option
def resume(run_id: str, no_check: bool, profile_path: Path | None) -> None:
    """Continue a run from its last committed state.

    An INACTIVE Globus run waits for something only you can give; its details say what (a
    consent, or a login with a given identity, policy or MFA). A missing consent is checked
    first: if it is still missing, the exact `ptychoflow login` line is printed and nothing is
    resumed. A session requirement cannot be checked from here: log in as printed, then resume
    with --no-check. A local run is picked up by the engine worker, started if needed.

    \b
    Examples:
      ptychoflow runs resume 3f2a
      ptychoflow runs resume 3f2a --no-check      # after `ptychoflow login --identity ... --force`
    """
    backend = backend_for(profile_path)
    info = backend.resume_run(run_id, check=not no_check)
    if info.status.value != "ACTIVE":
        click.echo(f"{info.run_id}  {info.status.value}: finished runs cannot resume")
        return
    pid = backend.ensure_worker()
    where = f" at {info.current_state}" if info.current_state else ""
    click.echo(f"{info.run_id}  ACTIVE{where}" + (f"  (engine worker pid {pid})" if pid else "")
               + (f"  {info.web_url}" if info.web_url else ""))
