"""Root of the ``ptychoflow`` CLI.

Each subcommand lives in its own module, imported when it is used. Command modules import
optional dependencies (torch, tike, globus) inside their functions, so a missing one only
affects the commands that need it. A module listed here that cannot be imported is a broken
installation: it fails loudly, naming the command and the module, never silently disappears.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

from ptychoflow import __version__
from ptychoflow.errors import PtychoflowError
from ptychoflow.names import printable, printable_handler

# name -> "module:attribute" of a click command or group.
SUBCOMMANDS: dict[str, str] = {
    "init": "ptychoflow.cli.init_cmd:init",
    "doctor": "ptychoflow.cli.doctor:doctor",
    "beamline": "ptychoflow.cli.beamline:beamline",
    "reconstruct": "ptychoflow.cli.reconstruct:reconstruct",
    "show": "ptychoflow.cli.products:show",
    "export": "ptychoflow.cli.products:export",
    "flows": "ptychoflow.cli.flows:flows",
    "runs": "ptychoflow.cli.runs:runs",
    "functions": "ptychoflow.cli.functions:functions",
    "engine": "ptychoflow.cli.engine:engine",
    "login": "ptychoflow.cli.auth:login",
    "logout": "ptychoflow.cli.auth:logout",
    "whoami": "ptychoflow.cli.auth:whoami",
    "endpoints": "ptychoflow.cli.endpoints:endpoints",
    "preflight": "ptychoflow.cli.preflight:preflight",
    "watch": "ptychoflow.cli.watch:watch",
    "models": "ptychoflow.cli.models:models",
    "train": "ptychoflow.cli.train:train",
    "edge": "ptychoflow.cli.edge:edge",
    "demo": "ptychoflow.cli.demo:demo",
    "dashboard": "ptychoflow.cli.dashboard:dashboard",
    "logs": "ptychoflow.cli.logs:logs",
}


class LazyGroup(click.Group):
    """A click group whose subcommands live in their own modules, imported on use."""

    def __init__(self, *args, lazy: dict[str, str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self._lazy)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self._lazy:
            return None  # click answers "No such command" with the list
        module_name, attr = self._lazy[name].split(":")
        try:
            command = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise PtychoflowError(f"command {name!r} is broken: cannot load {module_name}:{attr} ({exc}); "
                                  "reinstall ptychoflow") from exc
        if not isinstance(command, click.Command):
            raise PtychoflowError(f"command {name!r} is broken: {module_name}:{attr} is not a click command")
        return command


@click.group(
    cls=LazyGroup,
    lazy=SUBCOMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="ptychoflow")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """Automated X-ray ptychography: watch scans, run flows, reconstruct, train, infer live.

    \b
    Quick start (local backend, no Globus account, no GPU):
      ptychoflow init ./site                      # write a commented local profile
      ptychoflow beamline simulate --scans 2 --object-size 128 --out ./site/acquisition   # two small scans
      ptychoflow reconstruct ./site/acquisition/scan_0001.h5 --iterations 20
      ptychoflow watch --profile ./site           # one flow run per finished scan (Ctrl-C to stop)
      ptychoflow runs list --profile ./site
      ptychoflow doctor                           # what is installed and usable here

    Every command takes --help with examples. Commands that read a profile take --profile
    DIR, or find it in $PTYCHOFLOW_PROFILE or ./ptychoflow.toml.
    """
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    logging.basicConfig(level=level, handlers=[printable_handler(logging.StreamHandler())])


def error_line(message: str) -> None:
    """The one style of every error the CLI prints: ``error: ...`` on stderr, red on a terminal;
    one line, whatever control characters the message quotes from data (``names.printable``)."""
    click.secho(f"error: {printable(message)}", fg="red", err=True)


def main(argv: list[str] | None = None) -> None:
    """Entry point: known errors become one ``error:`` line, never a traceback.

    Exit codes: 0 success (a bare command group prints its help), 1 a command's own "no"
    (a run that did not succeed), 2 bad usage or input, 130 interrupted (Ctrl-C).
    """
    try:
        cli.main(args=argv, prog_name="ptychoflow", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:  # `ptychoflow`, `ptychoflow runs`: the help is the answer
        click.echo(exc.ctx.get_help())
        sys.exit(0)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        if exc.ctx is not None:
            click.echo(f"{exc.ctx.get_usage()}\nTry '{exc.ctx.command_path} --help' for help.\n", err=True)
        error_line(exc.format_message())
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        error_line(exc.format_message())
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:  # Ctrl-C where a command has nothing better to say (click's words)
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except PtychoflowError as exc:
        error_line(str(exc))
        sys.exit(2)
