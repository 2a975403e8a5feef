"""Atomic, optionally checksum-verified file copy: the heart of the local Transfer provider.

A file is written under a hidden temporary name in the destination directory and only then
fsynced and renamed onto its final name (and the directory fsynced), so no half-written file
ever carries a final name. The request decides the rest, with Globus Transfer's meaning:

- ``verify_checksum`` (default false): read the copy back and compare its sha256 with the
  bytes read from the source, copying again on a mismatch;
- ``sync_level`` (default: none, always copy): which existing destination files are left
  alone: ``exists``, same ``size``, not older (``mtime``), or same ``checksum``.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from ptychoflow.fs import commit_file, copy_hashing, sha256_file

VERIFY_ATTEMPTS = 3
# Transfer's sync levels (the API also takes their numbers).
SYNC_LEVELS = {"exists": 0, "size": 1, "mtime": 2, "checksum": 3}
# Called with the temporary file after it is written and before it is verified; tests use
# it to simulate corruption in flight.
after_write_hooks: list[Callable[[Path], None]] = []


class CopyError(Exception):
    """A copy that cannot be completed safely; ``code`` mirrors Transfer's nice_status."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class CopyOptions:
    """What a Transfer request asks of each file (see the module docstring)."""

    verify_checksum: bool = False
    sync_level: int | None = None


def parse_sync_level(value: object) -> int | None:
    """``"checksum"`` or ``3`` -> 3; None stays None; anything else is a ValueError."""
    if value is None:
        return None
    if isinstance(value, str) and value in SYNC_LEVELS:
        return SYNC_LEVELS[value]
    if isinstance(value, int) and not isinstance(value, bool) and value in SYNC_LEVELS.values():
        return value
    raise ValueError(f"sync_level must be one of {', '.join(SYNC_LEVELS)} (or 0-3), not {value!r}")


@dataclass
class CopyStats:
    files: int = 0
    files_transferred: int = 0
    files_skipped: int = 0
    bytes_transferred: int = 0
    checksum_retries: int = 0
    transferred: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


def _needs_copy(source: Path, destination: Path, stats: CopyStats, sync_level: int | None) -> bool:
    """False when ``sync_level`` says the existing destination stays as it is."""
    stats.files += 1
    if destination.is_dir():
        raise CopyError("FILE_IS_DIRECTORY", f"{destination}: destination is a directory, source {source} is a file")
    if not destination.exists() or sync_level is None:
        return True
    source_stat, destination_stat = source.stat(), destination.stat()
    same = {
        0: lambda: True,
        1: lambda: destination_stat.st_size == source_stat.st_size,
        2: lambda: source_stat.st_mtime <= destination_stat.st_mtime,
        3: lambda: destination_stat.st_size == source_stat.st_size and sha256_file(destination) == sha256_file(source),
    }[sync_level]()
    if same:
        stats.files_skipped += 1
    return not same


def _finish(source: Path, destination: Path, temporary: Path, expected: str, stats: CopyStats, verify: bool) -> None:
    """Verify when asked (re-copying on mismatch), then fsync and rename onto the final name."""
    for attempt in range(VERIFY_ATTEMPTS):
        if attempt:
            expected = copy_hashing(source, temporary)
        for hook in after_write_hooks:
            hook(temporary)
        if not verify or sha256_file(temporary) == expected:
            source_stat = source.stat()
            os.utime(temporary, ns=(source_stat.st_atime_ns, source_stat.st_mtime_ns))
            commit_file(temporary, destination)
            with stats.lock:
                stats.files_transferred += 1
                stats.bytes_transferred += source_stat.st_size
                stats.transferred.append(str(destination))
            return
        with stats.lock:
            stats.checksum_retries += 1
    raise CopyError(
        "VERIFY_CHECKSUM",
        f"{destination}: sha256 of the copy did not match {source} after {VERIFY_ATTEMPTS} attempts",
    )


def copy_files(pairs: Iterable[tuple[Path, Path]], stats: CopyStats, tag: str, options: CopyOptions = CopyOptions(),
               stop: Callable[[], bool] = lambda: False) -> None:
    """Copy (source, destination) pairs safely, as ``options`` ask (see module docstring).

    Pipelined on two threads: while file i is verified, fsynced and renamed, file i+1 is
    copied, so disk write-back and hashing overlap. Any failure removes every temporary
    file; files already renamed are complete and verified, so a retry resumes after them.
    ``stop`` is asked before each file: once it is true the copy ends there (CANCELED), with
    the files before it complete and nothing partial under a final name.
    """
    temporaries: list[Path] = []
    futures: list[Future] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="copy-finish") as finisher:
        try:
            for source, destination in pairs:
                if any(f.done() and f.exception() for f in futures):
                    break
                if stop():
                    for future in futures:
                        future.result()  # the files already started are finished (or fail)
                    raise CopyError("CANCELED", f"stopped on request after {stats.files_transferred} file(s) "
                                                f"(before {source.name}); no partial file was left")
                if not _needs_copy(source, destination, stats, options.sync_level):
                    continue
                destination.parent.mkdir(parents=True, exist_ok=True)
                temporary = destination.with_name(f".{destination.name}.{tag}.part")
                temporaries.append(temporary)
                expected = copy_hashing(source, temporary)
                futures.append(finisher.submit(_finish, source, destination, temporary, expected, stats,
                                               options.verify_checksum))
            for future in futures:
                future.result()
        finally:
            for future in futures:
                future.exception()  # wait for the finisher before cleaning up
            for temporary in temporaries:
                temporary.unlink(missing_ok=True)


def tree_pairs(source: Path, destination: Path) -> Iterator[tuple[Path, Path]]:
    """(file, target) pairs of a directory tree in a stable order; creates the directories."""
    destination.mkdir(parents=True, exist_ok=True)
    for directory, subdirs, files in os.walk(source):
        subdirs.sort()
        relative = Path(directory).relative_to(source)
        (destination / relative).mkdir(parents=True, exist_ok=True)
        for name in sorted(files):
            yield Path(directory) / name, destination / relative / name
