"""Shared pieces for tests/test_globus_*.py: a profile, an app with seeded tokens, HTTP mocking.

Tokens are seeded into an in-memory storage so the real ``UserApp`` authorizes requests
without a login; every HTTP exchange goes through ``responses`` (globus_sdk.testing).
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import globus_sdk
import pytest
import responses
from globus_sdk.scopes import GCSCollectionScopes, TransferScopes
from globus_sdk.testing import RegisteredResponse, get_last_request, get_response_set
from globus_sdk.token_storage import MemoryTokenStorage, TokenStorageData, TokenStorage

from ptychoflow.backends.globus import GlobusBackend
from ptychoflow.backends.globus.auth import build_app, scope_requirements
from ptychoflow.backends.globus.collections import CollectionTypes
from ptychoflow.profile import Profile

FIXTURES = Path(__file__).parent / "fixtures" / "globus"
FLOW_FILE = FIXTURES / "hello_scan.json"
CLIENT_ID = "5b1c5b8e-7f4a-4a55-8a0a-2b3c4d5e6f70"
GROUP_ID = "8c6f7e2a-1d3b-4f5a-9b8c-7d6e5f4a3b2c"
HPC_ENDPOINT = "2f9b8e1c-3a4d-4e5f-8a9b-0c1d2e3f4a5b"
EDGE_ENDPOINT = "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b"
BEAMLINE_COLLECTION = "7e1b8ec7-a606-4c23-96c7-a2d930a3a55f"
HPC_COLLECTION = "d5049dd6-ce9c-4f9e-853f-c25069f369f8"
SECRET_TOKEN = "SeCrEtAcCeSsToKeN-do-not-leak"


def profile_data(**globus: Any) -> dict[str, Any]:
    """The profile as TOML-shaped data; ``None`` values are left out."""
    settings = {key: value for key, value in {"client_id": CLIENT_ID, "group_id": GROUP_ID, **globus}.items() if value is not None}
    return {
        "backend": "globus",
        "beamline": {"path": "acq", "collection_id": BEAMLINE_COLLECTION},
        "hpc": {"path": "hpc", "collection_id": HPC_COLLECTION, "endpoint_id": HPC_ENDPOINT},
        "edge": {"path": "edge", "endpoint_id": EDGE_ENDPOINT},
        "globus": settings,
    }


def make_profile(root: Path, **globus: Any) -> Profile:
    """A globus-backend profile rooted at ``root`` (no file needed)."""
    profile = Profile.model_validate(profile_data(**globus))
    profile.root = root
    return profile


def write_profile(root: Path, **globus: Any) -> Path:
    """The same profile as a TOML file, for CLI tests."""
    import tomli_w

    path = root / "ptychoflow.toml"
    path.write_text(tomli_w.dumps(profile_data(**globus)))
    return path


def seed_tokens(storage: TokenStorage, flow_ids: list[str] = ()) -> None:
    """Valid-looking tokens for every resource server ptychoflow asks for."""
    data = {}
    for server, scopes in scope_requirements(flow_ids).items():
        data[server] = TokenStorageData(
            resource_server=server,
            identity_id=None,
            scope=" ".join(scope.scope_string for scope in scopes),
            access_token=f"{SECRET_TOKEN}-{server}",
            refresh_token=f"{SECRET_TOKEN}-refresh-{server}",
            expires_at_seconds=int(time.time()) + 3600,
            token_type="Bearer",
        )
    storage.store_token_data_by_resource_server(data)


MAPPED = "GCSv5_mapped_collection"
GUEST = "GCSv5_guest_collection"
# What Transfer says about the profile's collections at a typical site: the HPC file system
# is a mapped collection (takes a data_access consent), the beamline share a guest one.
SITE_COLLECTIONS = {HPC_COLLECTION: MAPPED, BEAMLINE_COLLECTION: GUEST}


def collection_doc(collection_id: str, entity_type: str, *, high_assurance: bool = False) -> dict[str, Any]:
    """Transfer's ``get_endpoint`` document (the SDK's canned one) for a GCSv5 collection."""
    doc = copy.deepcopy(get_response_set(globus_sdk.TransferClient.get_endpoint).lookup("default").json)
    doc.update(id=collection_id, entity_type=entity_type, high_assurance=high_assurance,
               display_name=f"{entity_type} {collection_id[:8]}", gcs_version="5.4.80")
    return doc


def add_collection(collection_id: str, entity_type: str, *, high_assurance: bool = False) -> None:
    """Transfer answers ``get_endpoint`` for this collection."""
    RegisteredResponse(service="transfer", path=f"/v0.10/endpoint/{collection_id}",
                       json=collection_doc(collection_id, entity_type, high_assurance=high_assurance)).add()


def make_backend(profile: Profile, flow_ids: list[str] = (), *, collections: dict[str, str] | None = None) -> GlobusBackend:
    """A backend with seeded tokens, at a site whose collection types were looked up before
    (``endpoints status`` or ``preflight`` records them); ``collections={}`` for a fresh site."""
    storage = MemoryTokenStorage()
    seed_tokens(storage, list(flow_ids))
    known = CollectionTypes(profile.state_path)
    for collection_id, entity_type in (SITE_COLLECTIONS if collections is None else collections).items():
        known.record(collection_id, collection_doc(collection_id, entity_type))
    return GlobusBackend(profile, app=build_app(profile, flow_ids=flow_ids, token_storage=storage))


def last_json() -> dict[str, Any]:
    request = get_last_request()
    assert request is not None, "no request was sent"
    return json.loads(request.body)


@pytest.fixture(autouse=True)
def mocked_http(monkeypatch):
    """Every test talks to ``responses`` only; no Globus env leaks in from the host."""
    for name in ("GLOBUS_SDK_ENVIRONMENT", "PTYCHOFLOW_CLIENT_ID", "PTYCHOFLOW_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    responses.start()
    yield
    responses.stop()
    responses.reset()


# -- runs waiting for a person: Globus Auth requirements in a run's details ------------------
RESUME = get_response_set(globus_sdk.SpecificFlowClient.resume_run)
RUN_DOC = RESUME.lookup("default").json  # the SDK's canned two-hop transfer run
RUN_ID, FLOW_ID = RESUME.metadata["run_id"], RESUME.metadata["flow_id"]
USER_ID = "ae341a98-d274-11e5-b888-dbae3a8ba545"
DATA_ACCESS = TransferScopes.all.with_dependency(GCSCollectionScopes(HPC_COLLECTION).data_access.with_optional(True))


def required_flow_scope() -> str:
    """What Flows asks for when a Transfer state meets a mapped collection without consent."""
    return str(globus_sdk.SpecificFlowClient(FLOW_ID).scopes.user.with_dependency(DATA_ACCESS))


def inactive_run(details: dict) -> dict:
    """A run document as Flows returns it for a run waiting on its creator (shape of the service's)."""
    doc = copy.deepcopy(RUN_DOC)
    doc.update(status="INACTIVE", display_status="INACTIVE", completion_time=None, details=details)
    return doc


def consent_details() -> dict:
    urn = f"urn:globus:auth:identity:{USER_ID}"
    return {
        "code": "ConsentRequired",
        "description": "The run needs a consent to continue",
        "required_scope": required_flow_scope(),
        "state_name": "TransferScan",
        "action_statuses": [{
            "action_id": "9GZtjyAPnBmY", "creator_id": urn, "state_name": "TransferScan", "status": "INACTIVE",
            "start_time": "2024-05-01T08:00:01+00:00", "completion_time": "2024-05-01T08:00:02+00:00",
            "details": {"code": "ConsentRequired", "description": "Missing required data_access consent",
                        "required_scope": str(DATA_ACCESS), "resolution_url": None},
        }],
    }


def session_details() -> dict:
    return {
        "code": "AuthorizationParameters",
        "description": "The collection requires a recent login from the facility",
        "state_name": "TransferScan",
        "authorization_parameters": {
            "session_message": "Log in with your facility identity, with MFA",
            "session_required_identities": ["ada@anl.gov"],
            "session_required_policies": ["0a3b2f44-9c51-4e8e-b7a6-2b9f5fb1e2c1"],
            "session_required_mfa": True,
        },
    }
