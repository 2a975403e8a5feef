"""Deploying flows to Globus Flows: create, no-op, update, recreate, pinned ids."""

from __future__ import annotations

import copy
import json
import shutil

import globus_sdk
import pytest
import responses
from globus_sdk.testing import RegisteredResponse, get_response_set, load_response

from globus_support import FLOW_FILE, GROUP_ID, last_json, make_backend, make_profile, mocked_http  # noqa: F401
from ptychoflow.backends.base import flow_checksum
from ptychoflow.backends.globus.flows import CHECKSUM_KEYWORD, load_flow_source
from ptychoflow.errors import FlowDefinitionError

CREATED = get_response_set(globus_sdk.FlowsClient.create_flow).lookup("default")
CREATED_ID = CREATED.json["id"]
GROUP_URN = f"urn:globus:groups:id:{GROUP_ID}"


ROLES = ("flow_viewers", "flow_starters", "flow_administrators")


def flow_doc(flow_id: str, checksum: str | None, *, roles: list[str] | None = None, updated: str = "2024-01-01T00:00:00+00:00") -> dict:
    """A flow as a previous ptychoflow deploy left it (group roles included unless ``roles`` says)."""
    doc = copy.deepcopy(CREATED.json)
    doc.update(id=flow_id, title="ptychoflow hello_scan", updated_at=updated,
               keywords=["ptychoflow", "hello_scan"] + ([CHECKSUM_KEYWORD + checksum] if checksum else []))
    doc.update({role: list([GROUP_URN] if roles is None else roles) for role in ROLES})
    return doc


def mock_search(*docs: dict) -> None:
    """Globus Flows' answer to ``list_flows`` (the search a deploy makes when it knows no id)."""
    RegisteredResponse(service="flows", path="/flows", json={"flows": list(docs), "limit": 20, "has_next_page": False}).add()


def mock_get_flow(flow_id: str, checksum: str | None = None, status: int = 200) -> None:
    body = flow_doc(flow_id, checksum) if status == 200 else {"code": "NOT_FOUND", "description": "no such flow"}
    RegisteredResponse(service="flows", path=f"/flows/{flow_id}", method="GET", status=status, json=body).add()


def test_create_sends_the_file_unchanged_with_group_roles(tmp_path):
    mock_search()
    load_response(globus_sdk.FlowsClient.create_flow)
    backend = make_backend(make_profile(tmp_path, subscription_id="00000000-3ba7-456e-9df7-fc40028f3331"))

    deployed = backend.deploy_flow(FLOW_FILE)

    sent = last_json()
    assert sent["definition"] == json.loads(FLOW_FILE.read_text())
    assert sent["input_schema"] == json.loads(FLOW_FILE.with_name("hello_scan.schema.json").read_text())
    assert sent["title"] == "ptychoflow hello_scan"
    for role in ("flow_viewers", "flow_starters", "flow_administrators"):
        assert sent[role] == [GROUP_URN]
    assert sent["subscription_id"] == "00000000-3ba7-456e-9df7-fc40028f3331"
    assert CHECKSUM_KEYWORD + deployed.checksum in sent["keywords"]
    assert deployed.flow_id == CREATED_ID
    assert backend.flow_state.get("hello_scan")["checksum"] == deployed.checksum


def test_no_group_no_subscription_sends_no_roles(tmp_path):
    mock_search()
    load_response(globus_sdk.FlowsClient.create_flow)
    backend = make_backend(make_profile(tmp_path, group_id=None))
    backend.deploy_flow(FLOW_FILE)
    sent = last_json()
    assert "flow_viewers" not in sent and "subscription_id" not in sent


def test_unchanged_flow_is_not_redeployed(tmp_path):
    backend = make_backend(make_profile(tmp_path))
    source = load_flow_source(FLOW_FILE)
    backend.flow_state.put("hello_scan", CREATED_ID, source.checksum)
    mock_get_flow(CREATED_ID, source.checksum)

    deployed = backend.deploy_flow(FLOW_FILE)

    assert deployed.flow_id == CREATED_ID
    assert [call.request.method for call in responses.calls] == ["GET"]


def test_changed_definition_updates_in_place(tmp_path):
    flow = tmp_path / "hello_scan.json"
    shutil.copy(FLOW_FILE, flow)
    shutil.copy(FLOW_FILE.with_name("hello_scan.schema.json"), tmp_path)
    backend = make_backend(make_profile(tmp_path))
    old = load_flow_source(flow).checksum
    backend.flow_state.put("hello_scan", CREATED_ID, old)
    mock_get_flow(CREATED_ID, old)
    RegisteredResponse(service="flows", path=f"/flows/{CREATED_ID}", method="PUT", json=flow_doc(CREATED_ID, None)).add()

    definition = json.loads(flow.read_text())
    definition["Comment"] = "edited by facility staff"
    flow.write_text(json.dumps(definition))
    deployed = backend.deploy_flow(flow)

    sent = last_json()
    assert responses.calls[-1].request.method == "PUT"
    assert sent["definition"] == definition
    assert deployed.checksum != old and CHECKSUM_KEYWORD + deployed.checksum in sent["keywords"]


def test_flow_deleted_in_web_app_is_recreated(tmp_path):
    backend = make_backend(make_profile(tmp_path))
    backend.flow_state.put("hello_scan", "11111111-1111-4111-8111-111111111111", "stale")
    mock_get_flow("11111111-1111-4111-8111-111111111111", status=404)
    mock_search()
    load_response(globus_sdk.FlowsClient.create_flow)

    deployed = backend.deploy_flow(FLOW_FILE)

    assert deployed.flow_id == CREATED_ID
    assert backend.flow_state.get("hello_scan")["flow_id"] == CREATED_ID


def test_pinned_flow_id_is_updated_never_recreated(tmp_path):
    pinned = globus_sdk.testing.get_response_set(globus_sdk.FlowsClient.update_flow).metadata["flow_id"]
    backend = make_backend(make_profile(tmp_path, flow_id=pinned))
    mock_get_flow(pinned, "an-older-checksum")
    load_response(globus_sdk.FlowsClient.update_flow)

    assert backend.deploy_flow(FLOW_FILE).flow_id == pinned
    assert last_json()["definition"] == json.loads(FLOW_FILE.read_text())


def test_pinned_flow_that_is_gone_is_an_error(tmp_path):
    pinned = "22222222-2222-4222-8222-222222222222"
    backend = make_backend(make_profile(tmp_path, flow_id=pinned))
    mock_get_flow(pinned, status=404)
    with pytest.raises(FlowDefinitionError, match=f"pinned .*{pinned}"):
        backend.deploy_flow(FLOW_FILE)


def test_a_second_host_finds_the_flow_instead_of_duplicating_it(tmp_path):
    """No id on this machine: the flow another host deployed is found by title and keywords."""
    source = load_flow_source(FLOW_FILE)
    other = flow_doc("33333333-3333-4333-8333-333333333333", source.checksum, updated="2024-03-01T00:00:00+00:00")
    older = flow_doc("44444444-4444-4444-8444-444444444444", "stale", updated="2024-02-01T00:00:00+00:00")
    stranger = dict(flow_doc("55555555-5555-4555-8555-555555555555", source.checksum), keywords=["hello_scan"])
    mock_search(older, stranger, other)
    backend = make_backend(make_profile(tmp_path))

    deployed = backend.deploy_flow(FLOW_FILE)

    assert deployed.flow_id == other["id"]
    assert [call.request.method for call in responses.calls] == ["GET"]  # found, current: nothing to send
    query = responses.calls[0].request.params
    assert query["filter_fulltext"] == "ptychoflow hello_scan" and query["filter_roles"] == "flow_owner,flow_administrator"
    assert backend.flow_state.get("hello_scan")["flow_id"] == other["id"]


def test_roles_set_elsewhere_are_kept(tmp_path):
    source = load_flow_source(FLOW_FILE)
    colleague = "urn:globus:auth:identity:0c8f2a4e-2f6b-4d0a-9a43-5f0a6f6e9b10"
    backend = make_backend(make_profile(tmp_path))
    backend.flow_state.put("hello_scan", CREATED_ID, source.checksum)
    RegisteredResponse(service="flows", path=f"/flows/{CREATED_ID}", json=flow_doc(CREATED_ID, source.checksum, roles=[colleague])).add()
    RegisteredResponse(service="flows", path=f"/flows/{CREATED_ID}", method="PUT", json=flow_doc(CREATED_ID, source.checksum)).add()

    backend.deploy_flow(FLOW_FILE)

    sent = last_json()
    assert sent == {role: [colleague, GROUP_URN] for role in ROLES}  # roles only: the definition is current


def test_a_changed_flow_keeps_roles_set_elsewhere(tmp_path):
    colleague = "urn:globus:groups:id:6a1e0b5c-9f3d-4e2a-8b7c-1d2e3f4a5b6c"
    backend = make_backend(make_profile(tmp_path))
    backend.flow_state.put("hello_scan", CREATED_ID, "stale")
    RegisteredResponse(service="flows", path=f"/flows/{CREATED_ID}",
                       json=flow_doc(CREATED_ID, "stale", roles=[GROUP_URN, colleague])).add()
    RegisteredResponse(service="flows", path=f"/flows/{CREATED_ID}", method="PUT", json=flow_doc(CREATED_ID, None)).add()

    backend.deploy_flow(FLOW_FILE)

    sent = last_json()
    assert sent["definition"] == json.loads(FLOW_FILE.read_text())
    assert not any(role in sent for role in ROLES)  # the group is there already; nobody is removed


def test_checksum_ignores_formatting_and_missing_schema_is_named(tmp_path):
    source = load_flow_source(FLOW_FILE)
    assert flow_checksum(json.loads(json.dumps(source.definition, indent=7)), source.input_schema) == source.checksum
    lonely = tmp_path / "lonely.json"
    lonely.write_text("{}")
    with pytest.raises(FlowDefinitionError, match="lonely.schema.json"):
        load_flow_source(lonely)
