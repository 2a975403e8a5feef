"""The slot pool: tasks run in worker processes that can be killed one at a time and that die,
with everything they started, when their parent dies (even by kill -9)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import CancelledError, Future
from pathlib import Path

import pytest

from engine_helpers import wait_until
from ptychoflow.flowengine.process_slots import ProcessSlots, RemoteError, SlotLost, TaskKilled
from ptychoflow.processes import package_environment, pid_alive


def grandchild(pid_file: Path, seconds: int = 60) -> list[str]:
    """A shell that writes its pid, then becomes a long sleep: a process the task started."""
    return ["sh", "-c", f"echo $$ > {pid_file}; exec sleep {seconds}"]


def read_pid(path: Path) -> int:
    wait_until(lambda: path.exists() and path.read_text().strip(), 10, f"{path.name}")
    return int(path.read_text())


@pytest.fixture
def pool():
    slots = ProcessSlots(2, name="test")
    yield slots
    slots.shutdown()


def test_results_and_remote_errors(pool: ProcessSlots) -> None:
    assert pool.submit("builtins:divmod", 17, 5).result(30) == (3, 2)
    with pytest.raises(RemoteError, match="JSONDecodeError"):
        pool.submit("json:loads", "{not json").result(30)
    assert pool.submit("os:getpid").result(30) in pool.pids()  # the slot survives a raising task


def test_killing_a_running_task_ends_its_process_group_and_frees_the_slot(pool: ProcessSlots, tmp_path: Path) -> None:
    running = pool.submit("subprocess:call", grandchild(tmp_path / "g.pid"))
    child = read_pid(tmp_path / "g.pid")
    busy = pool.pids()
    started = time.monotonic()
    assert pool.kill(running)
    with pytest.raises(TaskKilled):
        running.result(10)
    wait_until(lambda: not pid_alive(child), 5, "the task's own child to end")
    assert time.monotonic() - started < 5
    # both slots take new work at once: the killed one is replaced
    assert sorted(pool.submit("builtins:abs", -i).result(30) for i in (1, 2)) == [1, 2]
    assert set(pool.pids()) != set(busy)


def test_killing_a_queued_task_cancels_it(tmp_path: Path) -> None:
    one = ProcessSlots(1, name="one")
    try:
        first = one.submit("time:sleep", 30)
        queued = one.submit("builtins:abs", -1)
        wait_until(lambda: first.running() and one.pids(), 10, "the first task to start")
        assert one.kill(queued) and queued.cancelled()
        assert one.kill(first)
        with pytest.raises(TaskKilled):
            first.result(10)
        assert one.submit("builtins:abs", -3).result(30) == 3
        with pytest.raises(CancelledError):
            queued.result(0)
    finally:
        one.shutdown()


def test_a_kill_between_claim_and_start_still_stops_the_task(monkeypatch: pytest.MonkeyPatch) -> None:
    """A task that has just left the queue (no longer cancellable, not yet in its process) is
    still killed: the engine's cancel came exactly then in a CI run, and the task ran on."""
    marked = threading.Event()
    original = Future.set_running_or_notify_cancel

    def slow_to_start(future: Future) -> bool:
        running = original(future)
        marked.set()
        time.sleep(0.3)  # widen the window the race needs
        return running

    monkeypatch.setattr(Future, "set_running_or_notify_cancel", slow_to_start)
    one = ProcessSlots(1, name="one")
    try:
        task = one.submit("time:sleep", 60)
        assert marked.wait(10)
        assert one.kill(task), "the kill found no task to stop"
        with pytest.raises(TaskKilled):
            task.result(10)
    finally:
        one.shutdown()


def test_a_crashed_slot_is_slot_lost_and_replaced(pool: ProcessSlots) -> None:
    with pytest.raises(SlotLost):
        pool.submit("os:_exit", 3).result(30)
    assert pool.submit("builtins:max", 4, 9).result(30) == 9


PARENT = """
import sys, time
from ptychoflow.flowengine.process_slots import ProcessSlots
pool = ProcessSlots(2, name="orphan-test")
pool.submit("subprocess:call", ["sh", "-c", "echo $$ > {pid_file}; exec sleep 120"])
while len(pool.pids()) < 1:
    time.sleep(0.01)
print(*pool.pids(), flush=True)
time.sleep(120)
"""


def test_kill_9_of_the_parent_leaves_no_orphans(tmp_path: Path) -> None:
    pid_file = tmp_path / "g.pid"
    parent = subprocess.Popen([sys.executable, "-c", PARENT.format(pid_file=pid_file)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=package_environment())
    try:
        slots = [int(p) for p in parent.stdout.readline().split()]
        assert slots, parent.stderr.read() if parent.poll() is not None else "the parent printed no slot pids"
        descendants = [*slots, read_pid(pid_file)]
        assert all(pid_alive(p) for p in descendants)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        wait_until(lambda: not any(pid_alive(p) for p in descendants), 5, f"the parent's descendants {descendants} to end")
    finally:
        if parent.poll() is None:
            parent.kill()


def test_shutdown_kills_running_tasks(tmp_path: Path) -> None:
    slots = ProcessSlots(1, name="bye")
    task = slots.submit("subprocess:call", grandchild(tmp_path / "g.pid"))
    child = read_pid(tmp_path / "g.pid")
    slots.shutdown()
    with pytest.raises(TaskKilled):
        task.result(10)
    wait_until(lambda: not pid_alive(child) and not slots.pids(), 5, "the slot and its child to end")
