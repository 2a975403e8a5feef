"""How often a caller asks a backend "is the run done yet?".

Start quick, grow geometrically, cap, add jitter: a run that finishes in seconds is seen
quickly, a six-hour training is asked about once a minute, never in a tight loop. Each
backend says which cadence suits it (``Backend.poll_backoff``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass


@dataclass
class PollBackoff:
    """Delays for status polling: start at ``initial``, grow by ``factor`` up to ``maximum``."""

    initial: float = 2.0
    factor: float = 1.5
    maximum: float = 60.0
    jitter: float = 0.1

    def delays(self) -> Iterator[float]:
        delay = self.initial
        while True:
            yield delay * (1 + random.uniform(-self.jitter, self.jitter))
            delay = min(delay * self.factor, self.maximum)


def poll_until(
    probe: Callable[[], bool],
    *,
    timeout: float | None = None,
    backoff: PollBackoff | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> bool:
    """Call ``probe`` until it returns True or ``timeout`` seconds pass; True if it did."""
    deadline = None if timeout is None else clock() + timeout
    for delay in (backoff or PollBackoff()).delays():
        if probe():
            return True
        if deadline is not None:
            remaining = deadline - clock()
            if remaining <= 0:
                return False
            delay = min(delay, remaining)
        sleep(delay)
    return False  # pragma: no cover - delays() is infinite
