"""Root of the ``ptychoflow`` CLI.

Subcommands are imported lazily so ``ptychoflow --help`` stays fast and a broken optional
dependency (torch, tike) only affects the commands that need it.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

from ptychoflow import __version__
from ptychoflow.errors import PtychoflowError

# name -> "module:attribute" of a click command or group.
SUBCOMMANDS: dict[str, str] = {
    "init": "ptychoflow.cli.init_cmd:init",
    "doctor": "ptychoflow.cli.doctor:doctor",
    "beamline": "ptychoflow.cli.beamline:beamline",
    "reconstruct": "ptychoflow.cli.reconstruct:reconstruct",
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
    "report": "ptychoflow.cli.report:report",
}


class LazyGroup(click.Group):
    """A click group whose subcommands live in their own modules, imported on use."""

    def __init__(self, *args, lazy: dict[str, str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name in self._lazy if self._spec_exists(name))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self._lazy:
            return None
        module_name, attr = self._lazy[name].split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                return None
            raise
        return getattr(module, attr)

    def _spec_exists(self, name: str) -> bool:
        module_name = self._lazy[name].split(":")[0]
        return importlib.util.find_spec(module_name) is not None


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
      ptychoflow beamline simulate --scans 2 --out ./site/acquisition
      ptychoflow reconstruct ./site/acquisition/scan_0001.h5
      ptychoflow flows run reconstruct_and_train --scan scan_0001.h5 --wait
      ptychoflow doctor                           # what is installed and usable here

    Every command takes --help with examples.
    """
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main(argv: list[str] | None = None) -> None:
    """Entry point: known errors become one red line and exit code 2, never a traceback."""
    try:
        cli.main(args=argv, prog_name="ptychoflow", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except PtychoflowError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(2)
