"""``ptychoflow endpoints list | status``: the profile's Compute endpoints and collections."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import click

from ptychoflow.cli._common import emit, json_option, load, profile_option
from ptychoflow.profile import Profile


@dataclass
class EndpointRow:
    site: str
    kind: str  # "compute" | "collection"
    id: str
    status: str = ""
    detail: str = ""


def profile_endpoints(profile: Profile) -> list[EndpointRow]:
    """Every Compute endpoint and collection the profile names, site by site."""
    rows = []
    for site_name in ("beamline", "hpc", "edge"):
        site = getattr(profile, site_name)
        if endpoint_id := getattr(site, "endpoint_id", None):
            rows.append(EndpointRow(site_name, "compute", endpoint_id))
        if site.collection_id:
            rows.append(EndpointRow(site_name, "collection", site.collection_id))
    return rows


def _render(rows: list[EndpointRow], with_status: bool) -> str:
    lines = []
    for row in rows:
        cells = [f"{row.site:<9}", f"{row.kind:<10}", f"{row.id:<36}"]
        if with_status:
            cells += [f"{row.status:<8}", row.detail]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) or "(the profile names no endpoints or collections)"


def _probe(backend, row: EndpointRow) -> None:
    """Fill in one row's status; a failure marks the row instead of aborting the table."""
    from ptychoflow.backends.globus.compute import is_uuid
    from ptychoflow.errors import CredentialsError, PtychoflowError

    if not is_uuid(row.id):
        row.status, row.detail = "local", "local process pool (local backend)"
        return
    try:
        if row.kind == "compute":
            doc = backend.endpoint_status(row.id)
            details = doc.get("details") or {}
            row.status = str(doc.get("status", "unknown"))
            row.detail = f"{details.get('total_workers', '?')} workers, {details.get('outstanding_tasks', '?')} outstanding"
        else:
            doc = backend.collection_status(row.id)
            row.status, row.detail = doc["status"], f"{doc['display_name']} ({doc['entity_type']})"
    except CredentialsError:
        raise  # the same for every row: say it once, with the command that fixes it
    except PtychoflowError as exc:
        row.status, row.detail = "error", str(exc)


@click.group()
def endpoints() -> None:
    """Globus Compute endpoints and Transfer collections named in the profile.

    \b
    Examples:
      ptychoflow endpoints list
      ptychoflow endpoints status --json
    """


@endpoints.command("list")
@profile_option
@json_option
def list_endpoints(profile_path: Path | None, as_json: bool) -> None:
    """List the profile's Compute endpoints and collections (no network).

    \b
    Example:
      ptychoflow endpoints list --profile site/ptychoflow.toml
    """
    rows = profile_endpoints(load(profile_path))
    emit([asdict(row) for row in rows], as_json, _render(rows, with_status=False))


@endpoints.command("status")
@profile_option
@json_option
def status(profile_path: Path | None, as_json: bool) -> None:
    """Ask Globus Compute and Transfer whether each endpoint and collection is up.

    \b
    Example:
      ptychoflow endpoints status --json
    """
    from ptychoflow.backends.globus import GlobusBackend

    profile = load(profile_path)
    rows = profile_endpoints(profile)
    backend = GlobusBackend(profile)
    for row in rows:
        _probe(backend, row)
    emit([asdict(row) for row in rows], as_json, _render(rows, with_status=True))
