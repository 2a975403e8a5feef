"""Run one function in several fresh processes at once (races between real processes)."""

from __future__ import annotations

import multiprocessing
from typing import Any, Callable


def run_in_processes(target: Callable[..., None], args: tuple[Any, ...], count: int = 3,
                     timeout: float = 120) -> list[int | None]:
    """Start `count` spawned processes running ``target(*args)``; their exit codes once joined."""
    ctx = multiprocessing.get_context("spawn")  # fresh interpreters: no state shared by fork
    workers = [ctx.Process(target=target, args=args) for _ in range(count)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout)
    return [worker.exitcode for worker in workers]
