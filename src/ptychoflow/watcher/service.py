"""The watcher loop: sources -> settler -> admission -> journal -> scheduler, one thread.

One thread owns the journal and the backend calls; watchdog's thread only fills a set of
touched paths. The loop sleeps until the next thing falls due (a settle deadline, a poll,
a rescan, a run poll, a retry), so an idle watcher costs next to no CPU. SIGTERM/SIGINT
set a flag; the loop finishes the step it is in (journal writes are transactions) and
returns 0.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ptychoflow.backends.base import Backend
from ptychoflow.errors import InputError
from ptychoflow.profile import PROFILE_FILENAME, Profile
from ptychoflow.servicelog import service_log
from ptychoflow.site import SiteLayout
from ptychoflow.watcher.detect import Changed, Check, Rejected, Settler, Verdict, admit, file_sig
from ptychoflow.watcher.journal import DUPLICATE, FAILED, GAVE_UP, SEEN, SKIPPED, Journal, QueueEntry, watcher_guard
from ptychoflow.watcher.scheduler import Scheduler, SchedulerOptions
from ptychoflow.watcher.status import age
from ptychoflow.watcher.sources import DirectoryPoller, EventSource, Matcher

log = logging.getLogger("ptychoflow.watcher")

_UNDECIDED = (SEEN, SKIPPED)  # states a rescan looks at again


@dataclass
class WatcherOptions:
    """Knobs beyond the profile (tests and benchmarks shorten them)."""

    flow_path: Path | None = None  # default: the bundled flow named by profile.watcher.flow
    poll: bool | None = None  # default: profile.watcher.poll
    rescan_s: float = 60.0  # safety full rescan (missed events, NFS attribute caching)
    intake_batch: int = 64  # candidates examined per loop step, so signals stay responsive
    incomplete_recheck_s: float = 30.0
    max_sleep_s: float = 5.0
    log_file: bool = True  # <state_dir>/watcher.log (rotating) and stderr, as every service logs
    scheduler: SchedulerOptions = field(default_factory=SchedulerOptions)


def acquisition_dir(profile: Profile) -> Path:
    """The directory the watcher watches. It must exist already: an unmounted NFS path must not
    silently become an empty local directory. Checked before anything is started."""
    directory = SiteLayout.from_profile(profile).beamline_root
    if not directory.is_dir():
        raise InputError(profile.root / PROFILE_FILENAME, "beamline.path",
                         f"{directory}: no such directory (not mounted yet?)")
    return directory


def default_flow_path(profile: Profile) -> Path:
    """The bundled flow (or JSON path) named by `watcher.flow`; a missing one is one line."""
    from ptychoflow import resources

    try:
        return resources.flow_path(profile.watcher.flow)
    except FileNotFoundError as exc:
        raise InputError(profile.root / "ptychoflow.toml", "watcher.flow", str(exc)) from None


class WatcherService:
    """Watch the acquisition directory and start exactly one flow run per finished scan."""

    def __init__(self, profile: Profile, backend: Backend, options: WatcherOptions | None = None) -> None:
        self.profile = profile
        self.backend = backend
        self.opts = options or WatcherOptions()
        self.poll = profile.watcher.poll if self.opts.poll is None else self.opts.poll
        self.layout = SiteLayout.from_profile(profile)
        self.directory = self.layout.beamline_root
        self.matcher = Matcher(self.directory, profile.beamline.patterns)
        slack = profile.watcher.poll_interval_s if self.poll else 0.0
        self.settler = Settler(profile.watcher.settle_seconds, slack=slack,
                               incomplete_recheck_s=self.opts.incomplete_recheck_s,
                               scan_format=profile.beamline.scan_format, read_options=profile.beamline.read_options())
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.journal: Journal | None = None

    def request_stop(self) -> None:
        """Ask the loop to finish its current step and return (thread- and signal-safe)."""
        self._stop.set()
        self._wake.set()

    def run(self, *, install_signals: bool = True, until: Callable[[], bool] | None = None) -> int:
        """Run until stopped (signal, request_stop, or `until()` true); returns the exit code 0."""
        state = self.layout.state_dir
        state.mkdir(parents=True, exist_ok=True)
        guard = watcher_guard(state)
        guard.acquire()
        source: EventSource | None = None
        with contextlib.ExitStack() as cleanup:
            cleanup.callback(guard.release)
            if self.opts.log_file:
                cleanup.enter_context(service_log("watcher", state))
            cleanup.callback(log.info, "watcher stopped")
            if install_signals:
                cleanup.callback(_restore_signals, _install_signals(self.request_stop))
            acquisition_dir(self.profile)
            self.journal = Journal.in_state_dir(state)
            cleanup.callback(self.journal.close)
            flow_path = self.opts.flow_path or default_flow_path(self.profile)
            flow = self.backend.deploy_flow(flow_path)
            scheduler = Scheduler(self.journal, self.backend, flow, self.profile, self.opts.scheduler,
                                  flow_name=Path(flow_path).stem)
            if not self.poll:  # start events before the first listing: nothing falls in between
                source = EventSource(self.matcher, self._wake)
                source.start()
                cleanup.callback(source.stop)
            log.info("watching %s (%s, patterns %s, flow %s)", self.directory,
                     "polling" if self.poll else "events", self.matcher.patterns, flow.flow_id)
            self._loop(scheduler, source, until)
        return 0

    def _loop(self, scheduler: Scheduler, source: EventSource | None, until: Callable[[], bool] | None) -> None:
        started = time.perf_counter()
        self._rescan(time.time())
        log.info("reconciled %s: %d candidates in %.2f s", self.directory, len(self.settler),
                 time.perf_counter() - started)
        poller = DirectoryPoller(self.directory)
        poller.changed()
        interval = self.profile.watcher.poll_interval_s
        next_poll = time.time() + interval
        next_rescan = time.time() + self.opts.rescan_s
        while not self._stop.is_set() and not (until and until()):
            now = time.time()
            if source is not None:
                for path in source.drain():
                    self._consider(path, now)
            if now >= next_rescan or (self.poll and now >= next_poll and poller.changed()):
                self._rescan(now)
                next_rescan = now + self.opts.rescan_s
            elif self.poll and now >= next_poll:
                for path in self.settler.pending_paths():
                    self.settler.poke(path, now)
            if self.poll and now >= next_poll:
                next_poll = now + interval
            more = self._intake(now)
            wake = scheduler.pump(time.time())
            deadlines = [wake, next_rescan, self.settler.next_due()]
            if self.poll:
                deadlines.append(next_poll)
            if more or self._wake.is_set():
                continue_after = 0.0
            else:
                continue_after = min(d for d in deadlines if d is not None) - time.time()
            self._wake.wait(min(max(continue_after, 0.0), self.opts.max_sleep_s))
            self._wake.clear()

    # -- candidates ---------------------------------------------------------------------
    def _rescan(self, now: float) -> None:
        """Reconcile the directory with the journal: new or undecided files become candidates."""
        assert self.journal is not None
        known = self.journal.path_states()
        present = self.matcher.list()
        new = [p for p in present if p not in known]
        self.journal.observe(new, now)
        for path in present:
            if known.get(path, SEEN) in _UNDECIDED:
                self.settler.poke(path, now)
        listed = set(present)
        for path, sig in self.journal.rejected().items():
            if path in listed and file_sig(path) != sig:
                self._retry_rejected(path, now)
        for path in self.journal.paths_in(SEEN):
            if path not in listed and path not in self.settler:
                self.journal.forget(path)  # deleted while we were not looking

    def _consider(self, path: str, now: float) -> None:
        assert self.journal is not None
        if path not in self.settler:
            row = self.journal.get(path)
            if row is not None and row.sig is not None and file_sig(path) != row.sig:
                self._retry_rejected(path, now)
                return
            if row is not None and row.state not in _UNDECIDED:
                return  # decided already: a later change to a triggered scan never re-triggers
            if row is None:
                self.journal.observe([path], now)
        self.settler.poke(path, now)

    def _retry_rejected(self, path: str, now: float) -> None:
        log.info("reconsidering %s: it changed since it was rejected", path)
        assert self.journal is not None
        self.journal.reopen(path)
        self.settler.poke(path, now)

    def _intake(self, now: float) -> bool:
        """Examine due candidates; True when more are due than one step handles."""
        due = self.settler.due(now, self.opts.intake_batch + 1)
        admitted: list[QueueEntry] = []
        for path in due[: self.opts.intake_batch]:
            if self._stop.is_set():
                break
            entry = self._decide(path, self.settler.check(path, time.time()))
            if entry is not None:
                admitted.append(entry)
        self._enqueue(admitted)
        return len(due) > self.opts.intake_batch and not self._stop.is_set()

    def _decide(self, path: str, check: Check) -> QueueEntry | None:
        """Journal what a check found; a settled, valid scan comes back for queueing."""
        assert self.journal is not None
        verdict = check.verdict
        if verdict is Verdict.SETTLED:
            return self._admit(path, check)
        if verdict is Verdict.WAIT:
            if check.reason:
                self._waiting(path, check)
        elif verdict is Verdict.GONE:
            log.info("forgot %s: deleted before it settled", path)
            self.journal.forget(path)
        elif verdict in (Verdict.DANGLING, Verdict.NOT_REGULAR):
            row = self.journal.get(path)
            if row is None or row.reason != check.reason:
                log.warning("skipped %s: %s", path, check.reason)
                self.journal.set_final(path, SKIPPED, check.reason)
        elif verdict is Verdict.UNREADABLE:
            log.warning("failed %s: %s", path, check.reason)
            self.journal.set_final(path, FAILED, check.reason)
        return None

    def _waiting(self, path: str, check: Check) -> None:
        """A settled file that is not a finished scan: journal why (once per reason), and give
        up once it has been unchanged for ``watcher.give_up_after_s`` (logged once; a later
        change to the file brings it back)."""
        assert self.journal is not None
        unchanged_for = time.time() - check.since
        limit = self.profile.watcher.give_up_after_s
        if unchanged_for >= limit:
            reason = f"gave up: unchanged for {age(unchanged_for)} (watcher.give_up_after_s {limit:g}): {check.reason}"
            log.warning("gave up on %s: %s", path, reason)
            self.journal.set_final(path, GAVE_UP, reason, sig=file_sig(path), since=check.since)
            self.settler.drop(path)
        elif check.fresh:
            log.info("not started %s: %s", path, check.reason)
            self.journal.note(path, check.reason, since=check.since)

    def _admit(self, path: str, check: Check) -> QueueEntry | None:
        assert self.journal is not None
        try:
            admitted = admit(path, check, scan_format=self.settler.scan_format, read_options=self.settler.read_options)
        except Changed:
            self.settler.poke(path, time.time())
            return None
        except Rejected as exc:
            log.warning("failed %s: %s", path, exc)
            self.journal.set_final(path, FAILED, str(exc), sig=file_sig(path))
            return None
        return QueueEntry(path=path, checksum=admitted.checksum, scan_id=admitted.scan_id, size=check.size,
                          mtime_ns=check.mtime_ns, t_complete=check.t_complete, t_detected=time.time())

    def _enqueue(self, entries: list[QueueEntry]) -> None:
        """Queue a step's admissions at once; a checksum already claimed makes a duplicate."""
        assert self.journal is not None
        owners: dict[str, str] = {}
        fresh: list[QueueEntry] = []
        for entry in entries:
            owner = owners.get(entry.checksum) or self.journal.claimant(entry.checksum)
            if owner is not None and owner != entry.path:
                log.info("duplicate %s: same content as %s", entry.path, owner)
                self.journal.set_final(entry.path, DUPLICATE, f"same content as {owner}",
                                       checksum=entry.checksum, duplicate_of=owner)
                continue
            owners[entry.checksum] = entry.path
            fresh.append(entry)
        self.journal.enqueue_many(fresh)
        for entry in fresh:
            log.info("queued %s (scan %s)", entry.path, entry.scan_id)


def _install_signals(stop: Callable[[], None]) -> dict[int, object]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, lambda *_: stop()) for sig in (signal.SIGTERM, signal.SIGINT)}


def _restore_signals(previous: dict[int, object]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)  # type: ignore[arg-type]


def run_watcher(profile: Profile, backend: Backend, options: WatcherOptions | None = None, **kwargs: object) -> int:
    """Convenience entry point for the CLI, the demo and child processes."""
    return WatcherService(profile, backend, options).run(**kwargs)  # type: ignore[arg-type]
