"""Checksummed, atomic, resumable file copy: the heart of the local Transfer provider.

A file is written under a hidden temporary name in the destination directory, read back
and verified against the sha256 of the bytes read from the source, and only then fsynced
and renamed onto its final name (and the directory fsynced). A destination that already
matches is skipped (resume); a destination that differs and is newer than the source is
never overwritten silently.
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
# Called with the temporary file after it is written and before it is verified; tests use
# it to simulate corruption in flight.
after_write_hooks: list[Callable[[Path], None]] = []


class CopyError(Exception):
    """A copy that cannot be completed safely; ``code`` mirrors Transfer's nice_status."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class CopyStats:
    files: int = 0
    files_transferred: int = 0
    files_skipped: int = 0
    bytes_transferred: int = 0
    checksum_retries: int = 0
    transferred: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


def _check_destination(source: Path, destination: Path, stats: CopyStats) -> bool:
    """False when ``destination`` already matches (resume); raises if it must not be replaced."""
    stats.files += 1
    if destination.is_dir():
        raise CopyError("FILE_IS_DIRECTORY", f"{destination}: destination is a directory, source {source} is a file")
    if not destination.exists():
        return True
    source_stat, destination_stat = source.stat(), destination.stat()
    if destination_stat.st_size == source_stat.st_size and sha256_file(destination) == sha256_file(source):
        stats.files_skipped += 1
        return False
    if destination_stat.st_mtime > source_stat.st_mtime:
        raise CopyError(
            "DESTINATION_NEWER",
            f"{destination}: destination differs from {source} and is newer; refusing to overwrite it "
            "(delete it or move it aside first)",
        )
    return True


def _finish(source: Path, destination: Path, temporary: Path, expected: str, stats: CopyStats) -> None:
    """Verify (re-copying on mismatch), then fsync and rename onto the final name."""
    for attempt in range(VERIFY_ATTEMPTS):
        if attempt:
            expected = copy_hashing(source, temporary)
        for hook in after_write_hooks:
            hook(temporary)
        if sha256_file(temporary) == expected:
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


def copy_files(pairs: Iterable[tuple[Path, Path]], stats: CopyStats, tag: str) -> None:
    """Copy (source, destination) pairs safely (see module docstring).

    Pipelined on two threads: while file i is verified, fsynced and renamed, file i+1 is
    copied, so disk write-back and hashing overlap. Any failure removes every temporary
    file; files already renamed are complete and verified, so a retry resumes after them.
    """
    temporaries: list[Path] = []
    futures: list[Future] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="copy-finish") as finisher:
        try:
            for source, destination in pairs:
                if any(f.done() and f.exception() for f in futures):
                    break
                if not _check_destination(source, destination, stats):
                    continue
                destination.parent.mkdir(parents=True, exist_ok=True)
                temporary = destination.with_name(f".{destination.name}.{tag}.part")
                temporaries.append(temporary)
                expected = copy_hashing(source, temporary)
                futures.append(finisher.submit(_finish, source, destination, temporary, expected, stats))
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
