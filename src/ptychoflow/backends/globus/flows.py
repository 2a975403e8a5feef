"""Deploy ``flows/NAME.json`` (+ ``NAME.schema.json``) to Globus Flows, idempotently.

A flow is identified by a sha256 over its definition and input schema. The checksum is
written into the flow's keywords (``ptychoflow-sha256:<hex>``) and into a local state file,
so redeploying an unchanged flow costs one GET, a changed one an update, and a flow deleted
in the web app is recreated. A profile may pin ``[globus] flow_id`` instead: then that flow
is updated in place and never recreated behind the operator's back. The definition is sent
exactly as it is in the file: what staff reviewed is what runs.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import globus_sdk

from ptychoflow.backends.base import DeployedFlow, flow_checksum
from ptychoflow.errors import FlowDefinitionError
from ptychoflow.fs import JsonStateFile
from ptychoflow.profile import Profile

log = logging.getLogger(__name__)

CHECKSUM_KEYWORD = "ptychoflow-sha256:"
STATE_FILENAME = "globus_flows.json"


@dataclass(frozen=True)
class FlowSource:
    """A flow as read from disk, ready to send."""

    name: str
    path: Path
    definition: dict[str, Any]
    input_schema: dict[str, Any]

    @property
    def title(self) -> str:
        return f"ptychoflow {self.name}"

    @property
    def checksum(self) -> str:
        return flow_checksum(self.definition, self.input_schema)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FlowDefinitionError(f"{path}: no such file") from None
    except json.JSONDecodeError as exc:
        raise FlowDefinitionError(f"{path}: invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise FlowDefinitionError(f"{path}: must hold a JSON object")
    return data


def load_flow_source(path: Path) -> FlowSource:
    """Read ``NAME.json`` and its sibling ``NAME.schema.json`` (Globus Flows requires a schema)."""
    path = Path(path)
    definition = _read_json(path)
    schema_path = path.with_name(f"{path.stem}.schema.json")
    if not schema_path.exists():
        raise FlowDefinitionError(f"{path}: missing input schema {schema_path.name} (Globus Flows needs one)")
    return FlowSource(path.stem, path, definition, _read_json(schema_path))


def group_urn(group_id: str) -> str:
    return f"urn:globus:groups:id:{group_id}"


ROLES = ("flow_viewers", "flow_starters", "flow_administrators")


def flow_roles(profile: Profile) -> dict[str, list[str]]:
    """Viewers, starters and administrators of the flow: the profile's Globus group, if any."""
    if not profile.globus.group_id:
        return {}
    principal = [group_urn(profile.globus.group_id)]
    return {role: principal for role in ROLES}


def flow_fields(source: FlowSource, profile: Profile) -> dict[str, Any]:
    """The create/update body, shared so both always send the same document."""
    fields: dict[str, Any] = {
        "title": source.title,
        "definition": source.definition,
        "input_schema": source.input_schema,
        "subtitle": f"{source.name} ({source.checksum[:12]})",
        "description": f"Deployed by ptychoflow from {source.path.name}; sha256 {source.checksum}.",
        "keywords": ["ptychoflow", source.name, CHECKSUM_KEYWORD + source.checksum],
        **flow_roles(profile),
    }
    if profile.globus.subscription_id:
        fields["subscription_id"] = profile.globus.subscription_id
    return fields


def deployed_checksum(flow_doc: dict[str, Any]) -> str | None:
    """The checksum a previous deploy left in the flow's keywords, if any."""
    for keyword in flow_doc.get("keywords") or []:
        if isinstance(keyword, str) and keyword.startswith(CHECKSUM_KEYWORD):
            return keyword[len(CHECKSUM_KEYWORD) :]
    return None


class FlowState:
    """``<state_dir>/globus_flows.json``: flow name -> {flow_id, checksum, deployed}."""

    def __init__(self, state_dir: Path) -> None:
        self.state = JsonStateFile(Path(state_dir) / STATE_FILENAME, "flow state (delete it to redeploy)")

    def get(self, name: str) -> dict[str, Any] | None:
        return self.state.load().get(name)

    def put(self, name: str, flow_id: str, checksum: str) -> None:
        with self.state.updating() as flows:
            flows[name] = {"flow_id": flow_id, "checksum": checksum, "deployed": time.time()}

    def flow_ids(self) -> list[str]:
        return [entry["flow_id"] for entry in self.state.load().values()]


def _existing(client: globus_sdk.FlowsClient, flow_id: str) -> dict[str, Any] | None:
    try:
        return client.get_flow(flow_id).data
    except globus_sdk.GlobusAPIError as exc:
        if exc.http_status == 404:
            return None
        raise


def search_flow(client: globus_sdk.FlowsClient, source: FlowSource) -> dict[str, Any] | None:
    """The flow another host deployed: title and ptychoflow keywords, among flows we may update.

    Flow ids are not shared between machines; without this lookup a second host would create
    a duplicate. Among several matches the most recently updated wins (the others are named).
    """
    pages = client.paginated.list_flows(filter_roles=["flow_owner", "flow_administrator"], filter_fulltext=source.title)
    matches = [doc for doc in pages.items()
               if doc.get("title") == source.title and {"ptychoflow", source.name} <= set(doc.get("keywords") or [])]
    if not matches:
        return None
    matches.sort(key=lambda doc: doc.get("updated_at") or doc.get("created_at") or "", reverse=True)
    if len(matches) > 1:
        log.warning("%d flows are titled %r; using %s (updated last), not %s", len(matches), source.title,
                    matches[0]["id"], ", ".join(doc["id"] for doc in matches[1:]))
    return matches[0]


def find_flow(client: globus_sdk.FlowsClient, source: FlowSource, profile: Profile, state: FlowState) -> dict[str, Any] | None:
    """``source``'s flow on the service: the pinned id, else this host's cached id, else a search."""
    pinned = profile.globus.flow_id
    if pinned:
        current = _existing(client, pinned)
        if current is None:
            raise FlowDefinitionError(f"pinned [globus] flow_id {pinned} does not exist or is not visible to you")
        return current
    cached = (state.get(source.name) or {}).get("flow_id")
    if cached and (current := _existing(client, cached)) is not None:
        return current
    if cached:
        log.warning("flow %s (%s) is gone from Globus; looking for it by title", source.name, cached)
    return search_flow(client, source)


def merged_roles(current: dict[str, Any], ours: dict[str, list[str]]) -> dict[str, list[str]]:
    """Our principals added to the flow's roles, keeping those set elsewhere; only roles that change."""
    merged = {}
    for role, principals in ours.items():
        existing = list(current.get(role) or [])
        if any(p not in existing for p in principals):
            merged[role] = existing + [p for p in principals if p not in existing]
    return merged


def deploy_flow(
    client: globus_sdk.FlowsClient, source: FlowSource, profile: Profile, state: FlowState
) -> DeployedFlow:
    """Create, update or leave alone, so that the service holds exactly ``source``.

    Roles are only ever added: viewers, starters and administrators someone set in the web
    app stay.
    """
    checksum = source.checksum
    fields = flow_fields(source, profile)
    ours = {role: fields.pop(role) for role in ROLES if role in fields}
    current = find_flow(client, source, profile, state)
    if current is None:
        flow_id = client.create_flow(**fields, **ours)["id"]
        log.info("created flow %s as %s", source.name, flow_id)
    else:
        flow_id = current["id"]
        roles = merged_roles(current, ours)
        if deployed_checksum(current) != checksum:
            log.info("updating flow %s (%s): definition or schema changed", source.name, flow_id)
            client.update_flow(flow_id, **fields, **roles)
        elif roles:
            log.info("flow %s (%s): adding %s to its roles", source.name, flow_id, ", ".join(sorted(roles)))
            client.update_flow(flow_id, **roles)
        else:
            log.info("flow %s (%s) is up to date", source.name, flow_id)
    state.put(source.name, flow_id, checksum)
    return DeployedFlow(flow_id, source.title, checksum)
