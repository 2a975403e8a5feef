"""``ptychoflow flows``: validate, inspect and run flow definitions (Globus Flows JSON)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ptychoflow.cli._common import (
    backend_for, console, follow, json_option, load, parse_input, print_json, profile_args, profile_option,
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
    """Flow definitions: validate them, show them, build their input, run them.

    \b
    Examples:
      ptychoflow flows validate reconstruct_and_train
      ptychoflow flows show reconstruct
      ptychoflow flows input reconstruct --scan site/acquisition/scan_0001.h5 > input.json   # to edit
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
    Examples:
      ptychoflow flows validate                   # every bundled flow
      ptychoflow flows show reconstruct --json | jq .definition > my_flow.json   # a copy to edit
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
    from rich.markup import escape
    from rich.table import Table

    from ptychoflow.flowengine.definition import action_url, load_definition, load_schema, successors

    path = _resolve(flow)
    definition, schema = load_definition(path), load_schema(path)
    if as_json:
        print_json({"path": str(path), "definition": definition, "input_schema": schema})
        return
    out = console()
    out.print(f"[bold]{escape(path.stem)}[/bold]  {escape(definition.get('Comment', ''))}\n{escape(str(path))}")
    table = Table("state", "type", "action / rule", "next")
    for name, state in definition["States"].items():
        action = (action_url(state) or "a registered API (Handler)") if state["Type"] == "Action" else ""
        if state["Type"] == "Choice":
            action = "; ".join(json.dumps({k: v for k, v in r.items() if k != "Next"}) for r in state["Choices"])
        marker = " (start)" if name == definition["StartAt"] else ""
        table.add_row(*map(escape, (name + marker, state["Type"], action, ", ".join(successors(state)) or "(end)")))
    out.print(table)
    required = schema.get("required", [])
    out.print(escape("input fields: " + ", ".join(f"{k}{'*' if k in required else ''}"
                                                  for k in schema.get("properties", {})) + "   (* required)"))


def _profile_input(profile: Any, flow: str, scan: str | None, assignments: tuple[str, ...], *,
                   scan_must_exist: bool = True) -> dict[str, Any]:
    """The input a bundled flow gets from the profile (as the watcher builds it). A dry run
    may name a scan that is not there yet: only the input's shape is checked."""
    from ptychoflow.flow_inputs import SCAN_FLOW_INPUTS, deploy_model_input, scan_flow_input, scan_in_beamline

    name = Path(flow).stem
    if name in SCAN_FLOW_INPUTS:
        if scan is None:
            raise click.UsageError(f"{name} runs on one scan: pass --scan FILE (or --input for full control)")
        where = scan_in_beamline(profile, scan, must_exist=scan_must_exist)
        return scan_flow_input(profile, name, where)  # type: ignore[return-value]
    if scan is not None:
        raise click.UsageError(f"--scan: {name} does not run on a scan; pass --input JSON|@FILE")
    if name == "deploy_model":
        from ptychoflow.cli.models import best_or_set_version, ensure_staged

        version = best_or_set_version(profile, assignments)
        ensure_staged(profile, version)
        return deploy_model_input(profile, version)
    raise click.UsageError(f"{name}: no input can be built from the profile; pass --input JSON|@FILE")


def _input_options(command: Any) -> Any:
    """--scan, --set and --input: where a run's input comes from (`flows run`, `flows input`)."""
    for option in reversed([
        click.option("--scan", "scan", metavar="FILE", default=None,
                     help="Build the input from the profile for this scan, as the watcher does."),
        click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
                     help="Change one input field, e.g. policy.iterations=20 (repeatable; dotted keys; checked against "
                          "the flow's input schema)."),
        click.option("--input", "input_text", default=None, metavar="JSON|@FILE",
                     help="The whole input, inline or @file.json (full control; --set still applies)."),
    ]):
        command = option(command)
    return command


def _build_input(profile: Any, flow: str, path: Path, scan: str | None, assignments: tuple[str, ...],
                 input_text: str | None, *, scan_must_exist: bool = True) -> dict[str, Any]:
    from ptychoflow.flow_overrides import apply_overrides
    from ptychoflow.flowengine.definition import load_schema

    if input_text is not None and scan is not None:
        raise click.UsageError("--scan builds the input from the profile and --input gives all of it: pass one")
    body = (parse_input(input_text) if input_text is not None
            else _profile_input(profile, flow, scan, assignments, scan_must_exist=scan_must_exist))
    return apply_overrides(body, assignments, load_schema(path))


@flows.command("input")
@click.argument("flow")
@_input_options
@profile_option
def input_(flow: str, scan: str | None, assignments: tuple[str, ...], input_text: str | None,
           profile_path: Path | None) -> None:
    """Print the input `flows run` would send to FLOW, as JSON: to read, or to edit and pass
    back with --input @FILE.

    \b
    Example:
      ptychoflow flows input reconstruct_and_train --scan scan_0002.h5 --set policy.train_epochs=5
    """
    from ptychoflow.backends import get_backend

    profile = load(profile_path)
    get_backend(profile).prepare(start_worker=False)  # local: functions registered (the input names them)
    print_json(_build_input(profile, flow, _resolve(flow), scan, assignments, input_text))


@flows.command()
@click.argument("flow")
@_input_options
@click.option("--label", default="", help="Run label [default: the scan file, with --scan].")
@click.option("--tag", "tags", multiple=True, help="Run tag (repeatable).")
@click.option("--dry-run", is_flag=True,
              help="Deploy if changed, then ask the backend whether it accepts the input (Globus Flows' validate_run); "
                   "start nothing.")
@click.option("--wait", is_flag=True,
              help="Follow the run live until it finishes or waits for a person (Ctrl-C stops following, not the run).")
@json_option
@profile_option
def run(flow: str, scan: str | None, assignments: tuple[str, ...], input_text: str | None, label: str,
        tags: tuple[str, ...], dry_run: bool, wait: bool, as_json: bool, profile_path: Path | None) -> None:
    """Deploy FLOW (if changed) and start a run; prints the run id at once.

    The input comes from the profile (--scan FILE for the scan flows; deploy_model ships the
    registry's best model unless --set version=V), or from --input. --set changes single
    fields of either (`flows input` prints the result without running). With --wait it
    follows the run and exits 1 unless it succeeds; with --json, stdout carries only the
    run as JSON.

    \b
    Examples:
      ptychoflow flows run reconstruct --scan site/acquisition/scan_0001.h5 --set policy.iterations=5 --wait
      ptychoflow flows run reconstruct_and_train --scan scan_0002.h5 --dry-run
      ptychoflow flows run reconstruct_and_train --scan scan_0002.h5 --label "scan 2" --json
      ptychoflow flows run deploy_model --set version=v0001     # ship a registry version to the edge
      ptychoflow flows run reconstruct --input @input.json --label scan_0001
    """
    from ptychoflow.backends import get_backend

    profile = load(profile_path)
    backend = get_backend(profile)
    backend.prepare(start_worker=False)  # local: functions registered (the input names them)
    path = _resolve(flow)
    body = _build_input(profile, flow, path, scan, assignments, input_text, scan_must_exist=not dry_run)
    deployed = backend.deploy_flow(path)
    if dry_run:
        backend.validate_run(deployed, body)
        click.echo(f"ok: the {backend.name} backend accepts this input for {deployed.title} ({deployed.flow_id}); "
                   "nothing started")
        return
    info = backend.start_run(deployed, body, label=label or (Path(scan).name if scan else ""), tags=list(tags))
    backend.ensure_worker()  # local: the engine worker that executes it
    if wait:
        info = follow(backend, info.run_id, profile_path=profile_path, stderr=as_json)
    if as_json:
        print_json(info.to_json())
    elif not wait:
        click.echo(f"{info.run_id}  {info.status.value}  (follow with: ptychoflow runs watch {info.run_id}"
                   f"{profile_args(profile_path)})")
    if wait and info.status.value != "SUCCEEDED":
        failure = info.cause()
        why = f" at {failure.line()}" if failure else f": {info.error}" if info.error else ""
        click.secho(f"error: run {info.run_id} {info.status.value}{why}", fg="red", err=True)
        raise SystemExit(1)
