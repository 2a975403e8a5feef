"""/metrics over a real run store: counters and histograms cover every run ever (not the last
50), so across 200 runs no counter sample ever decreases, read with prometheus_client's own
parser from the dashboard served over HTTP."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from browser import serve_app
from engine_helpers import FAIL_URL, TEST_URL, chain, register_test_providers, write_profile
from ptychoflow.backends.local import LocalBackend
from ptychoflow.dashboard.app import create_app
from ptychoflow.dashboard.sources import profile_sources
from ptychoflow.flowengine.worker import Engine
from ptychoflow.profile import load_profile

RUNS = 200
BATCH = 25
OK_FLOW = chain(("Prepare", {"Type": "Pass"}),
                ("Work", {"Type": "Action", "ActionUrl": TEST_URL, "Parameters": {"n": 1}, "ResultPath": "$.work"}))
BAD_FLOW = chain(("Prepare", {"Type": "Pass"}),
                 ("Work", {"Type": "Action", "ActionUrl": FAIL_URL, "Parameters": {"why": "disk full"},
                           "ResultPath": "$.work", "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure",
                                                              "Next": "Failed"}], "Next": "Unreached"}),
                 ("Unreached", {"Type": "Pass", "End": True}),
                 ("Failed", {"Type": "Fail", "Error": "WorkFailed", "Cause": "the work failed"}))


def _scrape(url: str) -> dict[tuple[str, tuple], tuple[str, float]]:
    """(sample name, labels) -> (family type, value), parsed by prometheus_client."""
    text = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): (family.type, s.value)
            for family in text_string_to_metric_families(text) for s in family.samples}


def _monotonic(kind: str, name: str) -> bool:
    return kind == "counter" or (kind == "histogram" and name.endswith(("_bucket", "_count", "_sum")))


@pytest.fixture
def deployment(tmp_path):
    register_test_providers()
    profile = load_profile(write_profile(tmp_path))
    backend = LocalBackend.from_profile(profile)
    flows = {}
    for name, definition in (("ok", OK_FLOW), ("bad", BAD_FLOW)):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(definition))
        flows[name] = backend.deploy_flow(path)
    engine = Engine(backend.env)
    yield profile, backend, flows, engine
    engine.close()


def _run_batch(backend, flows, engine, first: int) -> None:
    started = [backend.start_run(flows["bad" if (first + i) % 4 == 0 else "ok"], {"i": first + i}).run_id
               for i in range(BATCH)]
    deadline = time.monotonic() + 60
    while backend.store.active_run_ids() & set(started):
        assert time.monotonic() < deadline, "the batch did not finish"
        time.sleep(min(engine.tick(), 0.01))


def test_counters_never_decrease_across_200_runs(deployment):
    profile, backend, flows, engine = deployment
    with serve_app(create_app(profile_sources(profile, backend))) as url:
        previous = _scrape(url)
        for first in range(0, RUNS, BATCH):
            _run_batch(backend, flows, engine, first)
            current = _scrape(url)
            for key, (kind, value) in previous.items():
                if _monotonic(kind, key[0]):
                    assert key in current, f"{key} vanished"
                    assert current[key][1] >= value, f"{key} went down: {value} -> {current[key][1]}"
            previous = current

    def value(name: str, **labels: str) -> float:
        return previous[(name, tuple(sorted(labels.items())))][1]

    bad = RUNS // 4
    assert value("ptychoflow_runs_started_total", flow="ok") == RUNS - bad
    assert value("ptychoflow_runs_started_total", flow="bad") == bad
    assert value("ptychoflow_runs_finished_total", flow="ok", status="SUCCEEDED") == RUNS - bad
    assert value("ptychoflow_runs_finished_total", flow="bad", status="FAILED") == bad
    assert value("ptychoflow_state_failures_total", flow="bad", state="Work") == bad
    assert value("ptychoflow_runs", status="SUCCEEDED") == RUNS - bad and value("ptychoflow_runs", status="ACTIVE") == 0
    assert value("ptychoflow_state_duration_seconds_count", flow="ok", state="Work") == RUNS - bad
    assert value("ptychoflow_state_duration_seconds_bucket", flow="ok", state="Prepare", le="+Inf") == RUNS - bad
    assert value("ptychoflow_run_duration_seconds_count", flow="bad", status="FAILED") == bad
    assert value("ptychoflow_engine_up") == 0  # this test drives the engine in-process: no worker holds the lock


def test_an_active_run_shows_where_it_waits_and_for_how_long(deployment, tmp_path):
    profile, backend, flows, engine = deployment
    hold = tmp_path / "hold.json"
    hold.write_text(json.dumps({"StartAt": "Hold", "States": {"Hold": {"Type": "Wait", "Seconds": 600, "End": True}}}))
    run = backend.start_run(backend.deploy_flow(hold), {})
    engine.tick()
    assert backend.get_run(run.run_id).timeline[0].status == "ACTIVE"
    with serve_app(create_app(profile_sources(profile, backend))) as url:
        first = _scrape(url)
        time.sleep(1.1)
        second = _scrape(url)
    key = ("ptychoflow_oldest_active_state_age_seconds", ())
    assert 0 < first[key][1] < second[key][1]
    assert second[("ptychoflow_active_states", (("flow", "hold"), ("state", "Hold")))][1] == 1
    assert second[("ptychoflow_runs", (("status", "ACTIVE"),))][1] == 1
    assert second[("ptychoflow_source_up", (("source", "edge"),))][1] == 0  # no edge service here: said, not hidden
