"""Checksummed, atomic, resumable file copy: the heart of the local Transfer provider.

A file is written under a hidden temporary name in the destination directory, fsynced,
read back and verified against the source's sha256, and only then renamed onto its final
name. A destination that already matches is skipped (resume); a destination that differs
and is newer than the source is never overwritten silently.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

CHUNK = 8 << 20
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


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _copy_hashing(source: Path, target: Path) -> str:
    """Copy bytes and return the source's sha256 (computed from the bytes read)."""
    digest = hashlib.sha256()
    with open(source, "rb") as src, open(target, "wb") as dst:
        buffer = bytearray(CHUNK)
        view = memoryview(buffer)
        while size := src.readinto(buffer):
            digest.update(view[:size])
            dst.write(view[:size])
        dst.flush()
        os.fsync(dst.fileno())
    return digest.hexdigest()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def copy_file(source: Path, destination: Path, stats: CopyStats, tag: str) -> None:
    """Copy one file safely (see module docstring); updates ``stats``."""
    stats.files += 1
    if destination.is_dir():
        raise CopyError("FILE_IS_DIRECTORY", f"{destination}: destination is a directory, source {source} is a file")
    source_stat = source.stat()
    if destination.exists():
        destination_stat = destination.stat()
        if destination_stat.st_size == source_stat.st_size and sha256_file(destination) == sha256_file(source):
            stats.files_skipped += 1
            return
        if destination_stat.st_mtime > source_stat.st_mtime:
            raise CopyError(
                "DESTINATION_NEWER",
                f"{destination}: destination differs from {source} and is newer; refusing to overwrite it "
                "(delete it or move it aside first)",
            )
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = destination.with_name(f".{destination.name}.{tag}.part")
    try:
        for attempt in range(VERIFY_ATTEMPTS):
            expected = _copy_hashing(source, temporary)
            for hook in after_write_hooks:
                hook(temporary)
            if sha256_file(temporary) == expected:
                os.utime(temporary, ns=(source_stat.st_atime_ns, source_stat.st_mtime_ns))
                os.replace(temporary, destination)
                _fsync_dir(destination.parent)
                stats.files_transferred += 1
                stats.bytes_transferred += source_stat.st_size
                stats.transferred.append(str(destination))
                return
            stats.checksum_retries += 1
        raise CopyError(
            "VERIFY_CHECKSUM",
            f"{destination}: sha256 of the copy did not match {source} after {VERIFY_ATTEMPTS} attempts",
        )
    finally:
        temporary.unlink(missing_ok=True)


def copy_tree(source: Path, destination: Path, stats: CopyStats, tag: str) -> None:
    """Copy a directory recursively, file by file, in a stable order."""
    destination.mkdir(parents=True, exist_ok=True)
    for directory, subdirs, files in os.walk(source):
        subdirs.sort()
        relative = Path(directory).relative_to(source)
        (destination / relative).mkdir(parents=True, exist_ok=True)
        for name in sorted(files):
            copy_file(Path(directory) / name, destination / relative / name, stats, tag)
