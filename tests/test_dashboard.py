"""The operator dashboard: JSON API, Prometheus metrics, and the page in headless Chromium."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from browser import browser_page, serve_app
from ptychoflow.backends.base import RunInfo, RunStatus, StateRecord
from ptychoflow.dashboard.app import create_app
from ptychoflow.dashboard.sources import DashboardSources


def _run(run_id: str, status: RunStatus) -> RunInfo:
    now = time.time()
    return RunInfo(run_id, "flow", status, label=f"scan {run_id}", current_state="Reconstruct",
                   timeline=[StateRecord("TransferScan", "SUCCEEDED", now - 5, now - 4), StateRecord("Reconstruct", "ACTIVE", now - 4)])


class _Runs:
    """Runs appear over time, as they would from a backend."""

    def __init__(self) -> None:
        self.items = [_run("aaaaaaaa1", RunStatus.SUCCEEDED)]

    def __call__(self):
        return [r.to_json() for r in self.items]


def _sources(runs) -> DashboardSources:
    return DashboardSources(
        runs=runs,
        journal=lambda: [{"scan": "scan_0001.h5", "state": "triggered", "run_id": "aaaaaaaa1"}],
        models=lambda: [{"version": "v0001", "parent": None, "val_loss": 0.12, "ssim": 0.41, "best": True}],
        edge=lambda: (_ for _ in ()).throw(ConnectionRefusedError("edge not running")),
    )


def test_api_reports_each_source_and_survives_a_dead_one():
    snapshot = _sources(_Runs()).snapshot()
    assert snapshot["runs"][0]["status"] == "SUCCEEDED"
    assert snapshot["runs"][0]["timeline"][0]["duration"] == pytest.approx(1.0)
    assert "ConnectionRefusedError" in snapshot["edge"]["error"]


@pytest.mark.browser
def test_a_failed_run_shows_its_failing_state_and_reason_in_the_browser(tmp_path):
    """A run that failed in the engine (the real local Transfer provider, asked for a scan that
    is not there), on the page in headless Chromium; the screenshot is kept as
    dashboard-failed-run.png in the test's directory (look at it)."""
    from engine_helpers import chain, run_flow

    transfer = {"source_endpoint": "beamline", "destination_endpoint": "hpc",
                "DATA": [{"source_path": "/scan_0007.h5", "destination_path": "/scans/scan_0007.h5"}]}
    flow = chain(("Prepare", {"Type": "Pass"}),
                 ("TransferScan", {"Type": "Action", "ActionUrl": "https://transfer.actions.globus.org/transfer",
                                   "Parameters": transfer, "ResultPath": "$.transfer",
                                   "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": "Failed"}],
                                   "Next": "Done"}),
                 ("Done", {"Type": "Pass", "End": True}),
                 ("Failed", {"Type": "Fail", "Error": "PtychoflowFlowFailed", "Cause": "a state failed"}))
    failed, backend = run_flow(tmp_path, flow, label="scan_0007")
    assert failed.status == RunStatus.FAILED and failed.cause().state == "TransferScan"
    reason = failed.cause().message
    assert reason and "scan_0007.h5" in reason and "{" not in reason  # the provider's sentence, not its JSON
    sources = DashboardSources(runs=lambda: [r.to_json() for r in backend.list_runs()],
                               engine=lambda: {"state": "down", "up": False, "active_runs": 1, "pid": None,
                                               "heartbeat_age_s": 75.0, "oldest_active_age_s": 75.0,
                                               "summary": "DOWN: not running; 1 active run(s) not advancing"})
    with serve_app(create_app(sources, refresh_ms=300)) as url, browser_page() as page:
        page.set_viewport_size({"width": 1100, "height": 500})
        page.goto(url)
        cell = page.wait_for_selector("#runs tbody td.FAILED", timeout=10_000)
        assert "FAILED in TransferScan" in cell.inner_text() and reason in cell.inner_text()
        labels = page.locator("#runs .seg .lbl").all_inner_texts()
        assert [label.splitlines()[0] for label in labels] == ["Prepare", "TransferScan", "Failed"]
        assert all(any(unit in label for unit in ("ms", " s")) for label in labels)
        assert page.locator("#runs .seg .bar.FAILED").count() == 2
        banner = page.inner_text("#engine")
        assert "DOWN" in banner and "1 active run(s) not advancing" in banner
        assert "bad" in page.get_attribute("#engine", "class")
        assert page.inner_text("#edge").startswith("no edge status")  # not an empty {}
        page.screenshot(path=str(tmp_path / "dashboard-failed-run.png"), full_page=True)


@pytest.mark.browser
def test_page_lists_runs_and_refreshes_by_itself(tmp_path):
    runs = _Runs()
    with serve_app(create_app(_sources(runs), refresh_ms=300)) as url, browser_page() as page:
        page.goto(url)
        page.wait_for_selector("#runs tbody tr td.SUCCEEDED", timeout=10_000)
        assert "v0001" in page.inner_text("#models") and "scan_0001.h5" in page.inner_text("#journal")
        assert "edge not running" in page.inner_text("#edge")
        runs.items.append(_run("cccccccc3", RunStatus.ACTIVE))  # a new run starts; no reload
        page.wait_for_selector("#runs tbody tr td.ACTIVE", timeout=10_000)
        assert page.locator("#runs tbody tr").count() == 2
        page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)


def test_profile_sources_read_a_real_deployment(tmp_path):
    """Journal and registry absent, edge down: empty lists and an explained error, never a crash."""
    from ptychoflow.backends import get_backend
    from ptychoflow.dashboard.sources import profile_sources
    from ptychoflow.profile import load_profile, write_local_profile

    write_local_profile(tmp_path)
    profile = load_profile(tmp_path)
    snapshot = profile_sources(profile, get_backend(profile)).snapshot()
    assert snapshot["runs"] == [] and snapshot["journal"] == [] and snapshot["models"] == []
    assert "edge service not running" in snapshot["edge"]["error"]


def test_profile_sources_read_the_registry_the_flows_write(tmp_path):
    """The flows train into <hpc>/registry; the dashboard shows that registry."""
    from ptychoflow.backends import get_backend
    from ptychoflow.dashboard.sources import profile_sources
    from ptychoflow.flow_inputs import reconstruct_and_train_input
    from ptychoflow.nn.registry import Registry
    from ptychoflow.profile import load_profile, write_local_profile

    write_local_profile(tmp_path)
    profile = load_profile(tmp_path)
    profile.functions.update({name: "id" for name in ("reconstruct", "validate", "train", "activate")})

    hpc = reconstruct_and_train_input(profile, "scan_0001.h5")["hpc"]
    registry = Registry(Path(hpc["root"]) / hpc["registry_dir"])
    checkpoint = registry.version_dir("v0001") / "checkpoint.pt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"not read here")
    registry.register("v0001", parent=None, model_config={"kind": "ptychonn2", "size": 64}, preprocessing={},
                      scans_seen=["scan_0001"], val_loss=0.1, ssim=0.7, checkpoint_path=checkpoint)
    registry.promote("v0001")
    models = profile_sources(profile, get_backend(profile)).snapshot()["models"]
    assert [(m["version"], m["best"]) for m in models] == [("v0001", True)]
