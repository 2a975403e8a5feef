"""An INACTIVE run, as operators see it: `watch status`, the dashboard page and API, /metrics.

The run goes INACTIVE on the (durable, test) backend with the reason a Globus run's details
give; the real scheduler notices it and journals it; each view reads that journal.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3

import pytest

from browser import browser_page, serve_app
from watch_support import SQLiteBackend, flow_file, write_profile
from ptychoflow.backends import get_backend
from ptychoflow.cli.main import main
from ptychoflow.dashboard.app import create_app
from ptychoflow.dashboard.metrics import metrics_registry, render_metrics
from ptychoflow.dashboard.sources import profile_sources
from ptychoflow.watcher.journal import Journal
from ptychoflow.watcher.scheduler import Scheduler, SchedulerOptions

REASON = ("INACTIVE at TransferScan: needs consent to https://auth.globus.org/scopes/d504/data_access; "
          "run `ptychoflow login --flow F --collection d504 --force`, then `ptychoflow runs resume R`")


@pytest.fixture
def inactive_site(tmp_path):
    """A site whose watcher started two runs; the first went INACTIVE, the second runs."""
    profile = write_profile(tmp_path / "site", max_active_runs=2)
    journal = Journal.in_state_dir(profile.state_path)
    backend = SQLiteBackend(tmp_path / "backend.sqlite")
    scheduler = Scheduler(journal, backend, backend.deploy_flow(flow_file(profile)), profile, SchedulerOptions(run_poll_s=0.0))
    for i in range(2):
        path = str(profile.resolve(profile.beamline.path) / f"scan_{i:04d}.h5")
        journal.observe([path])
        journal.enqueue(path, checksum=hashlib.sha256(path.encode()).hexdigest(), scan_id=f"scan_{i:04d}", size=1,
                        mtime_ns=1, t_complete=1.0, t_detected=1.0)
    scheduler.pump(1000.0)
    first = sorted(backend.list_runs(), key=lambda r: r.created)[0]
    backend.set_status(first.run_id, "INACTIVE", REASON)
    scheduler.pump(1001.0)
    journal.close()
    return profile, first.run_id


def test_watch_status_names_the_inactive_run_and_why(inactive_site, capsys):
    profile, run_id = inactive_site
    with pytest.raises(SystemExit) as done:
        main(["watch", "status", "--profile", str(profile.root)])
        raise SystemExit(0)
    out = capsys.readouterr().out
    assert done.value.code == 0
    assert "inactive 1" in out and "running 1" in out
    assert f"  {run_id}  since " in out and REASON in out

    with pytest.raises(SystemExit):
        main(["watch", "status", "--profile", str(profile.root), "--json"])
        raise SystemExit(0)
    info = json.loads(capsys.readouterr().out)
    assert info["runs"] == {"inactive": 1, "triggered": 1}
    assert [(r["run_id"], r["reason"]) for r in info["inactive_runs"]] == [(run_id, REASON)]


def test_dashboard_api_and_metrics_show_it(inactive_site):
    profile, run_id = inactive_site
    sources = profile_sources(profile, get_backend(profile))
    snapshot = sources.snapshot()
    assert snapshot["watcher"]["inactive"][0]["run_id"] == run_id
    assert {row["state"] for row in snapshot["journal"]} == {"inactive", "triggered"}
    text = render_metrics(metrics_registry(sources)).decode()
    assert 'ptychoflow_watcher_runs{state="inactive"} 1.0' in text
    assert 'ptychoflow_watcher_runs{state="triggered"} 1.0' in text


@pytest.mark.browser
def test_dashboard_page_puts_it_first(inactive_site, tmp_path):
    profile, run_id = inactive_site
    with serve_app(create_app(profile_sources(profile, get_backend(profile)), refresh_ms=300)) as url, browser_page() as page:
        page.goto(url)
        page.wait_for_selector("#inactive div", timeout=10_000)
        banner = page.inner_text("#inactive")
        assert "1 run(s) INACTIVE, waiting for a person" in banner and run_id in banner and "needs consent" in banner
        page.screenshot(path=str(tmp_path / "inactive.png"), full_page=True)


def test_a_journal_from_before_inactive_runs_is_upgraded(tmp_path):
    path = tmp_path / "watcher.sqlite"
    with sqlite3.connect(path) as db:  # the runs table as the previous release created it
        db.execute("CREATE TABLE runs (key TEXT PRIMARY KEY, state TEXT NOT NULL, run_id TEXT, label TEXT NOT NULL,"
                   " tags TEXT NOT NULL, body TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
                   " next_attempt REAL NOT NULL DEFAULT 0, error TEXT, t_created REAL, t_triggered REAL, t_finished REAL)")
        db.execute("INSERT INTO runs(key, state, run_id, label, tags, body) VALUES ('pf-1', 'triggered', 'r1', 'l', '[]', '{}')")
    journal = Journal(path)
    try:
        assert journal.run_inactive("pf-1", REASON, 5.0) is True
        assert journal.inactive_runs()[0].t_inactive == 5.0
        assert journal.count_active_runs(inactive_since=10.0) == 0 and journal.count_active_runs() == 1
    finally:
        journal.close()
