"""``ptychoflow preflight``: check a globus deployment end to end before beam time."""

from __future__ import annotations

from pathlib import Path

import click

from ptychoflow.cli._common import json_option, print_json, profile_option


@click.command()
@click.option("--identity-mapping", "identity_mapping", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, metavar="FILE",
              help="A copy of the HPC endpoint's identity_mapping.json: does it map the watcher's client?")
@json_option
@profile_option
def preflight(identity_mapping: Path | None, as_json: bool, profile_path: str | None) -> None:
    """Check everything a run needs on Globus; each item is OK or FAIL with its fix.

    \b
    Checked, in the order to fix them:
      collections   reachable, and collections (not endpoints); which take data_access
      endpoints     online, their Python, and whether they allow ptychoflow's functions
      functions     registered, from the current source
      flows         deployed and current; Globus Flows' own validate_flow on each
      consents      yours (after `ptychoflow login`), and the watcher's client's
                    (when PTYCHOFLOW_CLIENT_ID/SECRET are set)
      mapping       the watcher's client in the endpoint's identity mapping (--identity-mapping)

    Exit status 1 when anything FAILs.

    \b
    Examples:
      ptychoflow preflight --profile /etc/ptychoflow/ptychoflow.toml
      sudo -u ptycho env $(cat /etc/ptychoflow/ptychoflow.env) ptychoflow preflight \\
          --identity-mapping identity_mapping.json
    """
    from ptychoflow.backends.globus.preflight import render
    from ptychoflow.cli._common import backend_for

    checks = backend_for(profile_path).preflight(identity_mapping=identity_mapping)
    if as_json:
        print_json([c.as_dict() for c in checks])
    else:
        click.echo(render(checks))
    if not all(c.ok for c in checks):
        raise SystemExit(1)
