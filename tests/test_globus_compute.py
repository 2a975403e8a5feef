"""Registering functions with the real globus_compute_sdk.Client (HTTP mocked by SDK fixtures)."""

from __future__ import annotations

import platform

import globus_sdk
import pytest
import responses
from globus_sdk.testing import RegisteredResponse, get_response_set, load_response

from globus_support import EDGE_ENDPOINT, GROUP_ID, HPC_ENDPOINT, last_json, make_backend, make_profile, mocked_http  # noqa: F401
from ptychoflow.backends.globus.compute import python_mismatch
from ptychoflow.errors import InputError
from ptychoflow.fs import sha256_file
from ptychoflow.function_registry import FunctionRegistry

REGISTER = get_response_set(globus_sdk.ComputeClientV3.register_function)
FUNCTION_ID = REGISTER.metadata["function_id"]
SOURCE = "def reconstruct(scan, iterations=100):\n    \"\"\"Runs rPIE remotely.\"\"\"\n    return {'scan': scan}\n"


@pytest.fixture
def function_file(tmp_path):
    path = tmp_path / "reconstruct.py"
    path.write_text(SOURCE)
    return path


def test_registration_payload_and_registry(tmp_path, function_file):
    load_response(globus_sdk.ComputeClientV3.register_function)
    backend = make_backend(make_profile(tmp_path))

    registered = backend.register_function(function_file, "reconstruct")

    sent = last_json()
    sha = sha256_file(function_file)
    assert sent["function_name"] == "reconstruct"
    assert sent["function_code"] == SOURCE
    assert sent["serialized"] is False
    assert sent["group"] == GROUP_ID
    assert sent["meta"]["python_version"] == platform.python_version()
    assert sha in sent["description"]
    assert registered.function_id == FUNCTION_ID
    record = FunctionRegistry(backend.profile.state_path).get("globus", "reconstruct")
    assert (record.function_id, record.source_sha256) == (FUNCTION_ID, sha)


def test_reregisters_only_when_source_changes(tmp_path, function_file):
    load_response(globus_sdk.ComputeClientV3.register_function)
    backend = make_backend(make_profile(tmp_path))
    backend.register_function(function_file, "reconstruct")
    backend.register_function(function_file, "reconstruct")
    assert len(responses.calls) == 1

    function_file.write_text(SOURCE + "\n# tuned\n")
    backend.register_function(function_file, "reconstruct")
    assert len(responses.calls) == 2


def test_missing_entry_point_is_one_clear_error(tmp_path):
    path = tmp_path / "train.py"
    path.write_text("def fit():\n    pass\n")
    with pytest.raises(InputError, match="no top-level function `train`"):
        make_backend(make_profile(tmp_path)).register_function(path, "train")


def test_register_all_warns_on_endpoint_python_mismatch(tmp_path, function_file, caplog):
    load_response(globus_sdk.ComputeClientV3.register_function)
    doc = get_response_set(globus_sdk.ComputeClientV2.get_endpoint).lookup("default").json
    for endpoint, version in ((HPC_ENDPOINT, "2.7.18"), (EDGE_ENDPOINT, platform.python_version())):
        body = dict(doc, uuid=endpoint, metadata={"python_version": version})
        RegisteredResponse(service="compute", path=f"/v2/endpoints/{endpoint}", json=body).add()

    backend = make_backend(make_profile(tmp_path))
    with caplog.at_level("WARNING"):
        done = backend.register_all({"reconstruct": function_file})

    assert [f.name for f in done] == ["reconstruct"]
    warnings = [r.getMessage() for r in caplog.records if "runs Python" in r.getMessage()]
    assert len(warnings) == 1 and HPC_ENDPOINT in warnings[0] and "2.7.18" in warnings[0]


def test_python_mismatch_rules():
    assert python_mismatch({"python_version": "3.11.9"}, "ep", local="3.11.2") is None
    assert python_mismatch({}, "ep", local="3.11.2") is None
    assert "3.12.1" in python_mismatch({"details": {"python_version": "3.12.1"}}, "ep", local="3.11.2")


def test_endpoint_status(tmp_path):
    status = load_response(globus_sdk.ComputeClientV2.get_endpoint_status)
    result = make_backend(make_profile(tmp_path)).endpoint_status(status.metadata["endpoint_id"])
    assert result["status"] == "online"


def test_invisible_endpoint_is_a_warning_not_a_failure(tmp_path, function_file, caplog):
    load_response(globus_sdk.ComputeClientV3.register_function)
    for endpoint in (HPC_ENDPOINT, EDGE_ENDPOINT):
        RegisteredResponse(service="compute", path=f"/v2/endpoints/{endpoint}", status=403,
                           json={"code": "FORBIDDEN", "reason": "not yours"}).add()
    with caplog.at_level("WARNING"):
        done = make_backend(make_profile(tmp_path)).register_all({"reconstruct": function_file})
    assert done[0].function_id == FUNCTION_ID
    assert "Python version not checked" in caplog.text
