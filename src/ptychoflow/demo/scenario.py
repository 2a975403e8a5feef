"""The demo scenario: several scans of one sample, each acquired only after the last flow run
ended (one sample position at a time, as at a beamline), so later scans meet a trained model
at the edge. Every step is resumable: acquired scans are not re-acquired, triggered scans are
not re-triggered (watcher journal), finished runs are not re-run (engine store)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ptychoflow.fs import JsonStateFile
from ptychoflow.profile import policy_default
from ptychoflow.scan.format import scan_is_complete
from ptychoflow.simulate.beamline import SimulationOptions, emit_scan, save_truth, scan_filename, simulate_scan
from ptychoflow.stream import FramePublisher
from ptychoflow.watcher.journal import FAILED, JOURNAL_FILENAME, SUCCEEDED, Journal

TIMINGS_FILENAME = "demo-timings.json"


@dataclass
class DemoOptions:
    """Sized so the whole demo finishes in a few minutes on 2 CPU cores."""

    scans: int = 4
    frame_size: int = 64
    object_size: int = 256
    step_px: float = 10.0
    rate_hz: float = 500.0
    iterations: int = 60
    train_epochs: int = 25
    train_time_limit_s: float = 150.0
    ssim_tolerance: float = policy_default("ssim_tolerance")
    run_timeout_s: float = 900.0
    extra_policy: dict = field(default_factory=dict)

    @property
    def simulation(self) -> SimulationOptions:
        return SimulationOptions(frame_size=self.frame_size, object_size=self.object_size, step_px=self.step_px,
                                 probe_diameter_px=0.5625 * self.frame_size)

    @property
    def policy(self) -> dict:
        return {"iterations": self.iterations, "train_epochs": self.train_epochs,
                "train_time_limit_s": self.train_time_limit_s, "ssim_tolerance": self.ssim_tolerance,
                "patch_size": self.frame_size, **self.extra_policy}


class Timings:
    """When each scan's last frame left the detector (for the users' wait time), on disk."""

    def __init__(self, state_dir: Path) -> None:
        self._file = JsonStateFile(state_dir / TIMINGS_FILENAME, "demo timings")

    @property
    def data(self) -> dict[str, dict[str, float]]:
        return self._file.load()

    def record(self, scan_id: str, **values: float) -> None:
        with self._file.updating() as data:
            data.setdefault(scan_id, {}).update(values)


def acquire(options: DemoOptions, number: int, acquisition: Path, publisher: FramePublisher | None,
            timings: Timings) -> bool:
    """Simulate and emit scan `number` unless it was already acquired; True if acquired now."""
    path = acquisition / scan_filename(number)
    if scan_is_complete(path):
        return False
    sim = simulate_scan(options.simulation, scan_id=path.stem, region=number - 1)
    save_truth(sim, path)  # before the scan completes: the report never sees a scan without truth
    emit_scan(sim.scan, path, publisher=publisher, frame_rate=options.rate_hz)
    timings.record(path.stem, scan_end=time.time())
    return True


def wait_for_run(state_dir: Path, scan_path: Path, *, timeout_s: float, heartbeat: Callable[[str], None],
                 check: Callable[[], None]) -> tuple[str, str | None]:
    """Block until the watcher journals the scan's run as finished; returns (state, run key)."""
    deadline = time.monotonic() + timeout_s
    journal_path = state_dir / JOURNAL_FILENAME
    state = "unseen"
    while time.monotonic() < deadline:
        check()
        if journal_path.exists():
            journal = Journal(journal_path, readonly=True)
            try:
                row = journal.get(str(scan_path))
            finally:
                journal.close()
            if row is not None:
                state = row.state
                if state in (SUCCEEDED, FAILED):
                    return state, row.run_key
        heartbeat(state)
        time.sleep(0.5)
    raise TimeoutError(f"{scan_path.name}: no finished run after {timeout_s:.0f} s (last journal state: {state})")
