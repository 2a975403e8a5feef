"""`ptychoflow init`: write a commented local profile and its site directories."""

from __future__ import annotations

from pathlib import Path

import click

from ptychoflow.profile import write_local_profile


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option("--force", is_flag=True, help="Overwrite an existing ptychoflow.toml.")
def init(directory: Path, force: bool) -> None:
    """Create a local deployment in DIRECTORY: ptychoflow.toml plus acquisition/, hpc/, edge/, state/.

    \b
    Examples:
      ptychoflow init ./beamtime-2026-11
      ptychoflow init . --force        # rewrite the profile, keep the data
    Then point other commands at it with --profile DIR or PTYCHOFLOW_PROFILE=DIR.
    """
    target = write_local_profile(directory, force=force)
    click.echo(f"wrote {target}")
    click.echo(f"next: ptychoflow beamline simulate --scans 2 --out {directory / 'acquisition'}")
