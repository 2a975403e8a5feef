"""Flow control: FIFO queue -> bounded active runs, optional batching, retry with backoff.

Exactly-once rests on two rules, see journal.py: a run row (with its idempotency key in the
run's label and tags) is committed as ``triggering`` before ``start_run``; and a
``triggering`` row met again (after an exception, or after a restart) is first looked up
in the backend's run list by that key and only started if absent.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from ptychoflow.backends.base import Backend, DeployedFlow, RunInfo, RunStatus
from ptychoflow.errors import PtychoflowError
from ptychoflow.fs import sha256_text
from ptychoflow.profile import Profile
from ptychoflow.watcher.journal import FAILED, INACTIVE, TRIGGERING, Journal, RunIntent, RunRow, ScanRow

log = logging.getLogger(__name__)

LABEL_MAX = 64
KEY_TAG = "ptychoflow-key:"
MAX_SCAN_TAGS = 16
# Nobody watches an unattended run: Globus Flows e-mails its creator when it needs a person
# (INACTIVE) or gives up (FAILED), as `globus flows start` lets one ask.
NOTIFY_ON = ("INACTIVE", "FAILED")


def build_run_body(profile: Profile, scan: ScanRow, flow_name: str | None = None) -> dict[str, Any]:
    """The flow input for one scan: the bundled flow's input (``flow_inputs``) when the flow
    is one we know, with the watcher's own facts under ``watcher``; otherwise those facts alone."""
    from ptychoflow.flow_inputs import scan_flow_input

    facts = {
        "scan_path": scan.path,
        "scan_file": scan.path.rsplit("/", 1)[-1],
        "scan_id": scan.scan_id,
        "checksum": scan.checksum,
        "beamline": profile.beamline.name,
        "experiment": profile.watcher.experiment,
    }
    flow_input = scan_flow_input(profile, flow_name, scan.path, scan_id=scan.scan_id) if flow_name else None
    return facts if flow_input is None else {**flow_input, "watcher": facts}


def build_batch_body(profile: Profile, scans: list[ScanRow], flow_name: str | None = None) -> dict[str, Any]:
    """One scan: its body. Several (batching): the last scan's body plus all of them under 'scans'."""
    bodies = [build_run_body(profile, s, flow_name) for s in scans]
    if len(bodies) == 1:
        return bodies[0]
    return {**bodies[-1], "scans": bodies}


def run_key(scans: list[ScanRow]) -> str:
    """Idempotency key: a function of the scans' checksums only, so it survives any crash."""
    joined = "\n".join(s.checksum or s.path for s in scans)
    return "pf-" + (scans[0].checksum if len(scans) == 1 and scans[0].checksum else
                    sha256_text(joined))[:16]


def run_label(profile: Profile, scans: list[ScanRow], key: str) -> str:
    """'<beamline> <scan id>[..<last> (n)] <key>', at most 64 characters, key always kept whole."""
    first = scans[0].scan_id or ""
    what = first if len(scans) == 1 else f"{first}..{scans[-1].scan_id} ({len(scans)})"
    head = f"{profile.beamline.name} {what}"[: LABEL_MAX - len(key) - 1]
    return f"{head} {key}"


def run_tags(profile: Profile, scans: list[ScanRow], key: str) -> list[str]:
    tags = [f"beamline:{profile.beamline.name}", f"experiment:{profile.watcher.experiment}"]
    tags += [f"scan:{s.scan_id}" for s in scans[:MAX_SCAN_TAGS]]
    return tags + [KEY_TAG + key]


def key_of(info: RunInfo) -> str | None:
    for tag in info.tags or []:
        if tag.startswith(KEY_TAG):
            return tag[len(KEY_TAG):]
    last = (info.label or "").rsplit(" ", 1)[-1]
    return last if last.startswith("pf-") else None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


@dataclass
class SchedulerOptions:
    retry_base_s: float = 2.0
    retry_max_s: float = 300.0
    run_poll_s: float | None = None  # how often active runs are polled; default: the profile's poll_interval_s
    lookup_limit: int = 1000  # how far back the backend's run list is searched for a key
    starts_per_pump: int = 32  # bounded work per loop step keeps SIGTERM prompt


class Scheduler:
    """Moves queued scans into runs, never more than max_active_runs at once."""

    def __init__(self, journal: Journal, backend: Backend, flow: DeployedFlow, profile: Profile,
                 options: SchedulerOptions | None = None, flow_name: str | None = None) -> None:
        self.journal = journal
        self.flow_name = flow_name  # the bundled flow's name picks the input builder
        self.backend = backend
        self.flow = flow
        self.profile = profile
        self.opts = options or SchedulerOptions()
        self._next_run_poll = 0.0

    @property
    def max_active(self) -> int:
        return self.profile.watcher.max_active_runs

    def _busy_slots(self, now: float) -> int:
        """Runs holding a slot; an INACTIVE run holds one only as the profile's policy says."""
        return self.journal.count_active_runs(inactive_since=now - self.profile.watcher.inactive_hold_s())

    def pump(self, now: float) -> float:
        """Do what is due; return when something next falls due (a wake-up time)."""
        if now >= self._next_run_poll:
            self._poll_active(now)
            every = self.opts.run_poll_s
            self._next_run_poll = now + (self.profile.watcher.poll_interval_s if every is None else every)
        self._resume_triggering(now)
        wake = self._start_queued(now)
        candidates = [wake, self._next_run_poll if self.journal.runs_followed() or self.journal.runs_in(TRIGGERING) else None]
        candidates += [r.next_attempt for r in self.journal.runs_in(TRIGGERING)]
        candidates += self._slot_releases(now)
        return min((c for c in candidates if c is not None), default=now + 3600)

    def _slot_releases(self, now: float) -> list[float]:
        """When INACTIVE runs still holding a slot give it up (the policy's timeout)."""
        hold = self.profile.watcher.inactive_hold_s()
        return [r.t_inactive + hold for r in self.journal.runs_in(INACTIVE)
                if r.t_inactive is not None and r.t_inactive + hold > now]

    # -- completion of active runs ------------------------------------------------------
    def _poll_active(self, now: float) -> None:
        """Follow started runs: finished, gone INACTIVE (with why), or resumed."""
        for run in self.journal.runs_followed():
            try:
                info = self.backend.get_run(run.run_id or "")
            except Exception as exc:  # backend hiccup: try again next poll
                log.warning("cannot get run %s (%s): %s", run.run_id, run.key, _one_line(exc))
                continue
            if info.status.finished:
                ok = info.status == RunStatus.SUCCEEDED
                self.journal.run_finished(run.key, ok, None if ok else (info.error or info.status.value))
                log.info("run %s %s (%s)", info.run_id, info.status.value.lower(), run.key)
            elif info.status is RunStatus.INACTIVE:
                self._inactive(run, info, now)
            elif run.state == INACTIVE:
                self.journal.run_resumed(run.key)
                log.info("run %s is active again (%s)", info.run_id, run.key)

    def _inactive(self, run: RunRow, info: RunInfo, now: float) -> None:
        """Journal an INACTIVE run and say once, in the log, why and what happens to its slot."""
        reason = info.error or "INACTIVE (no reason given)"
        if not self.journal.run_inactive(run.key, reason, now):
            return  # already known
        watcher = self.profile.watcher
        if watcher.inactive_slot == "free" or watcher.inactive_hold_s() == 0:
            slot = "its slot goes to the next scan"
        else:
            until = time.strftime("%H:%M", time.localtime(now + watcher.inactive_hold_s()))
            slot = f"it keeps its slot until {until} (watcher.inactive_timeout_minutes)"
        log.warning("run %s (%s) is %s; %s", info.run_id, run.key, reason, slot)

    # -- triggering ---------------------------------------------------------------------
    def _resume_triggering(self, now: float) -> None:
        """Runs left 'triggering' by an exception or a crash: look up by key, then retry."""
        due = [r for r in self.journal.runs_in(TRIGGERING) if r.next_attempt <= now]
        if not due:
            return
        try:
            existing = {key_of(i): i for i in self.backend.list_runs(limit=self.opts.lookup_limit)}
        except Exception as exc:
            for run in due:
                self._attempt_failed(run, exc, now)
            return
        for run in due:
            found = existing.get(run.key)
            if found is not None:
                log.info("run %s for %s already exists: recording it", found.run_id, run.key)
                self.journal.runs_started([(run.key, found.run_id, found.created or now)])
            elif (done := self._start(run, now)) is not None:
                self.journal.runs_started([done])

    def _start_queued(self, now: float) -> float | None:
        """Form runs from the FIFO queue while slots are free; returns when to come back.

        All intents of a step are committed in one transaction before the first start_run,
        and the run ids in one after the last: a crash in between leaves them 'triggering',
        which the next step resolves by key. Two fsyncs per step instead of two per run.
        """
        slots = min(self.max_active - self._busy_slots(now), self.opts.starts_per_pump)
        if slots <= 0:
            return None
        batches, wake = self._plan(now, slots)
        intents: list[RunIntent] = []
        planned: set[str] = set()
        for batch in batches:
            key = run_key(batch)
            if key in planned or self.journal.get_run(key) is not None:  # same content, new path
                key += "-" + sha256_text(batch[0].path)[:6]
            try:
                body = build_batch_body(self.profile, batch, self.flow_name)
            except PtychoflowError as exc:  # e.g. a name the flow's paths refuse: this batch fails, not the watcher
                for scan in batch:
                    log.warning("failed %s: cannot build the flow input: %s", scan.path, exc)
                    self.journal.set_final(scan.path, FAILED, f"flow input: {exc}")
                continue
            planned.add(key)
            intents.append(RunIntent(key, [s.path for s in batch], body, run_label(self.profile, batch, key),
                                     run_tags(self.profile, batch, key)))
        started = [done for run in self.journal.create_runs(intents) if (done := self._start(run, now))]
        self.journal.runs_started(started)
        for key, run_id, _ in started:
            log.info("started run %s (%s)", run_id, key)
        return now if len(batches) == slots else wake  # a full step: more may be waiting

    def _plan(self, now: float, slots: int) -> tuple[list[list[ScanRow]], float | None]:
        """Up to `slots` batches from the queue, FIFO; a partial batch goes after T minutes."""
        n = self.profile.watcher.batch_every_n
        queued = self.journal.queued(slots * n)
        batches = [queued[i : i + n] for i in range(0, len(queued), n)]
        if not batches or len(batches[-1]) == n:
            return batches, None
        minutes = self.profile.watcher.batch_every_minutes
        partial = batches.pop()
        if minutes <= 0:
            return batches, None
        due = (partial[0].t_queued or now) + minutes * 60
        if now >= due:
            return batches + [partial], None
        return batches, due

    def _start(self, run: RunRow, now: float) -> tuple[str, str, float] | None:
        """start_run once; (key, run id, when) on success, None (retry scheduled) on failure."""
        try:
            info = self.backend.start_run(self.flow, run.body, label=run.label, tags=run.tags, notify_on=NOTIFY_ON)
        except Exception as exc:
            self._attempt_failed(run, exc, now)
            return None
        return run.key, info.run_id, time.time()

    def _attempt_failed(self, run: RunRow, exc: BaseException, now: float) -> None:
        delay = min(self.opts.retry_base_s * 2 ** run.attempts, self.opts.retry_max_s)
        attempts = self.journal.run_attempt_failed(run.key, _one_line(exc), now + delay)
        log.warning("trigger of %s failed (attempt %d, retry in %.0f s): %s", run.key, attempts, delay, _one_line(exc))
