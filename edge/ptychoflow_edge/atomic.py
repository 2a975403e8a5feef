"""Atomic file replacement: readers see the old file or the new one, never half of one."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable


def atomic_write(target: Path, write: Callable[[Path], None], *, fsync: bool = True) -> None:
    """Call `write(tmp)` on a temporary name beside `target`, then rename it into place."""
    target = Path(target)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        write(tmp)
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
