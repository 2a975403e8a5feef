"""``ptychoflow preflight``: what a facility checks on the globus backend before beam time.

Each check asks the real service (or reads the real file) and answers OK or FAIL, with the
command or edit that fixes a FAIL. A check that cannot run (no login, no network) is a
FAIL that says so; one failure never hides the others.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ptychoflow.errors import CredentialsError, PtychoflowError
from ptychoflow.fs import sha256_file

from . import compute, flows
from .auth import flow_scope, login_command
from .collections import needs_data_access
from .compute import BACKEND_KEY, is_uuid

if TYPE_CHECKING:  # the backend runs these checks on itself: no import at run time
    from .backend import GlobusBackend

# Transfer entity types a flow can move data through (a GCS v5 endpoint or storage gateway
# id is a common mistake: the profile needs the collection's id).
COLLECTION_TYPES = {"GCSv5_mapped_collection", "GCSv5_guest_collection", "GCP_mapped_collection", "GCP_guest_collection"}
CLIENT_USERNAME = "{client_id}@clients.auth.globus.org"


@dataclass(frozen=True)
class Check:
    area: str  # collection | endpoint | function | flow | consent | identity mapping
    item: str
    ok: bool
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _guarded(area: str, item: str, probe: Callable[[], Check]) -> Check:
    """Run one probe; a refusal or an outage becomes that item's FAIL, not the end of the run."""
    try:
        return probe()
    except CredentialsError as exc:
        return Check(area, item, False, "credentials refused", str(exc))
    except PtychoflowError as exc:
        return Check(area, item, False, str(exc))


# -- collections --------------------------------------------------------------------------
def check_collection(backend: GlobusBackend, site: str, collection_id: str) -> Check:
    item = f"{site} {collection_id}"

    def probe() -> Check:
        doc = backend.collection_status(collection_id)
        kind = doc["entity_type"] + (" (High Assurance)" if doc["high_assurance"] else "")
        if doc["entity_type"] not in COLLECTION_TYPES:
            return Check("collection", item, False, f"{doc['display_name']}: a {kind}, not a collection",
                         f"put the id of a collection on it in [{site}] collection_id")
        consent = "takes a data_access consent" if needs_data_access(doc) else "no data_access consent"
        return Check("collection", item, True, f"{doc['display_name']} ({kind}; {consent})")

    return _guarded("collection", item, probe)


# -- compute endpoints ----------------------------------------------------------------------
def allowed_functions(backend: GlobusBackend, endpoint_id: str) -> list[str] | None:
    """The endpoint's function allow-list, or None when it runs any function."""
    doc = backend.compute_client.get_allowed_functions(endpoint_id)
    return [str(f) for f in doc.get("functions") or []] if doc.get("restricted") else None


def check_endpoint(backend: GlobusBackend, site: str, endpoint_id: str, function_ids: dict[str, str]) -> Check:
    item = f"{site} {endpoint_id}"

    def probe() -> Check:
        with backend.explaining(f"endpoint {endpoint_id}"):
            status = backend.compute_client.get_endpoint_status(endpoint_id)
            metadata = backend.compute_client.get_endpoint_metadata(endpoint_id)
            allowed = allowed_functions(backend, endpoint_id)
        state = str(status.get("status", "unknown"))
        python = compute.endpoint_python(metadata) or "unknown"
        name = metadata.get("display_name") or metadata.get("name") or endpoint_id
        detail = f"{name}: {state}, Python {python}, " + ("any function" if allowed is None else f"{len(allowed)} allowed functions")
        problems: list[tuple[str, str]] = []  # (what is wrong, what fixes it), all of them
        if state != "online":
            problems.append(("not online", f"start it on its host: globus-compute-endpoint start {metadata.get('name') or 'NAME'}"))
        if (mismatch := compute.python_mismatch(metadata, endpoint_id)) is not None:
            problems.append(("another Python", mismatch))
        if (problem := options_problem(backend.profile, site, metadata.get("user_config_schema"))) is not None:
            problems.append((problem, f"set [{site}] user_endpoint_config in the profile as the endpoint's variables.yaml documents"))
        refused = sorted(n for n, fid in function_ids.items() if allowed is not None and fid not in allowed)
        if refused:
            ids = " ".join(function_ids[n] for n in refused)
            problems.append((f"not allowed: {', '.join(refused)}",
                             f"add to allowed_functions in the endpoint's config.yaml and restart it: {ids}"))
        if problems:
            return Check("endpoint", item, False, "; ".join([detail] + [what for what, _ in problems]),
                         "; ".join(fix for _, fix in problems))
        return Check("endpoint", item, True, detail)

    return _guarded("endpoint", item, probe)


def seconds(hms: str) -> float:
    hours, minutes, secs = (int(part) for part in hms.split(":"))
    return hours * 3600 + minutes * 60 + secs


def options_problem(profile: Any, site: str, schema: Any) -> str | None:
    """Why the endpoint would refuse the profile's ``user_endpoint_config``, or why a block would
    end before a training does; None when neither."""
    import jsonschema

    options = getattr(profile, site).user_endpoint_config
    if isinstance(schema, dict) and schema:
        error = next(iter(jsonschema.Draft202012Validator(schema).iter_errors(options)), None)
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path)
            return f"[{site}] user_endpoint_config{'.' + where if where else ''}: {error.message}"
    walltime = options.get("walltime")
    if site == "hpc" and isinstance(walltime, str) and walltime.count(":") == 2:
        if seconds(walltime) < profile.policy.train_time_limit_s:
            return (f"[hpc] user_endpoint_config.walltime {walltime} is shorter than policy.train_time_limit_s "
                    f"({profile.policy.train_time_limit_s:.0f} s): the scheduler would end a training")
    return None


# -- functions -----------------------------------------------------------------------------
def check_function(backend: GlobusBackend, name: str, path: Path) -> Check:
    def probe() -> Check:
        record = backend.registry.get(BACKEND_KEY, name)
        fix = "ptychoflow functions register --backend globus"
        if record is None:
            return Check("function", name, False, "not registered", fix)
        if record.source_sha256 != sha256_file(path):
            return Check("function", name, False, f"{record.function_id} was registered from older source", fix)
        with backend.explaining(f"function {name}"):
            doc = backend.compute_client.get_function(record.function_id)
        registered_from = (doc.get("metadata") or {}).get("python_version", "unknown")
        return Check("function", name, True, f"{record.function_id} (current; registered from Python {registered_from})")

    return _guarded("function", name, probe)


# -- flows -----------------------------------------------------------------------------------
def check_flow(backend: GlobusBackend, path: Path) -> list[Check]:
    source = flows.load_flow_source(path)

    def deployed() -> Check:
        with backend.explaining(f"find flow {source.name}"):
            found = flows.find_flow(backend.flows_client, source, backend.profile, backend.flow_state)
        fix = f"ptychoflow flows deploy {source.name}"
        if found is None:
            return Check("flow", source.name, False, "not deployed", fix)
        flow_id, checksum = found["id"], flows.deployed_checksum(found)
        if checksum != source.checksum:
            return Check("flow", source.name, False, f"{flow_id} holds another version (sha256 {str(checksum)[:12]})", fix)
        return Check("flow", source.name, True, f"{flow_id} is current (sha256 {source.checksum[:12]})")

    def validated() -> Check:
        scopes = backend.validate_flow(path)
        return Check("flow", f"{source.name} validate_flow", True, f"accepted; needs {len(scopes)} scope(s)")

    return [_guarded("flow", source.name, deployed), _guarded("flow", f"{source.name} validate_flow", validated)]


# -- consents --------------------------------------------------------------------------------
def check_consents(backend: GlobusBackend, who: str) -> Check:
    """The person's consents (Auth's consent forest), or the client's tokens (client credentials)."""

    def probe() -> Check:
        flow_ids = backend.known_flow_ids()
        if not flow_ids:
            return Check("consent", who, False, "no deployed flow to consent to", "ptychoflow flows deploy")
        collections = backend.learn_collections()
        scopes = [str(flow_scope(fid, collections)) for fid in flow_ids]
        with backend.explaining(f"consents of the {who}", flow_ids):
            if who == "watcher's client":
                for fid in flow_ids:
                    backend.app.get_authorizer(fid).get_authorization_header()
                granted = True
            else:
                granted = backend.has_consents(scopes)
        detail = f"{len(flow_ids)} flow(s), data_access on {len(collections)} collection(s)"
        if not granted:
            return Check("consent", who, False, detail + ": missing",
                         f"run `{login_command(backend.profile, flow_ids, collections)}`")
        return Check("consent", who, True, detail)

    return _guarded("consent", who, probe)


# -- identity mapping ------------------------------------------------------------------------
def mapped_names(mapping_path: Path, identity: dict[str, str]) -> list[str]:
    """Local accounts the endpoint's identity mapping gives ``identity`` (globus-identity-mapping)."""
    from globus_identity_mapping.loader import load_mappers

    documents = json.loads(mapping_path.read_text())
    names: list[str] = []
    for mapper in load_mappers(documents):
        for mapping in mapper.map_identities([identity]):
            for found in mapping.values():
                names += found
    return names


def check_identity_mapping(mapping_path: Path, client_id: str) -> Check:
    username = CLIENT_USERNAME.format(client_id=client_id)
    item = f"{mapping_path.name}: {username}"

    def probe() -> Check:
        try:
            names = mapped_names(mapping_path, {"id": client_id, "sub": client_id, "username": username, "status": "used"})
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return Check("identity mapping", item, False, f"unreadable: {exc}", "see deploy/compute-endpoints/identity_mapping.example.json")
        if not names:
            return Check("identity mapping", item, False, "the watcher's client maps to no local account",
                         f'add {{"source": "{{username}}", "match": "{client_id}@clients\\\\.auth\\\\.globus\\\\.org", '
                         '"output": "<service account>"} to its mappings (deploy/compute-endpoints/identity_mapping.example.json)')
        return Check("identity mapping", item, True, f"maps to {names[0]}")

    return _guarded("identity mapping", item, probe)


# -- all of it -------------------------------------------------------------------------------
def compute_sites(backend: GlobusBackend) -> list[tuple[str, str]]:
    profile = backend.profile
    return [(site, getattr(profile, site).endpoint_id) for site in ("hpc", "edge") if is_uuid(getattr(profile, site).endpoint_id)]


def collection_sites(backend: GlobusBackend) -> list[tuple[str, str]]:
    profile = backend.profile
    return [(site, getattr(profile, site).collection_id) for site in ("beamline", "hpc", "edge")
            if getattr(profile, site).collection_id]


def run_preflight(
    person: GlobusBackend | None,
    client: GlobusBackend | None,
    *,
    flow_paths: Iterable[Path],
    functions: dict[str, Path],
    identity_mapping: Path | None = None,
) -> list[Check]:
    """Every check, in the order a facility fixes them: storage, compute, code, flows, access."""
    backend = person or client
    if backend is None:
        raise CredentialsError("preflight needs a Globus identity: [globus] client_id and `ptychoflow login`, "
                               "or PTYCHOFLOW_CLIENT_ID and PTYCHOFLOW_CLIENT_SECRET for the watcher's client")
    checks = [check_collection(backend, site, cid) for site, cid in collection_sites(backend)]
    function_ids = {name: rec.function_id for name, rec in backend.registry.all(BACKEND_KEY).items()}
    checks += [check_endpoint(backend, site, eid, function_ids) for site, eid in compute_sites(backend)]
    checks += [check_function(backend, name, path) for name, path in sorted(functions.items())]
    for path in flow_paths:
        checks += check_flow(backend, path)
    if person is not None:
        checks.append(check_consents(person, "person"))
    if client is not None:
        checks.append(check_consents(client, "watcher's client"))
        if identity_mapping is not None:
            checks.append(check_identity_mapping(identity_mapping, client.app.client_id))
    elif identity_mapping is not None:
        checks.append(Check("identity mapping", identity_mapping.name, False, "the watcher's client is not configured",
                            "set PTYCHOFLOW_CLIENT_ID and PTYCHOFLOW_CLIENT_SECRET, then run preflight again"))
    return checks


def render(checks: list[Check]) -> str:
    """One line per check (OK/FAIL, area, item, what was found), the fix indented below a FAIL."""
    lines = []
    for check in checks:
        lines.append(f"{'OK  ' if check.ok else 'FAIL'}  {check.area:<16} {check.item}: {check.detail}")
        if not check.ok and check.fix:
            lines.append(f"      fix: {check.fix}")
    failed = sum(not c.ok for c in checks)
    lines.append(f"{len(checks) - failed} OK, {failed} FAIL" if failed else f"{len(checks)} OK: ready for beam time")
    return "\n".join(lines)
