"""Micro-batching: up to `size` frames, waiting at most `max_wait_s` after the first.

Larger batches amortise the per-call cost of the network; the wait bound caps the latency
that batching adds when frames trickle in. A batch never mixes scans or frame shapes, and a
control message ends the batch before it, so stream order is kept.
"""

from __future__ import annotations

import time

from ptychoflow_edge.frames import ControlItem, FrameItem, FrameQueue, Item


class Batcher:
    def __init__(self, queue: FrameQueue, size: int, max_wait_s: float) -> None:
        self._queue = queue
        self.size = max(1, size)
        self.max_wait_s = max(0.0, max_wait_s)
        self._held: Item | None = None  # looked at but belongs to the next batch

    def next(self, timeout_s: float) -> list[FrameItem] | ControlItem | None:
        """A batch of frames, a control message, or None if nothing arrived in `timeout_s`."""
        first, self._held = (self._held, None) if self._held is not None else (self._queue.get(timeout_s), None)
        if first is None or isinstance(first, ControlItem):
            return first
        batch = [first]
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.size:
            item = self._queue.get(max(0.0, deadline - time.monotonic()))
            if item is None:
                break
            if isinstance(item, ControlItem) or item.scan_id != first.scan_id or item.frame.shape != first.frame.shape:
                self._held = item
                break
            batch.append(item)
        return batch

    @property
    def holding(self) -> bool:
        return self._held is not None
