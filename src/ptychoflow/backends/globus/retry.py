"""Retries and polling cadence for the Globus services.

HTTP-level retries (429/5xx, connection errors) are the SDK's job: every client we build
gets :func:`sdk_retry_config`. What the SDK cannot know is how often *we* ask "is the run
done yet?"; :class:`PollBackoff` makes that bounded and gentle.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from globus_sdk.transport import RetryConfig

DEFAULT_MAX_RETRIES = 5


def sdk_retry_config() -> RetryConfig:
    """The SDK's own retry policy, with the attempt count overridable for flaky sites."""
    retries = int(os.environ.get("PTYCHOFLOW_GLOBUS_MAX_RETRIES", DEFAULT_MAX_RETRIES))
    return RetryConfig(max_retries=retries, max_sleep=30)


@dataclass
class PollBackoff:
    """Delays for status polling: start quick, grow geometrically, cap, add jitter.

    A run that finishes in seconds is seen quickly; a 6-hour training run is asked about
    about once a minute, never in a tight loop.
    """

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
