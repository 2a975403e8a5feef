"""Runs on Globus Flows: start (label, tags, roles), status + timeline, logs, cancel, resume, wait."""

from __future__ import annotations

import copy

import globus_sdk
import pytest
import responses
from globus_sdk.testing import RegisteredResponse, get_response_set, load_response

from globus_support import GROUP_ID, HPC_COLLECTION, last_json, make_backend, make_profile, mocked_http, write_profile  # noqa: F401
from ptychoflow.backends.base import DeployedFlow, RunStatus
from ptychoflow.backends.polling import PollBackoff, poll_until
from ptychoflow.backends.globus.runs import LABEL_MAX, timeline, truncate_label
from ptychoflow.errors import CredentialsError, PtychoflowError

RUN_FLOW = get_response_set(globus_sdk.SpecificFlowClient.run_flow)
FLOW_ID = RUN_FLOW.metadata["flow_id"]
TWO_HOP_RUN = RUN_FLOW.lookup("default").json
GET_RUN = get_response_set(globus_sdk.FlowsClient.get_run)
RUN_ID = GET_RUN.metadata["run_id"]
LOG_ENTRIES = get_response_set(globus_sdk.FlowsClient.get_run_logs).lookup("default").json["entries"]
GROUP_URN = f"urn:globus:groups:id:{GROUP_ID}"
FLOW = DeployedFlow(FLOW_ID, "ptychoflow hello_scan", "c0ffee")


def add_log(run_id: str, entries=LOG_ENTRIES) -> None:
    body = {"entries": entries, "limit": 10, "has_next_page": False}
    RegisteredResponse(service="flows", path=f"/runs/{run_id}/log", json=body).add()


def add_run(doc: dict) -> None:
    RegisteredResponse(service="flows", path=f"/runs/{doc['run_id']}", json=doc).add()


def test_start_run_sends_body_label_tags_and_group_roles(tmp_path):
    load_response(globus_sdk.SpecificFlowClient.run_flow)
    backend = make_backend(make_profile(tmp_path), [FLOW_ID])
    body = {"source": {"id": HPC_COLLECTION, "path": "/scan_0001.h5"}}
    label = "commissioning reconstruct_and_train " + "x" * 80 + " scan_0001.h5"

    info = backend.start_run(FLOW, body, label=label, tags=["ptychoflow", "", "scan_0001", "ptychoflow"])

    sent = last_json()
    assert sent["body"] == body
    assert len(sent["label"]) == LABEL_MAX and sent["label"].startswith("commissioning") and sent["label"].endswith("scan_0001.h5")
    assert sent["tags"] == ["ptychoflow", "scan_0001"]
    assert sent["run_monitors"] == [GROUP_URN] and sent["run_managers"] == [GROUP_URN]
    assert info.run_id == TWO_HOP_RUN["run_id"] and info.status is RunStatus.ACTIVE
    assert info.web_url == f"https://app.globus.org/runs/{info.run_id}"


def test_get_run_maps_status_output_and_timeline(tmp_path):
    load_response(globus_sdk.FlowsClient.get_run)
    add_log(RUN_ID)
    info = make_backend(make_profile(tmp_path)).get_run(RUN_ID)

    assert info.status is RunStatus.SUCCEEDED and info.label == "My Cool Run"
    assert info.output["HelloResult"]["status"] == "SUCCEEDED"
    [step] = info.timeline
    assert (step.name, step.status) == ("SyncHelloWorld", "SUCCEEDED")
    assert step.duration == pytest.approx(31.850 - 30.715)
    assert info.completed > info.created


def test_run_log_follows_pagination(tmp_path):
    paged = load_response(globus_sdk.FlowsClient.get_run_logs, case="paginated")
    entries = make_backend(make_profile(tmp_path)).get_run_log(paged.metadata["run_id"])
    assert len(entries) > 1 and len(responses.calls) == 2


def test_cancel_reports_ended(tmp_path):
    cancel = load_response(globus_sdk.FlowsClient.cancel_run)
    info = make_backend(make_profile(tmp_path)).cancel_run(cancel.metadata["run_id"])
    assert info.status is RunStatus.ENDED


def test_resume_uses_the_runs_flow(tmp_path):
    resume = load_response(globus_sdk.SpecificFlowClient.resume_run)
    add_run(TWO_HOP_RUN)
    backend = make_backend(make_profile(tmp_path), [resume.metadata["flow_id"]])
    info = backend.resume_run(resume.metadata["run_id"])
    assert responses.calls[-1].request.url.endswith(f"/runs/{info.run_id}/resume")
    assert info.status is RunStatus.ACTIVE


def test_list_runs(tmp_path):
    load_response(globus_sdk.FlowsClient.list_runs)
    [info] = make_backend(make_profile(tmp_path)).list_runs(limit=5)
    assert info.status is RunStatus.SUCCEEDED


def test_missing_scope_names_the_login_command(tmp_path):
    load_response(globus_sdk.SpecificFlowClient.run_flow, case="missing_scope_error")
    backend = make_backend(make_profile(tmp_path), [FLOW_ID])
    with pytest.raises(CredentialsError) as err:
        backend.start_run(FLOW, {})
    message = str(err.value)
    assert "MISSING_SCOPE" in message and f"--flow {FLOW_ID}" in message and f"--collection {HPC_COLLECTION}" in message
    assert "\n" not in message


def test_wait_polls_with_backoff_until_finished(tmp_path):
    active = copy.deepcopy(GET_RUN.lookup("default").responses[0].json)
    active.update(status="ACTIVE", completion_time=None)
    for doc in (active, active):
        add_run(doc)
    load_response(globus_sdk.FlowsClient.get_run)
    add_log(RUN_ID)
    sleeps: list[float] = []
    info = make_backend(make_profile(tmp_path)).wait_run(
        RUN_ID, backoff=PollBackoff(initial=1, factor=2, maximum=3, jitter=0), sleep=sleeps.append
    )
    assert info.status is RunStatus.SUCCEEDED
    assert sleeps == [1, 2]


def test_poll_until_gives_up_at_timeout():
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    done = poll_until(lambda: False, timeout=10, backoff=PollBackoff(initial=4, factor=1, jitter=0), sleep=sleep, clock=lambda: now[0])
    assert done is False and now[0] == 10


def test_label_and_timeline_helpers():
    assert truncate_label("  short   label ") == "short label"
    long = truncate_label("a" * 100 + "END")
    assert len(long) == LABEL_MAX and long.endswith("END") and "..." in long
    failed = timeline([
        {"code": "ActionStarted", "time": "2024-01-01T00:00:00+00:00", "details": {"state_name": "Train"}},
        {"code": "ActionFailed", "time": "2024-01-01T00:01:00+00:00", "description": "OOM", "details": {"state_name": "Train"}},
        {"code": "PassStarted", "time": "2024-01-01T00:01:00+00:00", "details": {"state_name": "Next"}},
    ])
    assert [(s.name, s.status, s.duration, s.error) for s in failed] == [("Train", "FAILED", 60.0, "OOM"), ("Next", "ACTIVE", None, None)]


def test_transient_errors_are_retried_by_the_sdk(tmp_path):
    RegisteredResponse(service="flows", path=f"/runs/{RUN_ID}", status=503, headers={"Retry-After": "0"}, json={"code": "UNAVAILABLE"}).add()
    load_response(globus_sdk.FlowsClient.get_run)
    add_log(RUN_ID)
    info = make_backend(make_profile(tmp_path)).get_run(RUN_ID)
    assert info.status is RunStatus.SUCCEEDED
    assert [call.response.status_code for call in responses.calls[:2]] == [503, 200]


def test_persistent_outage_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PTYCHOFLOW_GLOBUS_MAX_RETRIES", "1")
    for _ in range(2):
        RegisteredResponse(service="flows", path=f"/runs/{RUN_ID}", status=503, headers={"Retry-After": "0"}, json={"error": {"code": "UNAVAILABLE", "detail": "maintenance"}}).add()
    with pytest.raises(PtychoflowError, match=r"^run .*: Globus said 503 UNAVAILABLE: maintenance$"):
        make_backend(make_profile(tmp_path)).get_run(RUN_ID)


def test_flow_not_yet_consented_names_it_in_the_fix(tmp_path):
    backend = make_backend(make_profile(tmp_path))  # tokens lack this flow's scope
    with pytest.raises(CredentialsError, match=f"ptychoflow login .*--flow {FLOW_ID}"):
        backend.start_run(FLOW, {})
    assert not responses.calls  # refused locally, before any request


def test_flows_run_deploys_then_runs(tmp_path):
    """What `flows run` does on the service: find or create the flow, then start a run."""
    from globus_support import FLOW_FILE

    RegisteredResponse(service="flows", path="/flows", json={"flows": [], "limit": 20, "has_next_page": False}).add()
    load_response(globus_sdk.FlowsClient.create_flow)
    load_response(globus_sdk.SpecificFlowClient.run_flow)
    backend = make_backend(make_profile(tmp_path), [FLOW_ID])

    info = backend.start_run(backend.deploy_flow(FLOW_FILE), {"scan": "scan_0001.h5"}, label="scan_0001", tags=["t"])

    assert [c.request.method for c in responses.calls] == ["GET", "POST", "POST"]
    assert last_json() == {"body": {"scan": "scan_0001.h5"}, "label": "scan_0001", "tags": ["t"],
                           "run_monitors": [GROUP_URN], "run_managers": [GROUP_URN]}
    assert info.run_id == TWO_HOP_RUN["run_id"]


def test_list_runs_is_filtered_to_ptychoflow_flows(tmp_path):
    load_response(globus_sdk.FlowsClient.list_runs)
    profile = make_profile(tmp_path, flow_id=FLOW_ID)
    make_backend(profile).list_runs()
    query = responses.calls[-1].request.params
    assert query["filter_flow_id"] == FLOW_ID and query["orderby"] == "start_time DESC"


def test_cli_resume_of_a_globus_run_starts_no_local_engine(tmp_path, monkeypatch):
    """Regression: `runs resume` used to start a local engine worker for an ACTIVE Globus run."""
    from click.testing import CliRunner

    import ptychoflow.backends
    import ptychoflow.flowengine.worker
    from ptychoflow.cli.runs import runs

    resume = load_response(globus_sdk.SpecificFlowClient.resume_run)
    add_run(TWO_HOP_RUN)
    profile = make_profile(tmp_path)
    backend = make_backend(profile, [resume.metadata["flow_id"]])
    monkeypatch.setattr(ptychoflow.backends, "get_backend", lambda _profile: backend)
    write_profile(tmp_path)
    started = []
    monkeypatch.setattr(ptychoflow.flowengine.worker, "ensure_engine_running", lambda p: started.append(p) or 1)
    result = CliRunner().invoke(runs, ["resume", resume.metadata["run_id"], "--profile", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "ACTIVE" in result.output and "app.globus.org/runs/" in result.output
    assert started == []


def test_notification_policy_reaches_globus_flows(tmp_path):
    load_response(globus_sdk.SpecificFlowClient.run_flow)
    backend = make_backend(make_profile(tmp_path), [FLOW_ID])
    backend.start_run(FLOW, {"scan": "scan_0001.h5"}, label="scan_0001", notify_on=("INACTIVE", "FAILED"))
    assert last_json()["activity_notification_policy"] == {"status": ["INACTIVE", "FAILED"]}
    backend.start_run(FLOW, {"scan": "scan_0001.h5"}, label="scan_0001")
    assert "activity_notification_policy" not in last_json()  # the service's default (INACTIVE) for people's runs
