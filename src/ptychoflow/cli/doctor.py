"""`ptychoflow doctor`: one line per capability, so a 3 a.m. operator sees what is missing."""

from __future__ import annotations

from dataclasses import asdict

import click
from rich.markup import escape
from rich.table import Table

from ptychoflow.cli._common import console, json_option, print_json
from ptychoflow.doctor import MISSING, OK, run_checks

_STYLE = {OK: "green", MISSING: "yellow"}


@click.command()
@json_option
def doctor(as_json: bool) -> None:
    """Report what is installed and usable: torch, ptychi, tike, cupy, GPU, ONNX Runtime
    providers, Globus SDKs and credentials, a browser for the page tests.

    \b
    Examples:
      ptychoflow doctor
      ptychoflow doctor --json | jq '.[] | select(.status != "ok")'
    """
    checks = run_checks()
    if as_json:
        print_json([asdict(c) for c in checks])
        return
    table = Table(show_header=True, header_style="bold")
    table.add_column("component")
    table.add_column("status")
    table.add_column("detail", overflow="fold")
    for check in checks:
        table.add_row(check.name, f"[{_STYLE.get(check.status, 'red')}]{check.status}[/]", escape(check.detail))
    console().print(table)
