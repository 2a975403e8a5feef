"""The watcher on the real globus backend, against canned Globus Flows responses.

Runs it starts ask for INACTIVE/FAILED notifications; a run that goes INACTIVE waiting for a
consent (details as the service words them) is journalled with its reason and keeps or frees
its slot as the profile says.
"""

from __future__ import annotations

import copy
import hashlib
import json

import pytest
import responses
from globus_sdk.testing import RegisteredResponse

from globus_support import FLOW_ID, RUN_DOC, consent_details, inactive_run, make_backend, make_profile, mocked_http  # noqa: F401
from ptychoflow.backends.base import DeployedFlow
from ptychoflow.watcher.journal import Journal
from ptychoflow.watcher.scheduler import Scheduler, SchedulerOptions

RUN_IDS = ["7f1c2d3e-0000-4000-8000-000000000001", "7f1c2d3e-0000-4000-8000-000000000002"]
FLOW = DeployedFlow(FLOW_ID, "ptychoflow hello_scan", "c0ffee")


def started(run_id: str) -> dict:
    return dict(copy.deepcopy(RUN_DOC), run_id=run_id, status="ACTIVE", completion_time=None)


def add_start(run_id: str) -> None:
    RegisteredResponse(service="flows", method="POST", path=f"/flows/{FLOW_ID}/run", json=started(run_id)).add()


def add_state(doc: dict) -> None:
    RegisteredResponse(service="flows", path=f"/runs/{doc['run_id']}", json=doc).add()
    RegisteredResponse(service="flows", path=f"/runs/{doc['run_id']}/log", json={"entries": [], "has_next_page": False}).add()


def starts() -> list[dict]:
    return [json.loads(c.request.body) for c in responses.calls if c.request.method == "POST" and c.request.url.endswith("/run")]


@pytest.fixture
def scheduler(tmp_path):
    def make(**watcher) -> tuple[Scheduler, Journal]:
        profile = make_profile(tmp_path)
        profile.watcher = profile.watcher.model_copy(update={"max_active_runs": 1, **watcher})
        journal = Journal.in_state_dir(profile.state_path)
        for i in range(2):
            path = f"/acq/scan_{i:04d}.h5"
            journal.observe([path])
            journal.enqueue(path, checksum=hashlib.sha256(path.encode()).hexdigest(), scan_id=f"scan_{i:04d}", size=1,
                            mtime_ns=1, t_complete=1.0, t_detected=1.0)
        return Scheduler(journal, make_backend(profile, [FLOW_ID]), FLOW, profile, SchedulerOptions(run_poll_s=0.0)), journal

    return make


def test_an_inactive_run_keeps_its_slot_then_frees_it(scheduler):
    sched, journal = scheduler(inactive_slot="keep", inactive_timeout_minutes=5)
    add_start(RUN_IDS[0])
    sched.pump(1000.0)
    assert starts()[0]["activity_notification_policy"] == {"status": ["INACTIVE", "FAILED"]}

    add_state(inactive_run(consent_details()) | {"run_id": RUN_IDS[0]})
    sched.pump(1001.0)
    [row] = journal.inactive_runs()
    assert row.run_id == RUN_IDS[0] and row.error.startswith("INACTIVE at TransferScan: needs consent to https://auth.globus.org/scopes/")
    assert "ptychoflow login" in row.error and len(starts()) == 1  # the slot is kept

    add_state(inactive_run(consent_details()) | {"run_id": RUN_IDS[0]})
    add_start(RUN_IDS[1])
    sched.pump(1001.0 + 301)  # five minutes later the next scan gets the slot
    assert len(starts()) == 2 and journal.run_state_counts() == {"inactive": 1, "triggered": 1}


def test_an_inactive_run_frees_its_slot_at_once(scheduler):
    sched, journal = scheduler(inactive_slot="free")
    add_start(RUN_IDS[0])
    sched.pump(1000.0)
    add_state(inactive_run(consent_details()) | {"run_id": RUN_IDS[0]})
    add_start(RUN_IDS[1])
    sched.pump(1001.0)
    assert len(starts()) == 2 and journal.state_counts() == {"inactive": 1, "triggered": 1}
