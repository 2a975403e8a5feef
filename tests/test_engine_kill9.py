"""Durability under kill -9: the engine worker is killed repeatedly while compute and transfer
actions run. No run is lost or stuck, no completed action runs again, and no process the
worker started outlives it (counted by parent, from /proc)."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from dataclasses import replace
from pathlib import Path

import pytest

from engine_helpers import chain, descendants, make_env, wait_until, write_function
from ptychoflow.backends.local import LocalBackend
from ptychoflow.flowengine.worker import engine_pid, ensure_worker, stop_engine, write_env
from ptychoflow.processes import pid_alive
from ptychoflow.servicelog import log_path

C = "https://compute.actions.globus.org/v3"
T = "https://transfer.actions.globus.org/transfer"
RUNS, KILLS, FILES, FILE_MB = 16, 6, 6, 4


def flow(function_id: str) -> dict:
    def compute(tag: str) -> dict:
        return {"Type": "Action", "ActionUrl": C, "ResultPath": f"$.{tag}", "WaitTime": 600, "Parameters": {
            "endpoint_id": "local-hpc", "tasks": [{"function_id": function_id, "kwargs": {"key.=": f"run + ':{tag}'"}}]}}

    def transfer(tag: str, source: str, destination: str) -> dict:
        return {"Type": "Action", "ActionUrl": T, "ResultPath": f"$.{tag}", "WaitTime": 600, "Parameters": {
            "source_endpoint": source, "destination_endpoint": destination, "verify_checksum": True,
            "DATA": [{"source_path.=": "'/' + run", "destination_path.=": "'/' + run", "recursive": True}]}}

    return chain(("In", transfer("In", "beamline", "hpc")), ("Work", compute("Work")),
                 ("Out", transfer("Out", "hpc", "edge")), ("Check", compute("Check")))


def kinds_in_flight(backend: LocalBackend) -> set[str]:
    """'transfer' and/or 'compute': the kinds of action in flight in some run."""
    kinds = set()
    for run in backend.store.list_runs(status="ACTIVE"):
        step = backend.store.get_step(run.run_id, run.step_seq)
        if step and step.status == "ACTIVE" and step.action_url:
            kinds.add("transfer" if step.action_url == T else "compute")
    return kinds


@pytest.mark.slow
def test_kill_9_during_compute_and_transfer_loses_nothing_and_leaks_nothing(tmp_path: Path) -> None:
    env = replace(make_env(tmp_path, workers=2), retries_on_worker_loss={"local-hpc": KILLS})
    side_effects = tmp_path / "calls.log"
    work = write_function(tmp_path / "fns", "work", (
        f"import time\nopen({str(side_effects)!r}, 'a').write('start ' + kwargs['key'] + '\\n')\n"
        f"time.sleep(2.5)\nopen({str(side_effects)!r}, 'a').write('end ' + kwargs['key'] + '\\n')\n"
        "return {'key': kwargs['key']}"))
    backend = LocalBackend(env)
    function_id = backend.register_function(work, "work").function_id
    flow_file = tmp_path / "kill9.json"
    flow_file.write_text(json.dumps(flow(function_id)))
    deployed = backend.deploy_flow(flow_file)
    for i in range(RUNS):
        source = tmp_path / "beamline" / f"r{i}"
        source.mkdir()
        for j in range(FILES):
            (source / f"f{j}.bin").write_bytes(os.urandom(FILE_MB << 20))
    runs = [backend.start_run(deployed, {"run": f"r{i}"}).run_id for i in range(RUNS)]
    write_env(env)

    kills: list[str] = []
    orphans: list[int] = []
    try:
        while len(kills) < KILLS and backend.store.active_run_ids():
            worker = ensure_worker(env.state_dir)
            wanted = ("transfer", "compute")[len(kills) % 2]  # alternate, but do not wait long for one kind
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline and wanted not in kinds_in_flight(backend) \
                    and backend.store.active_run_ids():
                time.sleep(0.02)
            in_flight = kinds_in_flight(backend)
            if not in_flight:
                continue  # between two states just now: look again (the worker keeps running)
            kind = wanted if wanted in in_flight else in_flight.pop()
            below = descendants(worker)
            os.kill(worker, signal.SIGKILL)
            kills.append(kind)
            wait_until(lambda: engine_pid(env.state_dir) is None, 10, "the killed worker's lock to drop")
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and any(pid_alive(p) for p in below):
                time.sleep(0.05)
            orphans += [p for p in below if pid_alive(p)]
        final = ensure_worker(env.state_dir)
        wait_until(lambda: not backend.store.active_run_ids(), 240, "every run to finish")
        below = descendants(final)
    finally:
        stop_engine(env.state_dir)
    wait_until(lambda: not any(pid_alive(p) for p in below), 10, "the last worker's processes to end")

    assert len(kills) >= 5 and kills.count("transfer") >= 2 and kills.count("compute") >= 2, kills
    unfinished = {r: backend.get_run(r) for r in runs if backend.get_run(r).status.value != "SUCCEEDED"}
    assert not unfinished, {r: (i.status.value, i.error, [s.error for s in backend.store.steps(r) if s.error])
                            for r, i in unfinished.items()}  # 0 lost, 0 stuck
    assert orphans == []  # 0 orphans: everything below each killed worker died with it
    # 0 completed actions rerun: once a provider recorded an action's outcome, it never started it again
    provider_log = action_log(log_path(env.state_dir, "engine"))
    assert completed_then_started_again(provider_log) == []
    # every action finished (a kill between storing an outcome and logging it is logged on recall)
    assert len({line.split()[1] for line in provider_log if line.startswith("end ")}) == RUNS * 4
    calls = side_effects.read_text().splitlines()  # each function ran to its end; cut-short calls reran
    assert {line.split()[1] for line in calls if line.startswith("end ")} == {
        f"r{i}:{tag}" for i in range(RUNS) for tag in ("Work", "Check")}
    for i in range(RUNS):  # the data arrived whole
        for j in range(FILES):
            name = f"r{i}/f{j}.bin"
            assert (tmp_path / "edge" / name).read_bytes() == (tmp_path / "beamline" / name).read_bytes()


def completed_then_started_again(lines: list[str]) -> list[str]:
    """Keys started again after they had ended ("start KEY" / "end KEY" lines)."""
    ended: set[str] = set()
    again = []
    for line in lines:
        event, _, key = line.partition(" ")
        if event == "start" and key in ended:
            again.append(key)
        elif event == "end":
            ended.add(key)
    return again


def action_log(path: Path) -> list[str]:
    """Every transfer action's and compute task's start and finish, from the workers' log
    (the providers write these lines), as ``start KEY`` / ``end KEY``."""
    pattern = re.compile(r"(?:action|task) (\S+): \S+ (started|finished)")
    return [f"{'start' if m.group(2) == 'started' else 'end'} {m.group(1)}" for m in pattern.finditer(path.read_text())]
