"""Rate-limited logging: a flood of bad frames must not flood the log (or slow the receiver)."""

from __future__ import annotations

import logging
import threading
import time


class RateLimitedLog:
    """At most one line per key every `interval_s`; the next line says how many were suppressed."""

    def __init__(self, logger: logging.Logger, interval_s: float = 5.0) -> None:
        self._logger = logger
        self._interval = interval_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def warning(self, key: str, message: str, *args: object) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(key, -1e9) < self._interval:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return
            self._last[key] = now
            suppressed = self._suppressed.pop(key, 0)
        suffix = f" ({suppressed} similar suppressed)" if suppressed else ""
        self._logger.warning(message + suffix, *args)
