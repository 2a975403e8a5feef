"""Flow control in-process: bounded FIFO, batching, retry with backoff, the start_run crash window."""

from __future__ import annotations

import hashlib

import pytest

from watch_support import SQLiteBackend, flow_file, write_profile
from ptychoflow.watcher.journal import Journal
from ptychoflow.watcher.scheduler import Scheduler, SchedulerOptions, run_label


@pytest.fixture
def setup(tmp_path):
    """(make, journal, backend): make(**watcher) -> Scheduler over a fresh journal and backend."""
    journal = Journal(tmp_path / "journal.sqlite")
    backends: list[SQLiteBackend] = []

    def make(backend_kwargs: dict | None = None, **watcher) -> Scheduler:
        profile = write_profile(tmp_path / "site", **watcher)
        backend = SQLiteBackend(tmp_path / "backend.sqlite", **(backend_kwargs or {}))
        backends.append(backend)
        flow = backend.deploy_flow(flow_file(profile))
        return Scheduler(journal, backend, flow, profile, SchedulerOptions(retry_base_s=1.0, run_poll_s=0.0))

    yield make, journal
    journal.close()


def _queue(journal: Journal, n: int, start: int = 0, t: float = 1000.0) -> None:
    for i in range(start, start + n):
        path = f"/acq/scan_{i:04d}.h5"
        journal.observe([path])
        journal.enqueue(path, checksum=hashlib.sha256(path.encode()).hexdigest(), scan_id=f"scan_{i:04d}", size=1, mtime_ns=1,
                        t_complete=t, t_detected=t)


def _started(backend) -> list[str]:
    return [tag[5:] for r in reversed(backend.list_runs(limit=1000)) for tag in r.tags if tag.startswith("scan:")]


def test_bounded_active_runs_fifo(setup):
    make, journal = setup
    sched = make(max_active_runs=2)
    _queue(journal, 5)
    sched.pump(2000.0)
    assert _started(sched.backend) == ["scan_0000", "scan_0001"]
    assert journal.count_active_runs() == 2
    sched.backend.finish_all()
    sched.pump(2001.0)  # polls: two finish, two more start, in arrival order
    assert _started(sched.backend) == [f"scan_{i:04d}" for i in range(4)]
    assert journal.state_counts() == {"succeeded": 2, "triggered": 2, "queued": 1}


def test_batching_every_n_and_every_t_minutes(setup):
    make, journal = setup
    sched = make(batch_every_n=3, batch_every_minutes=1.0)
    _queue(journal, 4, t=0.0)
    sched.pump(1.0)  # one full batch of 3; the 4th waits for company or the timer
    runs = sched.backend.list_runs()
    assert len(runs) == 1 and [s["scan_id"] for s in runs[0].output["body"]["scans"]] == ["scan_0000", "scan_0001", "scan_0002"]
    assert "(3)" in runs[0].label and len(runs[0].label) <= 64
    enqueued_at = journal.queued(1)[0].t_queued
    wake = sched.pump(enqueued_at + 59)
    assert len(sched.backend.list_runs()) == 1 and wake <= enqueued_at + 60
    sched.pump(enqueued_at + 61)  # timer: the partial batch goes
    assert len(sched.backend.list_runs()) == 2 and journal.state_counts() == {"triggered": 4}


def test_failed_triggers_back_off_and_are_never_dropped(setup):
    make, journal = setup
    sched = make(backend_kwargs={"fail_starts": 3})
    _queue(journal, 1)
    sched.pump(0.0)
    sched.pump(0.5)  # before the 1 s backoff: no new attempt
    run = journal.runs_in("triggering")[0]
    assert run.attempts == 1 and run.next_attempt == pytest.approx(1.0)
    sched.pump(1.0)  # attempt 2 fails -> next in 2 s
    assert journal.runs_in("triggering")[0].next_attempt == pytest.approx(3.0)
    sched.pump(3.0)  # attempt 3 fails -> next in 4 s
    assert journal.runs_in("triggering")[0].next_attempt == pytest.approx(7.0)
    assert journal.get("/acq/scan_0000.h5").reason.startswith("trigger retry: ConnectionError")
    sched.pump(7.0)  # succeeds
    assert len(sched.backend.list_runs()) == 1 and journal.state_counts() == {"triggered": 1}


def test_run_recorded_but_answer_lost_is_found_by_key_not_restarted(setup):
    make, journal = setup
    sched = make(backend_kwargs={"fail_after_record": 1})
    _queue(journal, 1)
    sched.pump(0.0)  # the backend recorded the run, then the call raised
    assert len(sched.backend.list_runs()) == 1 and journal.state_counts() == {"triggering": 1}
    sched.pump(10.0)  # retry: looks the key up first
    runs = sched.backend.list_runs()
    assert len(runs) == 1 and journal.state_counts() == {"triggered": 1}
    assert journal.runs_in("triggered")[0].run_id == runs[0].run_id


def test_label_is_at_most_64_chars_and_keeps_the_key(setup):
    make, journal = setup
    sched = make()
    _queue(journal, 1)
    row = journal.queued(1)[0]
    long = row.__class__(**{**row.__dict__, "scan_id": "x" * 200})
    label = run_label(sched.profile, [long], "pf-0123456789abcdef")
    assert len(label) == 64 and label.endswith(" pf-0123456789abcdef")


def test_crash_after_start_run_before_journal_write_does_not_double_trigger(setup, monkeypatch):
    make, journal = setup
    sched = make(max_active_runs=4)
    _queue(journal, 3)

    def crash(started):  # the process dies after start_run, before recording the run ids
        raise SystemExit("killed")

    monkeypatch.setattr(journal, "runs_started", crash)
    with pytest.raises(SystemExit):
        sched.pump(0.0)
    monkeypatch.undo()
    assert len(sched.backend.list_runs()) == 3 and journal.state_counts() == {"triggering": 3}
    restarted = make(max_active_runs=4)  # a fresh scheduler over the same journal and backend
    restarted.pump(1.0)
    assert len(restarted.backend.list_runs()) == 3 and journal.state_counts() == {"triggered": 3}


REASON = "INACTIVE at TransferScan: needs consent to https://auth.globus.org/scopes/x/data_access; run `ptychoflow login ...`"


def test_inactive_run_keeps_its_slot_until_the_timeout(setup, caplog):
    make, journal = setup
    sched = make(max_active_runs=1, inactive_slot="keep", inactive_timeout_minutes=10)
    _queue(journal, 2)
    sched.pump(2000.0)
    [first] = sched.backend.list_runs()
    sched.backend.set_status(first.run_id, "INACTIVE", REASON)

    with caplog.at_level("WARNING", logger="ptychoflow.watcher.scheduler"):
        wake = sched.pump(2001.0)
    assert journal.state_counts() == {"inactive": 1, "queued": 1}
    assert journal.get("/acq/scan_0000.h5").reason == REASON
    assert f"run {first.run_id} (" in caplog.text and "is INACTIVE at TransferScan" in caplog.text
    assert "keeps its slot until" in caplog.text
    assert wake <= 2001.0 + 600  # comes back when the slot frees
    sched.pump(2001.0 + 599)
    assert len(sched.backend.list_runs()) == 1  # still held
    sched.pump(2001.0 + 601)
    assert _started(sched.backend) == ["scan_0000", "scan_0001"]  # the timeout freed it

    sched.backend.set_status(first.run_id, "ACTIVE")  # someone granted the consent and resumed it
    sched.pump(2700.0)
    assert journal.state_counts() == {"triggered": 2}
    sched.backend.finish_all()
    sched.pump(2701.0)
    assert journal.state_counts() == {"succeeded": 2}
    assert caplog.text.count("is INACTIVE") == 1  # said once, not at every poll


def test_inactive_run_frees_its_slot_at_once_when_the_profile_says_so(setup, caplog):
    make, journal = setup
    sched = make(max_active_runs=1, inactive_slot="free")
    _queue(journal, 2)
    sched.pump(2000.0)
    [first] = sched.backend.list_runs()
    sched.backend.set_status(first.run_id, "INACTIVE", REASON)
    with caplog.at_level("WARNING", logger="ptychoflow.watcher.scheduler"):
        sched.pump(2001.0)
    assert _started(sched.backend) == ["scan_0000", "scan_0001"]
    assert journal.state_counts() == {"inactive": 1, "triggered": 1}
    assert "its slot goes to the next scan" in caplog.text
    sched.backend.set_status(first.run_id, "FAILED", "cancelled after all")
    sched.pump(2002.0)
    assert journal.get("/acq/scan_0000.h5").state == "failed"


def test_runs_the_watcher_starts_notify_on_inactive_and_failed(setup):
    make, journal = setup
    sched = make()
    _queue(journal, 1)
    sched.pump(0.0)
    [run] = sched.backend.list_runs()
    assert sched.backend.notify_on(run.run_id) == ["INACTIVE", "FAILED"]
