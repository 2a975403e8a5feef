"""``ptychoflow flows``: validate, inspect and run flow definitions (Globus Flows JSON)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ptychoflow.cli._common import (
    backend_for, follow, json_option, load, parse_input, print_json, profile_option, run_to_dict,
)


def _resolve(flow: str) -> Path:
    from ptychoflow.errors import FlowDefinitionError
    from ptychoflow.resources import flow_path

    try:
        return flow_path(flow)
    except FileNotFoundError as exc:
        raise FlowDefinitionError(str(exc)) from None


@click.group()
def flows() -> None:
    """Flow definitions: validate them, show them, run them.

    \b
    Examples:
      ptychoflow flows validate reconstruct_and_train
      ptychoflow flows show reconstruct
      ptychoflow flows run reconstruct --input @input.json --wait
      ptychoflow flows deploy                     # create/update them on the profile's backend
    """


def _bundled_flow_paths() -> list[Path]:
    from ptychoflow.resources import bundled_flows

    return bundled_flows()


@flows.command()
@click.argument("flow", nargs=-1, required=False)
@json_option
@profile_option
def deploy(flow: tuple[str, ...], as_json: bool, profile_path: Path | None) -> None:
    """Create or update FLOW (all bundled flows if omitted) on the profile's backend.

    Idempotent: a flow whose definition and input schema are unchanged is left alone; on
    Globus a changed one is updated in place (or recreated if it was deleted), and a
    profile's pinned `globus.flow_id` is always updated, never recreated.

    \b
    Examples:
      ptychoflow flows deploy                          # every bundled flow
      ptychoflow flows deploy reconstruct_and_train --profile site/
    """
    backend = backend_for(profile_path)
    deployed = [backend.deploy_flow(path) for path in ([_resolve(name) for name in flow] or _bundled_flow_paths())]
    if as_json:
        print_json([{"flow_id": d.flow_id, "title": d.title, "checksum": d.checksum} for d in deployed])
        return
    for d in deployed:
        click.echo(f"{d.title:<24} {d.flow_id}  sha256 {d.checksum[:12]}")


@flows.command()
@click.argument("flow", nargs=-1, required=False)
@profile_option
def validate(flow: tuple[str, ...], profile_path: Path | None) -> None:
    """Check FLOW (a bundled name or a .json path; all bundled flows if omitted) as the service would.

    \b
    Example:
      ptychoflow flows validate my_flow.json
    """
    from ptychoflow.flowengine.definition import load_definition, load_schema
    from ptychoflow.errors import FlowDefinitionError

    paths = [_resolve(name) for name in flow] or _bundled_flow_paths()
    problems = []
    for path in paths:
        try:
            load_definition(path)
            load_schema(path)
            click.echo(f"ok  {path}")
        except FlowDefinitionError as exc:
            problems.append(str(exc))
    if problems:
        raise FlowDefinitionError("\n".join(problems))


@flows.command()
@click.argument("flow")
@json_option
@profile_option
def show(flow: str, as_json: bool, profile_path: Path | None) -> None:
    """Print FLOW's states (type, action, next) and its input fields.

    \b
    Example:
      ptychoflow flows show reconstruct_and_train
    """
    from rich.console import Console
    from rich.table import Table

    from ptychoflow.flowengine.definition import action_url, load_definition, load_schema, successors

    path = _resolve(flow)
    definition, schema = load_definition(path), load_schema(path)
    if as_json:
        print_json({"path": str(path), "definition": definition, "input_schema": schema})
        return
    console = Console()
    console.print(f"[bold]{path.stem}[/bold]  {definition.get('Comment', '')}\n{path}")
    table = Table("state", "type", "action / rule", "next")
    for name, state in definition["States"].items():
        action = (action_url(state) or "a registered API (Handler)") if state["Type"] == "Action" else ""
        if state["Type"] == "Choice":
            action = "; ".join(json.dumps({k: v for k, v in r.items() if k != "Next"}) for r in state["Choices"])
        marker = " (start)" if name == definition["StartAt"] else ""
        table.add_row(name + marker, state["Type"], action, ", ".join(successors(state)) or "(end)")
    console.print(table)
    required = schema.get("required", [])
    console.print("input fields: " + ", ".join(f"{k}{'*' if k in required else ''}"
                                               for k in schema.get("properties", {})) + "   (* required)")


@flows.command()
@click.argument("flow")
@click.option("--input", "input_text", default=None, metavar="JSON|@FILE", help="Flow input, inline or @file.json.")
@click.option("--scan", "scan", default=None, metavar="FILE",
              help="Build the input from the profile for this scan (a file in the beamline directory).")
@click.option("--label", default="", help="Run label.")
@click.option("--tag", "tags", multiple=True, help="Run tag (repeatable).")
@click.option("--dry-run", is_flag=True,
              help="Deploy if changed, then ask the backend whether it accepts the input (Globus Flows' validate_run); start nothing.")
@click.option("--wait", is_flag=True, help="Follow the run live until it finishes (or waits for a person).")
@json_option
@profile_option
def run(flow: str, input_text: str | None, scan: str | None, label: str, tags: tuple[str, ...], dry_run: bool,
        wait: bool, as_json: bool, profile_path: Path | None) -> None:
    """Deploy FLOW (if changed) and start a run; prints the run id at once.

    \b
    Examples:
      ptychoflow flows run reconstruct_and_train --scan scan_0001.h5 --dry-run
      ptychoflow flows run reconstruct_and_train --scan scan_0001.h5 --wait
      ptychoflow flows run reconstruct --input @scan_0001.json --label scan_0001
    """
    from ptychoflow.backends import get_backend

    if (input_text is None) == (scan is None):
        raise click.UsageError("give the flow input with --input JSON|@FILE, or --scan FILE to build it from the profile")
    profile = load(profile_path)
    backend = get_backend(profile)
    backend.prepare(start_worker=not dry_run)  # local: functions registered (their ids go in the input), worker up
    body = parse_input(input_text) if input_text is not None else _scan_input(profile, flow, scan)
    deployed = backend.deploy_flow(_resolve(flow))
    if dry_run:
        backend.validate_run(deployed, body)
        click.echo(f"ok: the {backend.name} backend accepts this input for {deployed.title} ({deployed.flow_id}); nothing started")
        return
    info = backend.start_run(deployed, body, label=label or (scan or ""), tags=list(tags))
    if wait:
        info = follow(backend, info.run_id)
    if as_json:
        print_json(run_to_dict(info))
    elif not wait:
        click.echo(f"{info.run_id}  {info.status.value}  (follow with: ptychoflow runs watch {info.run_id})")
    if wait and info.status.value != "SUCCEEDED":
        if info.error:
            click.secho(info.error, fg="red", err=True)
        raise SystemExit(1)


def _scan_input(profile, flow: str, scan: str) -> dict:
    """The bundled flow's input for one scan, as the watcher would send it."""
    from ptychoflow.errors import InputError
    from ptychoflow.flow_inputs import scan_flow_input

    body = scan_flow_input(profile, _resolve(flow).stem, scan)
    if body is None:
        raise InputError(_resolve(flow), "--scan", "this flow's input cannot be built from a scan; pass --input")
    return body
