"""``ptychoflow preflight`` through the CLI, against canned Globus responses.

A deployment that is nearly ready: one collection id is really a GCS endpoint, the edge
endpoint is offline, the HPC endpoint's allow-list lacks one function, one function was
registered from older source, and the identity mapping does not know the watcher's client.
Every problem is a FAIL naming its fix; everything else is OK.
"""

from __future__ import annotations

import copy
import json
import platform
import uuid
from pathlib import Path

import globus_sdk
import pytest
from globus_sdk.testing import RegisteredResponse, get_response_set, load_response

from globus_support import (  # noqa: F401
    BEAMLINE_COLLECTION, CLIENT_ID, EDGE_ENDPOINT, GUEST, HPC_COLLECTION, HPC_ENDPOINT, MAPPED,
    add_collection, collection_doc, mocked_http, seed_tokens, write_profile,
)
from ptychoflow.backends.globus.auth import OwnerOnlyJSONTokenStorage, flow_scope, token_file
from ptychoflow.backends.globus.flows import CHECKSUM_KEYWORD, FlowState, load_flow_source
from ptychoflow.cli.main import main
from ptychoflow.fs import sha256_file
from ptychoflow.function_registry import FunctionRecord, FunctionRegistry, bundled_functions
from ptychoflow.profile import load_profile
from ptychoflow.resources import flows_dir

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_MAPPING = REPO / "deploy" / "compute-endpoints" / "identity_mapping.example.json"
WATCHER_ID = "3c9d4e2f-8a7b-4c6d-9e1f-0a2b3c4d5e6f"
WATCHER_SECRET = "watcher-SECRET-never-print"
USER_ID = "ae341a98-d274-11e5-b888-dbae3a8ba545"
PYTHON = platform.python_version()
FLOW_PATHS = sorted(p for p in flows_dir().glob("*.json") if not p.name.endswith(".schema.json"))


def flow_ids() -> dict[str, str]:
    return {path.stem: str(uuid.uuid5(uuid.NAMESPACE_URL, path.stem)) for path in FLOW_PATHS}


def deploy_state(profile) -> None:
    """The site deployed every flow before (state file) and registered every function."""
    state = FlowState(profile.state_path)
    for path in FLOW_PATHS:
        state.put(path.stem, flow_ids()[path.stem], load_flow_source(path).checksum)
    registry = FunctionRegistry(profile.state_path)
    for name, path in bundled_functions().items():
        sha = "0" * 64 if name == "train" else sha256_file(path)  # train changed since it was registered
        registry.put("globus", name, FunctionRecord(str(uuid.uuid5(uuid.NAMESPACE_URL, name)), sha, 0.0))


def add_services(*, hpc_collection: str, edge_state: str, hpc_allows_all: bool) -> None:
    add_collection(BEAMLINE_COLLECTION, GUEST)
    add_collection(HPC_COLLECTION, hpc_collection)
    status = get_response_set(globus_sdk.ComputeClientV2.get_endpoint_status).lookup("default").json
    metadata = get_response_set(globus_sdk.ComputeClientV2.get_endpoint).lookup("default").json
    slurm_schema = json.loads((REPO / "deploy" / "compute-endpoints" / "hpc-slurm" / "user_config_schema.json").read_text())
    for endpoint_id, state, schema in ((HPC_ENDPOINT, "online", slurm_schema), (EDGE_ENDPOINT, edge_state, {})):
        RegisteredResponse(service="compute", path=f"/v2/endpoints/{endpoint_id}/status", json=dict(status, status=state)).add()
        RegisteredResponse(service="compute", path=f"/v2/endpoints/{endpoint_id}",
                           json=dict(metadata, uuid=endpoint_id, name=f"ptychoflow-{endpoint_id[:4]}", python_version=PYTHON,
                                     user_config_schema=schema)).add()
    allowed = [str(uuid.uuid5(uuid.NAMESPACE_URL, n)) for n in ("reconstruct", "validate", "train")]  # not activate
    RegisteredResponse(service="compute", path=f"/v3/endpoints/{HPC_ENDPOINT}/allowed_functions",
                       json={"endpoint_id": HPC_ENDPOINT, "restricted": not hpc_allows_all, "functions": allowed}).add()
    RegisteredResponse(service="compute", path=f"/v3/endpoints/{EDGE_ENDPOINT}/allowed_functions",
                       json={"endpoint_id": EDGE_ENDPOINT, "restricted": False, "functions": []}).add()
    function_doc = get_response_set(globus_sdk.ComputeClientV2.get_function).lookup("default").json
    for name in bundled_functions():
        fid = str(uuid.uuid5(uuid.NAMESPACE_URL, name))
        RegisteredResponse(service="compute", path=f"/v2/functions/{fid}",
                           json=dict(function_doc, function_uuid=fid, function_name=name)).add()
    flow_doc = get_response_set(globus_sdk.FlowsClient.get_flow).lookup("default").json
    for path in FLOW_PATHS:
        source = load_flow_source(path)
        doc = copy.deepcopy(flow_doc)
        doc.update(id=flow_ids()[path.stem], title=source.title, keywords=["ptychoflow", source.name, CHECKSUM_KEYWORD + source.checksum])
        RegisteredResponse(service="flows", path=f"/flows/{flow_ids()[path.stem]}", json=doc).add()
        RegisteredResponse(service="flows", path="/flows/validate", method="POST",
                           json={"scopes": {"User": ["urn:globus:auth:scope:transfer.api.globus.org:all"]}}).add()


def add_person_consents(collections: list[str]) -> None:
    RegisteredResponse(service="auth", path="/v2/oauth2/userinfo", json={"sub": USER_ID, "preferred_username": "ada@anl.gov"}).add()
    consents, ids = [], iter(range(1000, 9999))

    def walk(scope, path):
        node = next(ids)
        consents.append({"id": node, "scope_name": scope.scope_string, "dependency_path": [*path, node], "status": "approved",
                         "scope": str(uuid.uuid4()), "client": CLIENT_ID, "effective_identity": USER_ID, "allows_refresh": True,
                         "atomically_revocable": False, "auto_approved": False, "created": "2024-05-01T08:00:00+00:00",
                         "updated": "2024-05-01T08:00:00+00:00", "last_used": "2024-05-01T08:00:00+00:00"})
        for child in scope.dependencies:
            walk(child, [*path, node])

    for fid in flow_ids().values():
        walk(flow_scope(fid, collections), [])
    RegisteredResponse(service="auth", path=f"/v2/api/identities/{USER_ID}/consents", json={"consents": consents}).add()


def preflight(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(["preflight", *args])
        raise SystemExit(0)
    captured = capsys.readouterr()
    return done.value.code, captured.out, captured.err


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.setenv("PTYCHOFLOW_TOKEN_DIR", str(tmp_path / "tokens"))
    write_profile(tmp_path)
    profile = load_profile(tmp_path)
    deploy_state(profile)
    seed_tokens(OwnerOnlyJSONTokenStorage(token_file(), namespace=CLIENT_ID), list(flow_ids().values()))
    return tmp_path


def set_hpc_options(site, options: dict) -> None:
    """The profile's [hpc] user_endpoint_config (what every Compute state sends the endpoint)."""
    import tomli_w
    import tomllib

    path = site / "ptychoflow.toml"
    doc = tomllib.loads(path.read_text())
    doc["hpc"]["user_endpoint_config"] = options
    path.write_text(tomli_w.dumps(doc))


def test_every_problem_is_a_fail_with_its_fix(site, capsys, monkeypatch, tmp_path):
    set_hpc_options(site, {"walltime": "00:30:00"})  # no account, and shorter than a training
    # the HPC id is the GCS endpoint's, not its collection's; the edge endpoint is down;
    # the HPC endpoint allows three of the four functions
    add_services(hpc_collection="GCSv5_endpoint", edge_state="offline", hpc_allows_all=False)
    add_person_consents([])  # the HPC "collection" is an endpoint: no data_access consent exists for it
    monkeypatch.setenv("PTYCHOFLOW_CLIENT_ID", WATCHER_ID)
    monkeypatch.setenv("PTYCHOFLOW_CLIENT_SECRET", WATCHER_SECRET)
    for _ in flow_ids():
        load_response(globus_sdk.ConfidentialAppAuthClient.oauth2_client_credentials_tokens)

    code, out, err = preflight(["--profile", str(site), "--identity-mapping", str(EXAMPLE_MAPPING), "--json"], capsys)

    assert code == 1, err
    checks = {(c["area"], c["item"].split(":")[0]): c for c in json.loads(out)}
    failed = {key for key, c in checks.items() if not c["ok"]}
    assert failed == {
        ("collection", f"hpc {HPC_COLLECTION}"),
        ("endpoint", f"hpc {HPC_ENDPOINT}"),
        ("endpoint", f"edge {EDGE_ENDPOINT}"),
        ("function", "train"),
        ("identity mapping", "identity_mapping.example.json"),
    }, json.dumps(checks, indent=1)
    assert "not a collection" in checks[("collection", f"hpc {HPC_COLLECTION}")]["detail"]
    hpc = checks[("endpoint", f"hpc {HPC_ENDPOINT}")]
    assert "[hpc] user_endpoint_config: 'account' is a required property" in hpc["detail"]
    assert "not allowed: activate" in hpc["detail"]  # every problem of the endpoint, not only the first
    assert "user_endpoint_config" in hpc["fix"] and "allowed_functions" in hpc["fix"]
    assert "globus-compute-endpoint start" in checks[("endpoint", f"edge {EDGE_ENDPOINT}")]["fix"]
    assert checks[("function", "train")]["fix"] == "ptychoflow functions register --backend globus"
    assert WATCHER_ID in checks[("identity mapping", "identity_mapping.example.json")]["fix"]
    assert checks[("consent", "person")]["ok"] and checks[("consent", "watcher's client")]["ok"]
    assert all(checks[("flow", f"{p.stem} validate_flow")]["ok"] and checks[("flow", p.stem)]["ok"] for p in FLOW_PATHS)
    assert WATCHER_SECRET not in out + err


def test_a_ready_site_passes_and_says_so(site, capsys, tmp_path, monkeypatch):
    set_hpc_options(site, {"account": "PTYCHO_ALLOC", "walltime": "03:00:00"})
    profile = load_profile(site)
    FunctionRegistry(profile.state_path).put("globus", "train", FunctionRecord(
        str(uuid.uuid5(uuid.NAMESPACE_URL, "train")), sha256_file(bundled_functions()["train"]), 0.0))
    add_services(hpc_collection=MAPPED, edge_state="online", hpc_allows_all=True)
    add_person_consents([HPC_COLLECTION])
    mapping = tmp_path / "identity_mapping.json"
    mapping.write_text(EXAMPLE_MAPPING.read_text().replace("00000000-0000-0000-0000-000000000000", WATCHER_ID))
    monkeypatch.setenv("PTYCHOFLOW_CLIENT_ID", WATCHER_ID)
    monkeypatch.setenv("PTYCHOFLOW_CLIENT_SECRET", WATCHER_SECRET)
    for _ in flow_ids():
        load_response(globus_sdk.ConfidentialAppAuthClient.oauth2_client_credentials_tokens)

    code, out, err = preflight(["--profile", str(site), "--identity-mapping", str(mapping)], capsys)

    assert out.rstrip().endswith(": ready for beam time"), out
    assert code == 0 and "FAIL" not in out
    assert "maps to ptycho" in out and "takes a data_access consent" in out


def test_a_walltime_shorter_than_a_training_is_a_fail():
    from ptychoflow.backends.globus.preflight import options_problem
    from ptychoflow.profile import Profile

    profile = Profile.model_validate({"beamline": {"path": "a"}, "edge": {"path": "e"},
                                      "hpc": {"path": "h", "user_endpoint_config": {"account": "P", "walltime": "00:45:00"}}})
    assert "shorter than policy.train_time_limit_s (3600 s)" in options_problem(profile, "hpc", {})
    profile.hpc.user_endpoint_config["walltime"] = "02:00:00"
    assert options_problem(profile, "hpc", {}) is None


def test_local_profiles_have_nothing_to_preflight(tmp_path, capsys):
    from ptychoflow.profile import write_local_profile

    write_local_profile(tmp_path)
    code, out, err = preflight(["--profile", str(tmp_path)], capsys)
    assert code == 2 and "the local backend uses no external service" in err and err.count("\n") == 1
