"""What a scan reader is (``ScanReader``) and what it may be told (``ReadOptions``).

Kept apart from the registry so the readers and the registry both import it, never each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ptychoflow.scan.format import Scan


@dataclass(frozen=True)
class ReadOptions:
    """What a profile (or the command line) may tell the readers; each uses what applies."""

    frame_size: int | None = None  # crop (about the beam centre) to this square; None: largest that fits
    positions_file: Path | None = None  # Eiger: the position file (relative: to the master's folder)
    y_source: str = "interferometer"  # Eiger/Velociprobe: which y column ("interferometer" | "encoder")
    max_frames: int | None = None  # read only the first N frames (replays, quick looks)


@dataclass(frozen=True)
class ScanReader:
    """A scan layout: how to recognise it, read it, and tell that it is whole."""

    name: str
    description: str
    read: Callable[..., Scan]  # read(path, options, *, require_complete=True, load=True) -> Scan
    detect: Callable[[Path], bool]  # cheap: suffix and a look at the HDF5 tree, never the frames
    is_complete: Callable[[Path, ReadOptions], bool]  # never raises: unreadable means not complete
    companions: Callable[[Path, ReadOptions], list[Path]] = field(default=lambda path, options: [])
    """Other files the scan needs (Eiger data files, the position file): transfers move them too."""
    incomplete_reason: Callable[[Path, ReadOptions], str | None] | None = None
    """Why a recognised scan is not whole yet, in one line (None: it is); without it the watcher
    says only that it is incomplete (``is_complete``)."""
