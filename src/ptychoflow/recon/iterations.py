"""The loop every engine runs: one rPIE iteration at a time, so that progress, logging, the
divergence check, the time limit and Ctrl-C all happen between iterations, the same for every
engine."""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from ptychoflow.recon.base import IterationInfo, PreparedScan, ProgressCallback, ReconstructionResult, RpieOptions

log = logging.getLogger(__name__)
COMPLETED = "completed"
INTERRUPTED = "interrupted (Ctrl-C)"  # the start of stop_reason when Ctrl-C ended the loop


@dataclass
class IterationRun:
    """The loss after each iteration, why the loop stopped, and when it began."""

    started: float
    losses: list[float] = field(default_factory=list)
    stop_reason: str = COMPLETED


def run_iterations(step: Callable[[], float], options: RpieOptions, *, engine: str, started: float,
                   progress: ProgressCallback | None = None) -> IterationRun:
    """Call `step` (one iteration, returning its loss) up to ``options.iterations`` times.

    Stops cleanly once ``options.time_limit_s`` has passed since `started`, or after the
    iteration during which Ctrl-C was pressed (a second Ctrl-C aborts at once): either way
    the result so far is returned, marked stopped early, so it can be saved. A non-finite
    loss raises FloatingPointError (the run diverged: nothing worth writing).
    """
    run = IterationRun(started)
    total = options.iterations
    with _first_interrupt_stops() as interrupted:
        for iteration in range(1, total + 1):
            loss = float(step())
            run.losses.append(loss)
            elapsed = time.perf_counter() - started
            log.info("%s rPIE iteration %d/%d loss %.6g (%.1f s)", engine, iteration, total, loss, elapsed)
            if progress is not None:
                progress(IterationInfo(iteration, total, loss, elapsed))
            if not math.isfinite(loss):
                raise FloatingPointError(f"rPIE diverged at iteration {iteration} (loss {loss})")
            if iteration == total:
                break
            if interrupted.is_set():
                run.stop_reason = f"{INTERRUPTED} after {iteration} iterations"
            elif options.time_limit_s is not None and elapsed >= options.time_limit_s:
                run.stop_reason = f"time limit {options.time_limit_s:g} s reached after {iteration} iterations"
            if run.stop_reason != COMPLETED:
                log.warning("stopping early: %s", run.stop_reason)
                break
    return run


@contextlib.contextmanager
def _first_interrupt_stops() -> Iterator[threading.Event]:
    """While the loop runs, the first SIGINT (Ctrl-C) only sets the yielded event; a second one
    raises KeyboardInterrupt as usual. Only in the main thread, and only where nobody else
    has taken over SIGINT."""
    interrupted = threading.Event()
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield interrupted
        return

    def on_interrupt(signum: int, frame: object) -> None:
        if interrupted.is_set():
            raise KeyboardInterrupt
        interrupted.set()
        log.warning("Ctrl-C: stopping after this iteration and saving the object and probe so far "
                    "(press Ctrl-C again to abort without saving)")

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)


def engine_result(prepared: PreparedScan, run: IterationRun, *, engine: str, obj: np.ndarray, probe: np.ndarray,
                  positions_px: np.ndarray, versions: dict[str, str], parameters: dict) -> ReconstructionResult:
    """An engine's output in ptychoflow's conventions, with the loop's history and stop reason."""
    return ReconstructionResult(
        object=np.asarray(obj).astype(np.complex64),
        probe=np.asarray(probe).astype(np.complex64),
        positions_px=np.asarray(positions_px, np.float64),
        pixel_size_m=prepared.pixel_size_m,
        loss_history=np.asarray(run.losses, np.float64),
        engine=engine,
        versions=versions,
        parameters=parameters,
        object_origin_px=prepared.object_origin_px.copy(),
        iterations_run=len(run.losses),
        stopped_early=run.stop_reason != COMPLETED,
        stop_reason=run.stop_reason,
        wall_time_s=time.perf_counter() - run.started,
    )
