"""Credentials and consents against canned Globus responses (globus_sdk.testing + responses).

Covers what stops a facility at 3 a.m.: a 401, a refresh token Globus no longer accepts,
ConsentRequired from Transfer and from Compute, an INACTIVE run whose details are an auth
requirements error (consent, or session: identity, policy, MFA) resumed after the consent,
validate_flow / validate_run refusals, and data_access asked only of the collections that
take it (mapped, not guest, GCP or High Assurance), by people and by the watcher's client.
"""

from __future__ import annotations

import copy
import json
import time
import uuid

import globus_sdk
import pytest
import responses
from globus_sdk.scopes import GCSCollectionScopes, TransferScopes
from globus_sdk.testing import RegisteredResponse, get_response_set, load_response
from globus_sdk.token_storage import MemoryTokenStorage, TokenStorageData

from globus_support import (  # noqa: F401
    BEAMLINE_COLLECTION, CLIENT_ID, DATA_ACCESS, FLOW_FILE, FLOW_ID, GUEST, HPC_COLLECTION, HPC_ENDPOINT, MAPPED, RUN_DOC,
    RUN_ID, SECRET_TOKEN, USER_ID, add_collection, consent_details, inactive_run, make_backend, make_profile, mocked_http,
    required_flow_scope, seed_tokens, session_details, write_profile,
)
from ptychoflow.backends.base import DeployedFlow, RunStatus
from ptychoflow.backends.globus import GlobusBackend
from ptychoflow.backends.globus.auth import build_app, flow_scope
from ptychoflow.backends.globus.errors import GlobusServiceError
from ptychoflow.errors import CredentialsError, FlowDefinitionError, InputError

FLOW = DeployedFlow(FLOW_ID, "ptychoflow hello_scan", "c0ffee")
SERVICE_SECRET = "service-client-SECRET-never-print"


def consents(scope_tree: globus_sdk.Scope) -> dict:
    """Globus Auth's consent list holding ``scope_tree`` (each node under its parent)."""
    found, counter = [], iter(range(100, 1000))

    def walk(scope, path):
        node = next(counter)
        found.append({
            "id": node, "scope_name": scope.scope_string, "dependency_path": [*path, node], "status": "approved",
            "scope": str(uuid.uuid4()), "client": CLIENT_ID, "effective_identity": USER_ID, "allows_refresh": True,
            "atomically_revocable": False, "auto_approved": False, "created": "2024-05-01T08:00:00+00:00",
            "updated": "2024-05-01T08:00:00+00:00", "last_used": "2024-05-01T08:00:00+00:00",
        })
        for child in scope.dependencies:
            walk(child, [*path, node])

    walk(scope_tree, [])
    return {"consents": found}


def add_userinfo() -> None:
    RegisteredResponse(service="auth", path="/v2/oauth2/userinfo", json={"sub": USER_ID, "preferred_username": "ada@anl.gov"}).add()


def add_consents(scope_tree: globus_sdk.Scope | None) -> None:
    body = consents(scope_tree) if scope_tree is not None else {"consents": []}
    RegisteredResponse(service="auth", path=f"/v2/api/identities/{USER_ID}/consents", json=body).add()


def add_run(doc: dict) -> None:
    RegisteredResponse(service="flows", path=f"/runs/{doc['run_id']}", json=doc).add()
    RegisteredResponse(service="flows", path=f"/runs/{doc['run_id']}/log", json={"entries": [], "limit": 10, "has_next_page": False}).add()


def assert_one_line_without_secrets(message: str) -> None:
    assert "\n" not in message and SECRET_TOKEN not in message and SERVICE_SECRET not in message


# -- 401 and refresh tokens --------------------------------------------------------------
def stored_tokens(*, expires_in: int, refresh: bool) -> MemoryTokenStorage:
    """Seeded tokens, with or without refresh tokens, valid for ``expires_in`` seconds (negative: expired)."""
    seeded = MemoryTokenStorage()
    seed_tokens(seeded, [FLOW_ID])
    storage = MemoryTokenStorage()
    storage.store_token_data_by_resource_server({
        server: TokenStorageData(resource_server=server, identity_id=None, scope=data.scope, access_token=data.access_token,
                                 refresh_token=data.refresh_token if refresh else None, token_type="Bearer",
                                 expires_at_seconds=int(time.time()) + expires_in)
        for server, data in seeded.get_token_data_by_resource_server().items()})
    return storage


def backend_with(profile, storage: MemoryTokenStorage) -> GlobusBackend:
    make_backend(profile)  # records the site's collection types
    return GlobusBackend(profile, app=build_app(profile, flow_ids=[FLOW_ID], token_storage=storage))


def test_a_401_names_the_login_command(tmp_path):
    """The service's 401 (expired or invalid bearer token), as the SDK raises it."""
    from ptychoflow.backends.globus.errors import explained

    load_response(globus_sdk.SpecificFlowClient.validate_run, case="invalid_token")
    profile = make_profile(tmp_path)
    with pytest.raises(CredentialsError) as err, explained(profile, flow_ids=[FLOW_ID], collection_ids=[HPC_COLLECTION],
                                                           action="validate"):
        globus_sdk.SpecificFlowClient(FLOW_ID).validate_run({"param": "value"})
    message = str(err.value)
    assert message.startswith("validate: Globus 401 AUTHENTICATION_ERROR; run `ptychoflow login")
    assert f"--flow {FLOW_ID} --collection {HPC_COLLECTION} --force`" in message
    assert_one_line_without_secrets(message)


def test_a_401_for_the_watchers_client_after_a_fresh_token(tmp_path, monkeypatch):
    monkeypatch.setenv("PTYCHOFLOW_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("PTYCHOFLOW_CLIENT_SECRET", SERVICE_SECRET)
    for _ in range(2):  # the SDK fetches a new client-credentials token on a 401 and tries once more
        load_response(globus_sdk.ConfidentialAppAuthClient.oauth2_client_credentials_tokens)
        load_response(globus_sdk.SpecificFlowClient.validate_run, case="invalid_token")
    profile = make_profile(tmp_path, client_id=None)
    make_backend(profile)
    with pytest.raises(CredentialsError) as err:
        GlobusBackend(profile).validate_run(FLOW, {"param": "value"})
    message = str(err.value)
    assert "401 AUTHENTICATION_ERROR" in message and f"the service client {CLIENT_ID}" in message
    assert_one_line_without_secrets(message)


def test_an_expired_refresh_token_asks_for_a_new_login(tmp_path):
    RegisteredResponse(service="auth", path="/v2/oauth2/token", method="POST", status=400,
                       json={"error": "invalid_grant"}).add()
    backend = backend_with(make_profile(tmp_path), stored_tokens(expires_in=-60, refresh=True))

    with pytest.raises(CredentialsError) as err:
        backend.get_run(RUN_ID)

    message = str(err.value)
    assert "login has expired or was revoked (invalid_grant)" in message and "ptychoflow login" in message
    assert [call.request.url.split("?")[0] for call in responses.calls] == ["https://auth.globus.org/v2/oauth2/token"]
    assert_one_line_without_secrets(message)


# -- ConsentRequired from Transfer and from Compute ----------------------------------------
def test_consent_required_from_transfer_prints_the_exact_scope(tmp_path):
    scope = str(DATA_ACCESS)
    RegisteredResponse(service="transfer", path=f"/v0.10/endpoint/{HPC_COLLECTION}", status=403, json={
        "code": "ConsentRequired", "message": "Missing required data_access consent",
        "request_id": "Ab3dEf9Gh", "resource": f"/endpoint/{HPC_COLLECTION}", "required_scopes": [scope],
        "authorization_parameters": {"session_message": "Missing required data_access consent", "required_scopes": [scope]},
    }).add()

    with pytest.raises(CredentialsError) as err:
        make_backend(make_profile(tmp_path)).collection_status(HPC_COLLECTION)

    message = str(err.value)
    assert message.startswith(f"status of collection {HPC_COLLECTION}: Globus 403 ConsentRequired: needs consent to {scope};")
    assert f"--scope '{scope}' --force`" in message
    assert_one_line_without_secrets(message)


def test_consent_required_from_compute_prints_the_exact_scope(tmp_path):
    scope = "https://auth.globus.org/scopes/facd7ccc-c5f4-42aa-916b-a0e270e2c2a9/all"
    RegisteredResponse(service="compute", path=f"/v2/endpoints/{HPC_ENDPOINT}/status", status=403, json={
        "code": "ConsentRequired", "reason": "Missing required consent",
        "authorization_parameters": {"session_message": "Missing required consent", "required_scopes": [scope]},
    }).add()

    with pytest.raises(CredentialsError) as err:
        make_backend(make_profile(tmp_path)).endpoint_status(HPC_ENDPOINT)

    message = str(err.value)
    assert "Globus 403 ConsentRequired: needs consent to " + scope in message and f"--scope {scope} --force" in message
    assert_one_line_without_secrets(message)


def test_the_watchers_client_is_told_to_grant_not_to_log_in(tmp_path, monkeypatch):
    monkeypatch.setenv("PTYCHOFLOW_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("PTYCHOFLOW_CLIENT_SECRET", SERVICE_SECRET)
    load_response(globus_sdk.ConfidentialAppAuthClient.oauth2_client_credentials_tokens)
    RegisteredResponse(service="transfer", path=f"/v0.10/endpoint/{HPC_COLLECTION}", status=403, json={
        "code": "ConsentRequired", "message": "Missing required data_access consent", "required_scopes": [str(DATA_ACCESS)],
    }).add()
    profile = make_profile(tmp_path, client_id=None)

    with pytest.raises(CredentialsError) as err:
        GlobusBackend(profile).collection_status(HPC_COLLECTION)

    message = str(err.value)
    assert f"the service client {CLIENT_ID} (PTYCHOFLOW_CLIENT_ID) cannot log in interactively" in message
    assert "ptychoflow login" not in message
    assert_one_line_without_secrets(message)


# -- INACTIVE runs -------------------------------------------------------------------------
def test_inactive_run_shows_the_consent_it_waits_for(tmp_path):
    add_run(inactive_run(consent_details()))
    info = make_backend(make_profile(tmp_path), [FLOW_ID]).get_run(RUN_ID)

    assert info.status is RunStatus.INACTIVE
    assert info.error.startswith(f"INACTIVE at TransferScan: needs consent to {required_flow_scope()};")
    assert f"--flow {FLOW_ID} --collection {HPC_COLLECTION} --scope '{required_flow_scope()}' --force`" in info.error
    assert info.error.endswith(f"then `ptychoflow runs resume {RUN_ID}`")


def test_inactive_run_resumes_only_after_the_consent(tmp_path):
    add_run(inactive_run(consent_details()))
    add_userinfo()
    add_consents(globus_sdk.SpecificFlowClient(FLOW_ID).scopes.user)  # the flow, but not data_access
    backend = make_backend(make_profile(tmp_path), [FLOW_ID])

    with pytest.raises(CredentialsError, match="is INACTIVE until Globus Auth gets consent to") as err:
        backend.resume_run(RUN_ID)
    assert f"--scope '{required_flow_scope()}'" in str(err.value)
    assert not [c for c in responses.calls if c.request.url.endswith("/resume")]

    # the person ran the printed login; Auth now holds the whole tree
    add_run(inactive_run(consent_details()))
    add_userinfo()
    add_consents(globus_sdk.Scope.parse(required_flow_scope()))
    resumed = load_response(globus_sdk.SpecificFlowClient.resume_run)
    add_run_for_resume = copy.deepcopy(resumed.json)
    info = make_backend(make_profile(tmp_path), [FLOW_ID]).resume_run(RUN_ID)

    assert responses.calls[-1].request.url.endswith(f"/runs/{RUN_ID}/resume")
    assert info.status is RunStatus(add_run_for_resume["status"])


def test_inactive_run_with_session_requirements(tmp_path):
    add_run(inactive_run(session_details()))
    backend = make_backend(make_profile(tmp_path), [FLOW_ID])

    info = backend.get_run(RUN_ID)
    assert "needs a login with ada@anl.gov; a session meeting policy 0a3b2f44" in info.error
    assert "--identity ada@anl.gov --policy 0a3b2f44-9c51-4e8e-b7a6-2b9f5fb1e2c1 --mfa --force" in info.error

    add_run(inactive_run(session_details()))
    with pytest.raises(CredentialsError) as err:
        backend.resume_run(RUN_ID)
    assert f"then `ptychoflow runs resume {RUN_ID} --no-check`" in str(err.value)

    load_response(globus_sdk.SpecificFlowClient.resume_run)
    add_run(inactive_run(session_details()))
    assert backend.resume_run(RUN_ID, check=False).status is RunStatus.ACTIVE


def test_login_passes_the_gare_requirements_to_globus_auth(tmp_path, monkeypatch, capsys):
    from ptychoflow.cli.main import main

    seen = {}

    def fake_login(app, *, auth_params=None, force=False):
        seen.update(params=auth_params, force=force)

    monkeypatch.setenv("PTYCHOFLOW_TOKEN_DIR", str(tmp_path / "tokens"))
    monkeypatch.setattr(globus_sdk.UserApp, "login", fake_login)
    write_profile(tmp_path)
    scope = required_flow_scope()
    with pytest.raises(SystemExit) as done:
        main(["login", "--profile", str(tmp_path), "--flow", FLOW_ID, "--scope", scope, "--identity", "ada@anl.gov",
              "--policy", "0a3b2f44-9c51-4e8e-b7a6-2b9f5fb1e2c1", "--mfa", "--json"])
        raise SystemExit(0)
    assert done.value.code == 0, capsys.readouterr().err
    params = seen["params"]
    assert params.required_scopes == [scope] and params.session_required_identities == ["ada@anl.gov"]
    assert params.session_required_policies == ["0a3b2f44-9c51-4e8e-b7a6-2b9f5fb1e2c1"] and params.session_required_mfa is True
    assert params.prompt == "login" and seen["force"] is True
    assert json.loads(capsys.readouterr().out)["scopes"] == [scope]


# -- validate_flow and validate_run --------------------------------------------------------
def test_validate_flow_returns_the_scopes_or_one_line_per_refusal(tmp_path):
    from ptychoflow.backends.globus import validation
    from ptychoflow.backends.globus.flows import FlowSource

    canned = get_response_set(globus_sdk.FlowsClient.validate_flow)
    good = FlowSource("simple", tmp_path / "simple.json", canned.metadata["success"], {"type": "object"})
    bad = FlowSource("broken", tmp_path / "broken.json", canned.metadata["invalid"], {"type": "object"})
    load_response(globus_sdk.FlowsClient.validate_flow)
    load_response(globus_sdk.FlowsClient.validate_flow, case="definition_error")
    client = make_backend(make_profile(tmp_path)).flows_client

    assert validation.validate_flow(client, good) == ["urn:globus:auth:scope:transfer.api.globus.org:all"]
    with pytest.raises(FlowDefinitionError) as err:
        validation.validate_flow(client, bad)
    assert str(err.value).startswith(f"{tmp_path}/broken.json: Globus Flows refused it (1 problem(s)): $.definition.States.Step1: A state of type 'Action'")
    assert "\n" not in str(err.value)


def test_validate_run_names_the_refused_field(tmp_path):
    load_response(globus_sdk.SpecificFlowClient.validate_run, case="invalid_input_payload")
    backend = make_backend(make_profile(tmp_path), [FLOW_ID])
    with pytest.raises(InputError) as err:
        backend.validate_run(FLOW, {"bool": "not-a-boolean"})
    assert str(err.value) == "ptychoflow hello_scan input: $.bool: 'not-a-boolean' is not of type 'boolean'"

    load_response(globus_sdk.SpecificFlowClient.validate_run)
    assert backend.validate_run(FLOW, {"param": "value"}) is None


def test_validate_run_when_not_a_starter(tmp_path):
    load_response(globus_sdk.SpecificFlowClient.validate_run, case="not_a_flow_starter")
    with pytest.raises(GlobusServiceError, match="403 FORBIDDEN: .*Missing permissions: RUN"):
        make_backend(make_profile(tmp_path), [FLOW_ID]).validate_run(FLOW, {"param": "value"})


# -- data_access only where it applies --------------------------------------------------------
@pytest.mark.parametrize("entity_type, high_assurance, asked", [
    ("GCSv5_mapped_collection", False, True),
    ("GCSv5_mapped_collection", True, False),   # High Assurance: no data_access scope
    ("GCSv5_guest_collection", False, False),
    ("GCP_mapped_collection", False, False),    # Globus Connect Personal
    ("GCP_guest_collection", False, False),
])
def test_data_access_is_asked_only_where_it_exists(tmp_path, entity_type, high_assurance, asked):
    add_collection(HPC_COLLECTION, entity_type, high_assurance=high_assurance)
    add_collection(BEAMLINE_COLLECTION, GUEST)
    backend = make_backend(make_profile(tmp_path), [FLOW_ID], collections={})  # a fresh site: Transfer is asked

    assert backend.learn_collections() == ([HPC_COLLECTION] if asked else [])
    backend.flow_client(FLOW_ID)
    scopes = " ".join(str(s) for s in backend.app.scope_requirements[FLOW_ID])
    assert (f"{HPC_COLLECTION}/data_access" in scopes) is asked
    assert f"{BEAMLINE_COLLECTION}/data_access" not in scopes
    missing_scope = load_response(globus_sdk.SpecificFlowClient.run_flow, case="missing_scope_error")
    assert missing_scope.metadata["flow_id"] == FLOW_ID
    with pytest.raises(CredentialsError) as err:
        backend.start_run(FLOW, {})
    assert (f"--collection {HPC_COLLECTION}" in str(err.value)) is asked
    assert f"--collection {BEAMLINE_COLLECTION}" not in str(err.value)


def test_the_watchers_client_asks_for_data_access_on_mapped_collections(tmp_path, monkeypatch):
    monkeypatch.setenv("PTYCHOFLOW_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("PTYCHOFLOW_CLIENT_SECRET", SERVICE_SECRET)
    profile = make_profile(tmp_path, client_id=None, flow_id=FLOW_ID)
    make_backend(profile)  # records the site's collection types (HPC mapped, beamline guest)
    backend = GlobusBackend(profile)  # the watcher's own app: client credentials, tokens in memory

    assert isinstance(backend.app, globus_sdk.ClientApp)
    [scope] = backend.app.scope_requirements[FLOW_ID]
    assert str(scope) == str(flow_scope(FLOW_ID, [HPC_COLLECTION]))
    assert f"{BEAMLINE_COLLECTION}/data_access" not in str(scope)

    token = load_response(globus_sdk.ConfidentialAppAuthClient.oauth2_client_credentials_tokens)
    assert token.metadata  # the client credentials grant asks for the flow scope with its dependencies
    backend.app.get_authorizer(FLOW_ID).get_authorization_header()
    sent = responses.calls[-1].request.body
    assert "data_access" in (sent if isinstance(sent, str) else sent.decode())


def test_login_refuses_a_collection_without_data_access(tmp_path, monkeypatch, capsys):
    from ptychoflow.cli.main import main

    monkeypatch.setenv("PTYCHOFLOW_TOKEN_DIR", str(tmp_path / "tokens"))
    monkeypatch.setattr(globus_sdk.UserApp, "login", lambda app, **kw: None)
    write_profile(tmp_path)
    make_backend(make_profile(tmp_path))  # the site's collection types are known
    with pytest.raises(SystemExit) as done:
        main(["login", "--profile", str(tmp_path), "--flow", FLOW_ID, "--collection", BEAMLINE_COLLECTION])
    err = capsys.readouterr().err
    assert done.value.code == 2 and "GCSv5_guest_collection" in err and "no data_access" in err


# -- the CLI on top: runs resume and flows run --dry-run ----------------------------------------
def cli_with(backend, profile, monkeypatch, args):
    """The CLI with --profile pointing at the profile's file, and `backend` as its backend."""
    from click.testing import CliRunner

    import ptychoflow.backends
    from ptychoflow.cli.main import cli

    write_profile(profile.root, **{k: v for k, v in profile.globus.model_dump().items() if k != "client_id"})
    monkeypatch.setattr(ptychoflow.backends, "get_backend", lambda _profile: backend)
    return CliRunner().invoke(cli, [*args, "--profile", str(profile.root)])


def test_runs_resume_prints_the_consent_command_and_resumes_nothing(tmp_path, monkeypatch):
    add_run(inactive_run(consent_details()))
    add_userinfo()
    add_consents(None)
    profile = make_profile(tmp_path)
    result = cli_with(make_backend(profile, [FLOW_ID]), profile, monkeypatch, ["runs", "resume", RUN_ID])
    assert result.exit_code != 0
    assert isinstance(result.exception, CredentialsError)
    assert f"--scope '{required_flow_scope()}' --force" in str(result.exception)
    assert not [c for c in responses.calls if c.request.url.endswith("/resume")]


def test_runs_resume_no_check_after_a_session_update(tmp_path, monkeypatch):
    add_run(inactive_run(session_details()))
    load_response(globus_sdk.SpecificFlowClient.resume_run)
    profile = make_profile(tmp_path)
    result = cli_with(make_backend(profile, [FLOW_ID]), profile, monkeypatch, ["runs", "resume", RUN_ID, "--no-check"])
    assert result.exit_code == 0, result.output
    assert f"{RUN_ID}  ACTIVE" in result.output and "engine worker" not in result.output


def test_flows_run_dry_run_asks_validate_run_and_starts_nothing(tmp_path, monkeypatch):
    profile = make_profile(tmp_path, flow_id=FLOW_ID)
    flow_doc = get_response_set(globus_sdk.FlowsClient.get_flow).lookup("default").json
    from ptychoflow.backends.globus.flows import CHECKSUM_KEYWORD, load_flow_source

    source = load_flow_source(FLOW_FILE)
    RegisteredResponse(service="flows", path=f"/flows/{FLOW_ID}",
                       json=dict(flow_doc, id=FLOW_ID, keywords=["ptychoflow", "hello_scan", CHECKSUM_KEYWORD + source.checksum],
                                 flow_viewers=[], flow_starters=[], flow_administrators=[])).add()
    RegisteredResponse(service="flows", path=f"/flows/{FLOW_ID}", method="PUT", json=flow_doc).add()
    load_response(globus_sdk.SpecificFlowClient.validate_run, case="invalid_input_payload")
    backend = make_backend(profile, [FLOW_ID])

    result = cli_with(backend, profile, monkeypatch, ["flows", "run", str(FLOW_FILE), "--input", '{"bool": "not-a-boolean"}', "--dry-run"])

    assert isinstance(result.exception, InputError) and "$.bool: 'not-a-boolean' is not of type 'boolean'" in str(result.exception)
    assert not [c for c in responses.calls if c.request.url.endswith("/run")]
    load_response(globus_sdk.SpecificFlowClient.validate_run)
    result = cli_with(backend, profile, monkeypatch, ["flows", "run", str(FLOW_FILE), "--input", '{"param": "value"}', "--dry-run"])
    assert result.exit_code == 0 and "ok: the globus backend accepts this input" in result.output
