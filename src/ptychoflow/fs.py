"""Filesystem primitives every part of ptychoflow shares: one implementation of each.

- ``atomic_write`` and its text/bytes/JSON/copy forms: a reader sees the old file or the new
  one, never half of one (temporary name beside the target, fsync, ``os.replace``, then the
  directory fsynced so the rename itself survives a power cut).
- ``sha256_file``: streamed, so a multi-GB scan never sits in memory.
- ``JsonStateFile``: a small JSON document (registries, state) updated under a lock.
- ``file_lock``: an advisory ``flock``; the kernel drops it when the process dies, even by
  ``kill -9``, so a crash never leaves a stale lock.
- ``SingleInstance``: one service per state directory, with its pid readable by others.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from ptychoflow.errors import InputError, PtychoflowError
from ptychoflow.processes import pid_alive

_CHUNK = 1 << 20
_PROBE_WAIT_S = 1.0  # how long a start waits out other processes' holder_pid probes


def temporary_name(target: Path) -> Path:
    """A hidden name beside `target`, unique per process and thread (never matched by globs
    such as ``scan_*.h5``, and on the same filesystem, so the rename is atomic)."""
    return target.with_name(f".{target.name}.tmp-{os.getpid()}-{threading.get_ident()}")


def writable_dir(directory: str | Path, *, field: str) -> Path:
    """Create `directory` if needed and prove a file can be written in it, before any long
    work is spent on what would go there. An InputError names the directory and `field`."""
    directory = Path(directory)
    probe = temporary_name(directory / ".write-probe")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise InputError(directory, field, f"cannot write here: {exc.strerror or exc}") from None
    return directory


def fsync_dir(directory: str | Path) -> None:
    """Make a rename in `directory` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_file(path: str | Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def commit_file(temporary: str | Path, target: str | Path, *, durable: bool = True) -> Path:
    """Rename a finished `temporary` file (same directory) onto `target`, durably.

    The one rename step of every atomic write; called on its own where the file is written
    and checked apart from its rename (the Transfer provider verifies a copy's checksum
    before it may take its final name).
    """
    target = Path(target)
    if durable:
        fsync_file(temporary)
    os.replace(temporary, target)
    if durable:
        fsync_dir(target.parent)
    return target


def atomic_write(target: str | Path, write: Callable[[Path], None], *, durable: bool = True) -> Path:
    """Call ``write(tmp)`` on a temporary name beside `target`, then rename it into place.

    `durable=False` skips the fsyncs, for files rewritten often whose loss costs nothing
    (a status file refreshed twice a second). On any error the temporary file is removed and
    `target` is left as it was.
    """
    target = Path(target)
    tmp = temporary_name(target)
    try:
        write(tmp)
        return commit_file(tmp, target, durable=durable)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(target: str | Path, data: bytes, *, durable: bool = True) -> Path:
    return atomic_write(target, lambda tmp: tmp.write_bytes(data), durable=durable)


def atomic_write_text(target: str | Path, text: str, *, durable: bool = True) -> Path:
    return atomic_write(target, lambda tmp: tmp.write_text(text, encoding="utf-8"), durable=durable)


def atomic_write_json(target: str | Path, document: Any, *, durable: bool = True, indent: int | None = 2) -> Path:
    text = json.dumps(document, indent=indent, sort_keys=True)
    return atomic_write_text(target, text, durable=durable)


def atomic_copy(source: str | Path, target: str | Path, *, durable: bool = True) -> Path:
    return atomic_write(target, lambda tmp: shutil.copyfile(source, tmp), durable=durable)


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def copy_hashing(source: str | Path, target: str | Path) -> str:
    """Copy `source` to `target` and return the sha256 of the bytes read, in one pass.

    The digest is of what was read, not of what landed: comparing it with ``sha256_file``
    of the copy detects corruption in flight without reading the source twice.
    """
    digest = hashlib.sha256()
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    with open(source, "rb") as src, open(target, "wb") as dst:
        while size := src.readinto(buffer):
            digest.update(view[:size])
            dst.write(view[:size])
    return digest.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Of bytes already in memory: the very bytes about to be used, not a second read."""
    return hashlib.sha256(data).hexdigest()


@contextmanager
def file_lock(path: str | Path, *, shared: bool = False) -> Iterator[None]:
    """Hold an advisory lock on `path` (created if missing) for the ``with`` block; waits."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class JsonStateFile:
    """A JSON object on disk: read whole, changed under a lock, written atomically.

    A missing file reads as ``{}``; a corrupt one is an InputError naming the file, never
    silently replaced (it may hold the only record of registered ids).
    """

    def __init__(self, path: str | Path, what: str) -> None:
        self.path = Path(path)
        self.what = what  # "function registry", "flow state": words for the error message

    def load(self) -> dict[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except (UnicodeDecodeError, IsADirectoryError, PermissionError) as exc:
            raise InputError(self.path, "(file)", f"unreadable {self.what}: {exc}") from None
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(self.path, "(json)", f"corrupt {self.what}: {exc}") from None
        if not isinstance(document, dict):
            raise InputError(self.path, "(json)", f"corrupt {self.what}: expected an object, got {type(document).__name__}")
        return document

    @contextmanager
    def updating(self) -> Iterator[dict[str, Any]]:
        """Yield the document to change in place; it is written when the block exits cleanly."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(self.path.with_name(f".{self.path.name}.lock")):
            document = self.load()
            yield document
            atomic_write_json(self.path, document)


def _try_flock(handle: IO[str], operation: int) -> bool:
    """Non-blocking flock: True if taken, False if another holder conflicts."""
    try:
        fcntl.flock(handle, operation | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


class AlreadyRunning(PtychoflowError):
    """Another process holds this single-instance guard."""


class SingleInstance:
    """One process per guard file (``engine.lock``, ``watcher.lock``), holding its pid.

    The lock is an exclusive ``flock`` kept for the life of the process; the pid is written
    into the locked file itself, so the pid and the lock can never disagree.
    """

    def __init__(self, path: str | Path, service: str) -> None:
        self.path = Path(path)
        self.service = service
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        """Take the guard, or raise AlreadyRunning naming the holder's pid."""
        if not self.try_acquire():
            pid = self.holder_pid()
            raise AlreadyRunning(f"{self.path.parent}: another {self.service} is running (pid {pid or '?'}); stop it first")

    def try_acquire(self) -> bool:
        """Take the guard if no other process holds it; False at once if one does.

        ``holder_pid`` probes with a shared lock for a few microseconds; a start that
        collides with a probe waits for it (briefly) instead of reporting a false holder.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            deadline = time.monotonic() + _PROBE_WAIT_S
            while not _try_flock(handle, fcntl.LOCK_EX):
                # Shared succeeds only when no exclusive holder exists: the conflict was a probe.
                if not _try_flock(handle, fcntl.LOCK_SH) or time.monotonic() > deadline:
                    handle.close()
                    return False
                fcntl.flock(handle, fcntl.LOCK_UN)
                time.sleep(0.002)
        except BaseException:
            handle.close()
            raise
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle
        return True

    def release(self) -> None:
        """Let go; the pid is erased first, so no prober reads ours as a later holder's."""
        if self._handle is not None:
            self._handle.seek(0)
            self._handle.truncate()
            self._handle.close()
            self._handle = None

    def holder_pid(self) -> int | None:
        """The pid of the live holder; None when nobody holds it; -1 if held but unreadable."""
        try:
            handle = open(self.path)
        except FileNotFoundError:
            return None
        with handle:
            if not _try_flock(handle, fcntl.LOCK_SH):
                text = handle.read().strip()
                # A new holder has the lock a moment before it replaces the pid of one killed
                # by kill -9 (who could not erase it): a dead pid means "held, pid not yet known".
                return int(text) if text.isdigit() and pid_alive(int(text)) else -1
            fcntl.flock(handle, fcntl.LOCK_UN)
            return None

    def __enter__(self) -> SingleInstance:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
