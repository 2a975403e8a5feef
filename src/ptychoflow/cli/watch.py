"""`ptychoflow watch`: run the acquisition watcher; `ptychoflow watch status`: read its journal."""

from __future__ import annotations

import importlib
from pathlib import Path

import click

from ptychoflow.cli._common import json_option, load, print_json, profile_option
from ptychoflow.profile import Profile


def _backend_from(profile: Profile, factory: str | None, start_engine: bool):  # noqa: ANN202
    """The profile's backend made ready (``Backend.prepare``), or one made by a
    `module:callable(profile)` (tests, integration)."""
    if factory:
        module, _, attr = factory.partition(":")
        return getattr(importlib.import_module(module), attr)(profile)
    from ptychoflow.local_site import prepare_local_site

    return prepare_local_site(profile, start_engine=start_engine)


@click.group(invoke_without_command=True)
@profile_option
@click.option("--backend", type=click.Choice(["local", "globus"]), help="Override the profile's backend.")
@click.option("--poll/--events", default=None, help="Poll the directory (NFS/GPFS) instead of file events.")
@click.option("--flow", "flow_path", type=click.Path(path_type=Path), help="Flow JSON to deploy (default: profile).")
@click.option("--no-engine", is_flag=True,
              help="Do not start or restart the local engine worker: something else supervises it (the "
                   "ptychoflow-engine systemd unit). The watcher still reports it when it is down.")
@click.option("--backend-factory", hidden=True, help="module:callable(profile) -> Backend (tests).")
@click.pass_context
def watch(ctx: click.Context, profile_path: Path | None, backend: str | None, poll: bool | None,
          flow_path: Path | None, no_engine: bool, backend_factory: str | None) -> None:
    """Watch the beamline directory; start one flow run per finished scan.

    On the local backend it also keeps the engine worker alive: it starts one if none runs and
    restarts it if it dies (unless --no-engine). Logs go to stderr and <state_dir>/watcher.log
    (`ptychoflow logs watcher`).

    \b
    Examples:
      ptychoflow watch --profile site/            # file events (local disks); Ctrl-C stops
      ptychoflow watch --poll                     # polling (NFS, GPFS)
      ptychoflow watch --no-engine                # under systemd, beside ptychoflow-engine.service
      ptychoflow watch status                     # what the journal says, and the engine
    """
    ctx.ensure_object(dict)
    ctx.obj["profile_path"] = profile_path
    if ctx.invoked_subcommand is not None:
        return
    from ptychoflow.watcher.service import WatcherOptions, acquisition_dir, run_watcher

    profile = load(profile_path)
    if backend:
        profile = profile.model_copy(update={"backend": backend})
    acquisition_dir(profile)  # before any engine worker is started for it
    options = WatcherOptions(flow_path=flow_path, poll=poll)
    watcher_backend = _backend_from(profile, backend_factory, start_engine=not no_engine)
    supervisor = watcher_backend.supervise_worker(restart=not no_engine)  # local: the engine worker
    click.echo(f"watching {profile.resolve(profile.beamline.path)} (journal in {profile.state_path}); "
               "Ctrl-C to stop", err=True)
    try:
        code = run_watcher(profile, watcher_backend, options)
    finally:
        if supervisor is not None:
            supervisor.stop()
    ctx.exit(code)


@watch.command("status")
@profile_option
@json_option
@click.option("--recent", default=10, show_default=True, help="How many recent scans to list.")
@click.pass_context
def status(ctx: click.Context, profile_path: Path | None, as_json: bool, recent: int) -> None:
    """Queued / running / done / failed counts, recent scans, complete-to-run latency, and
    whether the engine worker is up (exit 0 either way: read the words).

    \b
    Examples:
      ptychoflow watch status
      ptychoflow watch status --json --recent 3
    """
    from ptychoflow.backends import get_backend
    from ptychoflow.watcher.journal import JOURNAL_FILENAME, Journal
    from ptychoflow.watcher.status import empty_summary, render, summary

    profile = load(profile_path or ctx.obj.get("profile_path"))
    path = profile.state_path / JOURNAL_FILENAME
    if path.exists():
        journal = Journal(path, readonly=True)
        try:
            info = summary(journal, recent=recent)
        finally:
            journal.close()
    else:
        info = empty_summary(path)
    health = get_backend(profile).worker_health()
    info["engine"] = None if health is None else health.to_json()
    if as_json:
        print_json(info)
    else:
        click.echo(render(info))
