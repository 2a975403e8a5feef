"""What flows from the receiver to the inference loop, and the bounded queue between them.

Frames and control messages (scan start/end) share one FIFO so an end-of-scan is handled
only after every frame of that scan. Only frames count against the bound: control
messages are tiny and must never be lost, or a scan would never close.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class FrameItem:
    scan_id: str
    index: int
    position_m: tuple[float, float]
    frame: np.ndarray
    received: float = field(default_factory=time.perf_counter)  # for end-to-end latency


@dataclass
class ControlItem:
    kind: str  # "start" | "end"
    header: dict[str, Any]

    @property
    def scan_id(self) -> str:
        return str(self.header.get("scan_id", ""))


Item = FrameItem | ControlItem


class FrameQueue:
    """FIFO bounded in frames; a full queue refuses a frame (the caller counts it as dropped)."""

    def __init__(self, max_frames: int, *, max_controls: int = 10_000) -> None:
        self.capacity = max_frames
        self._max_controls = max_controls
        self._items: deque[Item] = deque()
        self._frames = 0
        self._controls = 0
        self._cond = threading.Condition()

    def put_frame(self, item: FrameItem) -> bool:
        with self._cond:
            if self._frames >= self.capacity:
                return False
            self._items.append(item)
            self._frames += 1
            self._cond.notify()
            return True

    def put_control(self, item: ControlItem) -> bool:
        with self._cond:
            if self._controls >= self._max_controls:
                return False
            self._items.append(item)
            self._controls += 1
            self._cond.notify()
            return True

    def get(self, timeout_s: float) -> Item | None:
        """Next item, waiting up to `timeout_s` (0: don't wait); None if none came."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not self._items:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
            item = self._items.popleft()
            if isinstance(item, FrameItem):
                self._frames -= 1
            else:
                self._controls -= 1
            return item

    @property
    def depth(self) -> int:
        """Frames waiting (control messages not counted)."""
        return self._frames

    def __len__(self) -> int:
        return len(self._items)
