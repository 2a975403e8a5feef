"""The acquisition watcher: every finished scan starts exactly one flow run.

Public API::

    from ptychoflow.watcher import WatcherService, WatcherOptions, run_watcher, build_run_body
    WatcherService(profile, backend).run()      # blocks; SIGTERM/SIGINT or request_stop() end it
"""

from ptychoflow.watcher.scheduler import build_run_body, build_batch_body
from ptychoflow.watcher.service import WatcherOptions, WatcherService, run_watcher

__all__ = ["WatcherOptions", "WatcherService", "build_batch_body", "build_run_body", "run_watcher"]
