"""Helpers shared by the benchmark scripts: repeat, take medians, print a table."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))


def timed(func: Callable[[], object], repeats: int = 5, warmup: int = 1) -> list[float]:
    """Wall-clock seconds of `repeats` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        func()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


class torch_threads:
    """Temporarily set torch's CPU thread count (to the wrapper's, for a fair direct run)."""

    def __init__(self, n: int) -> None:
        import torch

        self.torch, self.n, self.previous = torch, n, torch.get_num_threads()

    def __enter__(self) -> None:
        self.torch.set_num_threads(self.n)

    def __exit__(self, *exc: object) -> None:
        self.torch.set_num_threads(self.previous)


def header(title: str) -> None:
    print(f"# {title}")
    print(f"# {platform.node()} | {os.cpu_count()} cores | python {platform.python_version()} | {time.strftime('%Y-%m-%d %H:%M')}")


def row(*cells: object) -> None:
    print(" | ".join(f"{c:.4g}" if isinstance(c, float) else str(c) for c in cells))
