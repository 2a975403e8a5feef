"""``ptychoflow functions``: register the remote functions with a backend."""

from __future__ import annotations

from pathlib import Path

import click

from ptychoflow.cli._common import json_option, load, print_json, profile_option


@click.group()
def functions() -> None:
    """Remote functions (reconstruct, validate, train, activate).

    \b
    Examples:
      ptychoflow functions register                    # the profile's backend
      ptychoflow functions register --backend local --dir ./my_functions
    """


@functions.command()
@click.option("--backend", "backend_name", type=click.Choice(["local", "globus"]), default=None,
              help="Register with this backend instead of the profile's.")
@click.option("--dir", "extra_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Also register every NAME.py in this directory (function NAME inside).")
@json_option
@profile_option
def register(backend_name: str | None, extra_dir: Path | None, as_json: bool, profile_path: Path | None) -> None:
    """Register every bundled function (re-registers only changed sources); prints name -> id.

    \b
    Example:
      ptychoflow functions register --backend local
    """
    from ptychoflow.backends import get_backend
    from ptychoflow.function_registry import bundled_functions

    profile = load(profile_path)
    if backend_name:
        profile = profile.model_copy(update={"backend": backend_name})
    backend = get_backend(profile)
    sources = dict(bundled_functions())
    if extra_dir:
        sources.update({p.stem: p for p in sorted(extra_dir.glob("*.py")) if not p.stem.startswith("_")})
    registered = {name: backend.register_function(path, name) for name, path in sorted(sources.items())}
    if as_json:
        print_json({name: r.function_id for name, r in registered.items()})
        return
    if not registered:
        click.echo("no functions found")
    for name, record in registered.items():
        click.echo(f"{name:<14} {record.function_id}  sha256 {record.source_sha256[:12]}")
