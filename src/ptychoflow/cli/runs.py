"""``ptychoflow runs``: list, inspect, follow, cancel and resume flow runs (any backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ptychoflow import clock
from ptychoflow.cli._common import (
    STATUS_STYLE, backend_for, console, failure_lines, follow, json_option, print_json, profile_option, run_panel,
)
from ptychoflow.names import printable


def engine_banner(backend: Any) -> None:
    """On stderr, when the local engine worker is down or stalled: runs that look ACTIVE are
    not moving, and nothing else on screen would say so."""
    health = backend.worker_health()
    if health is not None and health.state in ("down", "stalled") and (health.active_runs or health.state == "stalled"):
        click.secho(f"warning: engine worker {health.summary()}", fg="red", bold=True, err=True)


@click.group()
def runs() -> None:
    """Flow runs: list, show, logs, watch, cancel, resume.

    \b
    A run is named by its id or any unique prefix of it (`runs list` shows 8 characters).

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
    """Recent runs, newest first; a failed run shows the state it failed in. A banner on stderr
    says when the engine worker is down or stalled (its ACTIVE runs are then not moving).

    \b
    Example:
      ptychoflow runs list --limit 5
    """
    from rich.table import Table
    from rich.text import Text

    backend = backend_for(profile_path)
    found = backend.list_runs(limit=limit)
    engine_banner(backend)
    if as_json:
        print_json([r.to_json() for r in found])
        return
    if not found:
        click.echo("no runs yet (`ptychoflow flows run` or `ptychoflow watch` start them)")
        return
    table = Table("run", "status", "state", "label", "created", "duration")
    for r in found:
        duration = f"{r.completed - r.created:.1f} s" if r.completed and r.created else ""
        failure = r.cause()
        state = f"{failure.state} (failed)" if failure and failure.state else r.current_state or ""
        table.add_row(printable(r.run_id[:8]), Text(r.status.value, STATUS_STYLE.get(r.status.value, "")),
                      Text(printable(state)), Text(printable(r.label or "")), clock.text(r.created, ""), duration)
    out = console()
    out.print(table)
    out.print("ids are shortened; any unique prefix works (--json has the full ids)", style="dim")


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
    info = backend_for(profile_path).get_run(run_id)
    if as_json:
        print_json(info.to_json())
    else:
        console().print(run_panel(info))  # off a terminal never wrapped: long reasons stay whole lines (grep)


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
    backend = backend_for(profile_path)
    entries = backend.get_run_log(run_id)
    if as_json:
        print_json(entries)
        return
    for line in failure_lines(backend.get_run(run_id)):  # the cause first
        click.secho(line, fg="red", err=False)
    for entry in entries:
        click.echo(f"{clock.text_from_iso(str(entry.get('time')))}  {entry['code']:<24} {printable(entry['description'])}")


@runs.command()
@click.argument("run_id")
@profile_option
def watch(run_id: str, profile_path: Path | None) -> None:
    """Follow a run live until it finishes or goes INACTIVE (exit 1 unless it succeeds; Ctrl-C
    stops following, not the run).

    \b
    Example:
      ptychoflow runs watch 3f2a
    """
    backend = backend_for(profile_path)
    if backend.get_run(run_id).status.value == "ACTIVE":
        backend.ensure_worker()  # a local run needs its engine worker alive to move on
    info = follow(backend, run_id, profile_path=profile_path)
    if info.status.value != "SUCCEEDED":
        failure = info.cause()
        why = f" at {failure.line()}" if failure else f": {info.error}" if info.error else ""
        click.secho(f"error: run {info.run_id} {info.status.value}{why}", fg="red", err=True)
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
