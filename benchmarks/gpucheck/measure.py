"""Timing for the sections: per-call durations for a while, then their median."""

from __future__ import annotations

import statistics
import time
from typing import Callable


def durations(call: Callable[[], object], *, seconds: float = 0.5, warmup: int = 3, min_calls: int = 5,
              max_calls: int = 100_000, sync: Callable[[], object] = lambda: None) -> list[float]:
    """Seconds per call of `call` (after `warmup` untimed calls), for about `seconds` and at least
    `min_calls` calls. `sync` waits for queued device work (``torch.cuda.synchronize``), so a call
    is timed until its work is done, not until it is launched."""
    for _ in range(warmup):
        call()
    sync()
    times: list[float] = []
    stop = time.perf_counter() + seconds
    while len(times) < max_calls and (len(times) < min_calls or time.perf_counter() < stop):
        start = time.perf_counter()
        call()
        sync()
        times.append(time.perf_counter() - start)
    return times


def median_s(call: Callable[[], object], **kwargs) -> float:
    return statistics.median(durations(call, **kwargs))
