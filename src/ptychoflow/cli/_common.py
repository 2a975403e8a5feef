"""What every command shares: the --profile and --json options, profile and backend loading,
JSON input parsing and output, the console, run tables and live views."""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TypeVar

import click

from ptychoflow import clock
from ptychoflow.backends.base import RunInfo
from ptychoflow.errors import InputError
from ptychoflow.flowengine.failure import reason
from ptychoflow.names import printable

if TYPE_CHECKING:
    from ptychoflow.profile import Profile

F = TypeVar("F", bound=Callable[..., Any])

PROFILE_HELP = "Profile TOML or its directory (default: $PTYCHOFLOW_PROFILE, else ./ptychoflow.toml)."


def profile_option(command: F) -> F:
    """``--profile PATH`` for every command that takes a profile: passed as ``profile_path``."""
    return click.option("--profile", "profile_path", type=click.Path(path_type=Path), default=None, metavar="PATH",
                        help=PROFILE_HELP)(command)


def scan_options(command: F) -> F:
    """How to read a scan: ``--format``, ``--positions``, ``--frame-size``, ``--y-source``;
    passed as ``scan_format`` and ``read_options`` (a ``ptychoflow.scan.ReadOptions``)."""
    from ptychoflow.scan.reader import ReadOptions
    from ptychoflow.scan.registry import format_names

    def wrapper(*args: Any, positions: Path | None, frame_size: int | None, y_source: str, **kwargs: Any) -> Any:
        kwargs["read_options"] = ReadOptions(frame_size=frame_size, positions_file=positions, y_source=y_source)
        return command(*args, **kwargs)

    wrapper = click.option("--y-source", type=click.Choice(["interferometer", "encoder"]), default="interferometer",
                           show_default=True, help="Eiger/Velociprobe position file: which y column.")(wrapper)
    wrapper = click.option("--frame-size", type=click.IntRange(min=8), default=None,
                           help="Eiger/CXI: crop frames to this square about the beam centre [default: the largest].")(wrapper)
    wrapper = click.option("--positions", type=click.Path(dir_okay=False, path_type=Path), default=None,
                           help="Eiger: the position file [default: <prefix>_positions.txt beside the master].")(wrapper)
    wrapper = click.option("--format", "scan_format", type=click.Choice(format_names()), default="auto", show_default=True,
                           help="Scan layout; auto detects it.")(wrapper)
    wrapper.__name__, wrapper.__doc__ = command.__name__, command.__doc__
    return wrapper  # type: ignore[return-value]


def json_option(command: F) -> F:
    """``--json``: passed as ``as_json``."""
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")(command)


def load(profile_path: Path | None) -> Profile:
    """The profile from --profile, else $PTYCHOFLOW_PROFILE, else ./ptychoflow.toml."""
    from ptychoflow.profile import find_profile

    return find_profile(profile_path)


def load_if_any(profile_path: Path | None) -> Profile | None:
    """The profile when one is named (--profile, $PTYCHOFLOW_PROFILE) or lies here
    (./ptychoflow.toml); None for commands that also work without one."""
    from ptychoflow.profile import PROFILE_FILENAME

    if profile_path is None and not os.environ.get("PTYCHOFLOW_PROFILE") and not Path(PROFILE_FILENAME).exists():
        return None
    return load(profile_path)


def backend_for(profile_path: Path | None) -> Any:
    from ptychoflow.backends import get_backend

    return get_backend(load(profile_path))


def parse_input(text: str) -> dict[str, Any]:
    """``--input`` is inline JSON or ``@file.json``."""
    source = "--input"
    if text.startswith("@"):
        source = text[1:]
        try:
            text = Path(source).read_text()
        except FileNotFoundError:
            raise InputError(source, "(file)", "no such input file") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(source, "(json)", f"line {exc.lineno} col {exc.colno}: {exc.msg}") from None
    if not isinstance(value, dict):
        raise InputError(source, "(json)", "the flow input must be a JSON object")
    return value


def console(*, stderr: bool = False) -> Any:
    """A rich console for command output. On a terminal it fits the window; elsewhere (a pipe,
    a file, a log scraper) lines are never wrapped at 80 columns in the middle of a sentence."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty() or os.environ.get("COLUMNS"):
        return Console(stderr=stderr)
    return Console(stderr=stderr, width=UNWRAPPED_WIDTH)


UNWRAPPED_WIDTH = 4096  # wider than any line we print


def shown(text: object) -> str:
    """Text from data (labels, scan ids, errors) as a rich table cell: control characters
    escaped (``names.printable``) and rich markup taken literally."""
    from rich.markup import escape

    return escape(printable("" if text is None else text))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "…"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


STATUS_STYLE = {"SUCCEEDED": "green", "FAILED": "red", "ACTIVE": "yellow", "ENDED": "magenta", "INACTIVE": "dim"}


def failure_lines(run: RunInfo) -> list[str]:
    """The cause first: the failing state, the error type, the one-line reason; then where
    the run ended when that was a later state (a Fail state after a Catch)."""
    failure = run.cause()
    if failure is None:
        return []
    lines = [f"failed at {failure.line()}"]
    if run.error and not run.error.startswith(f"{failure.state}: ") and failure.state:
        lines.append(f"  then ended: {reason(run.error)}")
    lines.append("  (the whole cause: --json)")
    return [printable(line) for line in lines]  # an error quotes data: no control characters reach the terminal


def run_panel(run: RunInfo) -> Any:
    """A rich renderable: header line, why it failed (if it did), then the state timeline."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    style = STATUS_STYLE.get(run.status.value, "")
    header = Text.assemble(("run ", "bold"), printable(run.run_id), "  ", (run.status.value, f"bold {style}"),
                           f"  {printable(run.label)}" if run.label else "")
    cause = [Text(line, "bold red" if i == 0 else "red")
             for i, line in enumerate(failure_lines(run))]
    table = Table(box=None, pad_edge=False)
    for column in ("state", "status", "started", "duration", "error"):
        table.add_column(column, overflow="fold")
    for record in run.timeline:
        table.add_row(shown(record.name), Text(record.status, STATUS_STYLE.get(record.status, "")), clock.text(record.started),
                      _duration(record.duration if record.finished else time.time() - (record.started or time.time())),
                      shown((record.error or "")[:160]))
    parts: list[Any] = [header, *cause, table]
    if run.error and not cause:
        parts.append(Text(f"error: {printable(reason(run.error))}", "red"))
    if run.web_url:
        parts.append(Text(run.web_url, "blue"))
    return Group(*parts)


def profile_args(profile_path: Path | None) -> str:
    """The ``--profile`` part of a command we suggest, when the user named one."""
    return f" --profile {shlex.quote(str(profile_path))}" if profile_path else ""


def follow(backend: Any, run_id: str, *, profile_path: Path | None = None, stderr: bool = False) -> RunInfo:
    """Follow one run until it finishes or goes INACTIVE (a person must act), asked at the
    backend's own pace (a local store often, Globus Flows with a growing interval): a live
    view on a terminal (on stderr when stdout carries JSON); elsewhere (a log, a pipe) its
    timeline once, at the end.

    Ctrl-C stops following, not the run: it says so, prints how to follow or cancel it, and
    exits 130 (the shell's code for an interrupt).
    """
    from rich.live import Live

    out = console(stderr=stderr)
    try:
        if out.is_terminal:
            with Live(run_panel(backend.get_run(run_id)), console=out, refresh_per_second=4, transient=False) as live:
                return backend.wait_run(run_id, on_update=lambda run: live.update(run_panel(run)))
        run = backend.wait_run(run_id)
        out.print(run_panel(run))
        return run
    except KeyboardInterrupt:
        run = backend.get_run(run_id)
        where = f" at {run.current_state}" if run.current_state else ""
        extra = profile_args(profile_path)
        click.echo(f"\nstopped following; run {run.run_id} continues ({run.status.value}{where}).\n"
                   f"  follow it again: ptychoflow runs watch {run.run_id}{extra}\n"
                   f"  cancel it:       ptychoflow runs cancel {run.run_id}{extra}", err=True)
        raise SystemExit(130) from None


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def emit(data: Any, as_json: bool, text: str) -> None:
    """`data` as JSON with --json, else the human-readable `text`."""
    if as_json:
        print_json(data)
    else:
        click.echo(text)
