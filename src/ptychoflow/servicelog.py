"""Service logs: every long-running service (engine, watcher, edge, dashboard) writes a rotating
log file in the profile's state directory, and the same lines to stderr (a terminal, or
journald under systemd). ``ptychoflow logs SERVICE`` reads them.

Files rotate at 5 MiB and keep 5 old ones: a service left alone for weeks cannot fill a disk.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ptychoflow.names import PrintableFormatter

SERVICES = ("engine", "watcher", "edge", "dashboard")
MAX_BYTES = 5 * 2**20
BACKUPS = 5


def log_path(state_dir: str | Path, service: str) -> Path:
    """``<state_dir>/<service>.log``: where `service` logs (the current file; older ones end .1 … .5)."""
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r} (services: {', '.join(SERVICES)})")
    return Path(state_dir) / f"{service}.log"


@contextmanager
def service_log(service: str, state_dir: str | Path, *, stderr: bool = True) -> Iterator[Path]:
    """Send every ``ptychoflow.*`` record at INFO and up (DEBUG with ``-vv``) to the service's
    rotating file and, unless `stderr` is False (its stderr already is that file), to stderr.

    The ``ptychoflow`` logger stops propagating meanwhile, so the CLI's own console handler
    does not print each line a second time.
    """
    path = log_path(state_dir, service)
    path.parent.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger("ptychoflow")
    level = min(logging.INFO, logging.getLogger().getEffectiveLevel())
    formatter = PrintableFormatter()  # names from data cannot forge a line or repaint a terminal
    handlers: list[logging.Handler] = [logging.handlers.RotatingFileHandler(path, maxBytes=MAX_BYTES, backupCount=BACKUPS)]
    if stderr:
        handlers.append(logging.StreamHandler(sys.stderr))
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.setLevel(level)
        logger.addHandler(handler)
    saved = logger.level, logger.propagate
    logger.setLevel(level)
    logger.propagate = False
    try:
        yield path
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
            handler.close()
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
