"""A pool of worker processes ("slots") that run one task at a time each and die with their parent.

Why not ``ProcessPoolExecutor``: it cannot stop one running task (killing one worker breaks the
whole pool), and after ``kill -9`` of its parent its workers and its ``resource_tracker`` live on
for ever. Here:

- each slot is a plain ``python`` process in its own process group, fed over a private pipe
  (no multiprocessing, so no resource tracker);
- ``kill(future)`` stops the task running for that future: its slot's whole process group
  (the function and anything it started) is terminated, and only that slot is replaced;
- a slot ends its process group when its parent dies, by the parent-death signal (Linux
  ``PR_SET_PDEATHSIG``) and by a watchdog thread that notices the parent pid change.

Slot processes are started from the slot's own long-lived thread, because the parent-death
signal fires when the *thread* that created the child exits.
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
import time
import traceback
from concurrent.futures import Future
from typing import Any, BinaryIO

from ptychoflow.names import printable_handler
from ptychoflow.processes import package_environment

_HEADER = struct.Struct("!Q")
_GRACE_SECONDS = 2.0  # SIGTERM, then SIGKILL
_WATCHDOG_SECONDS = 0.25
_PR_SET_PDEATHSIG = 1


class SlotLost(Exception):
    """The process running a task died before answering (crashed, or killed from outside)."""


class TaskKilled(Exception):
    """The task was stopped on request (``ProcessSlots.kill``)."""


class RemoteError(Exception):
    """The target raised in the slot process; the message is its traceback text."""


class ProcessSlots:
    """``size`` slots; ``submit("pkg.module:function", *args)`` runs it in the first free one."""

    def __init__(self, size: int, name: str = "slots") -> None:
        if size < 1:
            raise ValueError("a pool needs at least one slot")
        self.name = name
        self._queue: list[tuple[Future, str, tuple]] = []
        self._ready = threading.Condition()
        self._closed = False
        self._slots = [_Slot(self, i) for i in range(size)]
        for slot in self._slots:
            slot.start()

    def submit(self, target: str, *args: Any) -> Future:
        future: Future = Future()
        with self._ready:
            if self._closed:
                raise RuntimeError(f"{self.name}: pool is shut down")
            self._queue.append((future, target, args))
            self._ready.notify()
        return future

    def kill(self, future: Future) -> bool:
        """Stop ``future``'s task: not started yet, it is cancelled; running, its process group
        is terminated (the slot is replaced for the next task). False if it had finished."""
        if future.cancel():
            return True
        for slot in self._slots:
            if slot.current is future:
                return slot.kill_current()
        return False

    def pids(self) -> list[int]:
        """Process ids of the live slot processes."""
        return [slot.process.pid for slot in self._slots if slot.process and slot.process.poll() is None]

    def shutdown(self) -> None:
        """Stop every slot: queued tasks are cancelled, running ones killed."""
        with self._ready:
            self._closed = True
            for future, _, _ in self._queue:
                future.cancel()
            self._queue.clear()
            self._ready.notify_all()
        for slot in self._slots:
            slot.stop()

    def _next(self) -> tuple[Future, str, tuple] | None:
        with self._ready:
            while not self._queue and not self._closed:
                self._ready.wait()
            return self._queue.pop(0) if self._queue else None


class _Slot(threading.Thread):
    """One slot: a thread in the parent that owns (and restarts) one worker process."""

    def __init__(self, pool: ProcessSlots, index: int) -> None:
        super().__init__(name=f"{pool.name}-slot{index}", daemon=True)
        self.pool = pool
        self.process: subprocess.Popen | None = None
        self.current: Future | None = None
        self._tx: BinaryIO | None = None
        self._rx: BinaryIO | None = None
        self._killing = False
        self._lock = threading.Lock()

    def run(self) -> None:
        while True:
            item = self.pool._next()
            if item is None:
                break
            future, target, args = item
            # The slot claims the task before marking it running: a kill that finds the future
            # no longer cancellable must find it here, or the task would run on unstoppable.
            with self._lock:
                self.current, self._killing = future, False
            if not future.set_running_or_notify_cancel():
                with self._lock:
                    self.current = None
                continue
            try:
                self._serve(future, target, args)
            finally:
                with self._lock:
                    self.current = None
        self._terminate()

    def _serve(self, future: Future, target: str, args: tuple) -> None:
        with self._lock:  # a kill that arrives before or while the process starts still counts
            if self._killing:
                future.set_exception(TaskKilled("stopped before it started"))
                return
            self._ensure_process()
        try:
            _send(self._tx, (target, args))
            ok, value = _receive(self._rx)
        except (EOFError, OSError, pickle.PickleError) as exc:
            with self._lock:
                self._reap()
            future.set_exception(TaskKilled("stopped on request") if self._killing else
                                 SlotLost(f"worker process died before answering ({exc or 'no reply'})"))
            return
        future.set_result(value) if ok else future.set_exception(RemoteError(value))

    def kill_current(self) -> bool:
        with self._lock:
            if self.current is None:
                return False
            self._killing = True
            if self.process is not None:
                _kill_group(self.process)
            return True

    def stop(self) -> None:
        with self._lock:
            if self.process is not None:
                self._killing = True
                _kill_group(self.process)

    def _ensure_process(self) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        self._reap()
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", f"import {__name__} as m; m.slot_main({to_child_r}, {from_child_w}, {os.getpid()})"],
                pass_fds=(to_child_r, from_child_w), stdin=subprocess.DEVNULL, process_group=0,
                env=package_environment(),
            )
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self._tx = os.fdopen(to_child_w, "wb", buffering=0)
        self._rx = os.fdopen(from_child_r, "rb", buffering=0)

    def _reap(self) -> None:
        for stream in (self._tx, self._rx):
            if stream is not None:
                stream.close()
        self._tx = self._rx = None
        if self.process is not None:
            _kill_group(self.process, grace=0)
            self.process.wait()
            self.process = None

    def _terminate(self) -> None:
        with self._lock:
            self._reap()


def _kill_group(process: subprocess.Popen, grace: float = _GRACE_SECONDS) -> None:
    """SIGTERM the slot's process group, and SIGKILL it ``grace`` seconds later (at once if 0).

    Signals only while the leader is not yet reaped: until then its pid (the group id) cannot
    be reused by another process, so a late signal never hits a stranger.
    """
    if process.returncode is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM if grace else signal.SIGKILL)
    except ProcessLookupError:
        return
    if grace:
        timer = threading.Timer(grace, _kill_group, (process, 0))
        timer.daemon = True  # never holds up the parent's exit; the slot's watchdog covers that case
        timer.start()


def _send(stream: BinaryIO | None, message: Any) -> None:
    if stream is None:
        raise OSError("no pipe to the slot process")
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(payload)) + payload)


def _receive(stream: BinaryIO | None) -> Any:
    if stream is None:
        raise OSError("no pipe from the slot process")
    header = _read_exactly(stream, _HEADER.size)
    return pickle.loads(_read_exactly(stream, _HEADER.unpack(header)[0]))


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = stream.read(left)
        if not chunk:
            raise EOFError()
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


# --- inside a slot process ---------------------------------------------------------------------
def slot_main(rx_fd: int, tx_fd: int, parent_pid: int) -> None:
    """Serve tasks from the parent until it closes the pipe or dies (logs go to stderr, which
    is the parent's: the engine worker's log)."""
    _die_with(parent_pid)
    handler = printable_handler(logging.StreamHandler(), f"%(asctime)s %(levelname)s slot {os.getpid()} %(name)s: %(message)s")
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    with os.fdopen(rx_fd, "rb", buffering=0) as rx, os.fdopen(tx_fd, "wb", buffering=0) as tx:
        while True:
            try:
                target, args = _receive(rx)
            except EOFError:
                return
            try:
                reply = (True, _resolve(target)(*args))
            except BaseException as exc:  # the parent decides what a failure means
                reply = (False, "".join(traceback.format_exception(exc)))
            _send(tx, reply)


def _resolve(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def _die_with(parent_pid: int) -> None:
    """End this process group when ``parent_pid`` is gone: parent-death signal plus a watchdog."""
    signal.signal(signal.SIGTERM, lambda *_: _end_group())
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        _end_group()

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(_WATCHDOG_SECONDS)
        _end_group()

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _end_group() -> None:
    os.killpg(os.getpgid(0), signal.SIGKILL)
