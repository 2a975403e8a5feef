"""Measure the local flow engine: per-state overhead and transfer throughput.

    PYTHONPATH=src python benchmarks/flows.py [--pass-states 200] [--actions 50] [--files 8] [--file-mb 32]

Figures (printed, not asserted):
  - engine overhead per state (median, p99) for a chain of Pass states and for a chain of
    no-op Globus Compute actions, each including its durable SQLite commits: the time from
    one state's start to the next one's, with the run limits in place (every state's size
    checked, every expression bounded). Targets: <= 10 ms per Pass, <= 10 ms per action.
  - the baseline taken in the same run: the durable writes one action cannot do without
    (two SQLite FULL commits, the task's fsynced outcome file), and the ratio of the
    per-action overhead to it; and the limits' own cost per action (size check, bounded
    expression), timed alone
  - local Transfer throughput (sha256-verified, fsynced, atomic rename) against `cp` of the
    same files in the same run (target ratio >= 0.7), and against `cp` + `sync`, which gives
    the same durability; medians of three interleaved rounds, each after an `os.sync()`
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ptychoflow.backends.local import LocalBackend  # noqa: E402
from ptychoflow.flowengine.providers.base import EngineEnv  # noqa: E402
from ptychoflow.flowengine.worker import Engine  # noqa: E402

COMPUTE = "https://compute.actions.globus.org/v3"
TRANSFER = "https://transfer.actions.globus.org/transfer"


def _chain(states: list[tuple[str, dict]]) -> dict:
    built = {}
    for i, (name, state) in enumerate(states):
        built[name] = {**state, **({"Next": states[i + 1][0]} if i + 1 < len(states) else {"End": True})}
    return {"StartAt": states[0][0], "States": built}


def _run(env: EngineEnv, definition: dict, name: str, timeout: float = 600) -> tuple[LocalBackend, str, float]:
    path = env.state_dir.parent / f"{name}.json"
    path.write_text(json.dumps(definition))
    backend = LocalBackend(env)
    run = backend.start_run(backend.deploy_flow(path), {"n": 0})
    engine = Engine(env)
    started = time.perf_counter()
    status = engine.run_until_finished(run.run_id, timeout)
    elapsed = time.perf_counter() - started
    engine.close()
    if status != "SUCCEEDED":
        raise SystemExit(f"{name}: run ended {status}: {backend.get_run(run.run_id).error}")
    return backend, run.run_id, elapsed


def _per_state(backend: LocalBackend, run_id: str, skip: int = 0) -> list[float]:
    steps = backend.store.steps(run_id)[skip:]
    gaps = [b.started - a.started for a, b in zip(steps, steps[1:])]
    gaps.append(steps[-1].finished - steps[-1].started)
    return gaps


def _report(label: str, gaps: list[float], total: float, target_ms: float) -> None:
    ordered = sorted(gaps)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    median = statistics.median(ordered)
    verdict = "OK" if median * 1000 <= target_ms else "OVER TARGET"
    print(f"{label:<32} n={len(gaps):<4} median {median * 1000:7.2f} ms   p99 {p99 * 1000:7.2f} ms   "
          f"total {total:6.2f} s   target <= {target_ms:.0f} ms/state: {verdict}")


def bench_pass(env: EngineEnv, count: int) -> None:
    states = [(f"P{i:04d}", {"Type": "Pass", "Parameters": {"n.=": "n + 1"}}) for i in range(count)]
    backend, run_id, total = _run(env, _chain(states), "pass_chain")
    assert backend.get_run(run_id).output == {"n": count}
    _report(f"Pass chain ({count} states)", _per_state(backend, run_id), total, 10)


def bench_actions(env: EngineEnv, count: int, workdir: Path) -> None:
    source = workdir / "noop.py"
    source.write_text("def noop(**kwargs):\n    return {'i': kwargs.get('i')}\n")
    function_id = LocalBackend(env).register_function(source, "noop").function_id

    def action(i: int | None) -> dict:
        kwargs = {} if i is None else {"i.=": f"n + {i}"}  # an expression, so the expression limits run too
        return {"Type": "Action", "ActionUrl": COMPUTE, "ResultPath": "$.last",
                "Parameters": {"endpoint_id": "local-hpc", "tasks": [{"function_id": function_id, "kwargs": kwargs}]}}

    states = [("Warm", action(None))] + [(f"A{i:03d}", action(i)) for i in range(count)]
    backend, run_id, _ = _run(env, _chain(states), "action_chain")
    steps = backend.store.steps(run_id)
    gaps = _per_state(backend, run_id, skip=1)
    _report(f"no-op compute chain ({count} actions)", gaps, steps[-1].finished - steps[1].started, 10)
    floor = statistics.median(_durable_floor(env, workdir) for _ in range(count))
    limits = statistics.median(_limits_cost(backend, run_id) for _ in range(count))
    print(f"{'  baseline: its durable writes':<32} median {floor * 1000:7.2f} ms   (2 SQLite FULL commits + fsynced "
          f"outcome, same disk, same run)   overhead / baseline = {statistics.median(gaps) / floor:.2f}")
    print(f"{'  the limits alone':<32} median {limits * 1000:7.3f} ms per action (state size check + bounded expression)")


def _durable_floor(env: EngineEnv, workdir: Path) -> float:
    """Seconds for the durable writes an action needs: 'started' and 'finished' commits of the
    run store, and the task's outcome file written atomically with fsync."""
    from ptychoflow.flowengine.store import Store
    from ptychoflow.fs import atomic_write_json

    store = Store(env.state_dir)
    try:
        started = time.perf_counter()
        for _ in range(2):
            with store.transaction() as db:
                db.execute("INSERT INTO events (run_id, time, code, description) VALUES ('bench', 0, 'x', 'y')")
        atomic_write_json(workdir / "outcome.json", {"status": "SUCCESS", "output": {"i": 1}})
        return time.perf_counter() - started
    finally:
        store.close()


def _limits_cost(backend: LocalBackend, run_id: str) -> float:
    """Seconds the run limits add to one action: its state's size check and a bounded expression."""
    from ptychoflow.flowengine.expressions import evaluate
    from ptychoflow.flowengine.limits import DEFAULT_LIMITS, check_state_size

    document = backend.store.get_run(run_id).document
    started = time.perf_counter()
    check_state_size(document, DEFAULT_LIMITS, "state")
    check_state_size({"endpoint_id": "local-hpc", "tasks": [{"function_id": "f", "kwargs": {"i": 1}}]}, DEFAULT_LIMITS, "body")
    evaluate("n + 1", document, {}, DEFAULT_LIMITS)
    return time.perf_counter() - started


def bench_transfer(env: EngineEnv, files: int, size_mb: int) -> None:
    source = env.collections["beamline"] / "bench"
    source.mkdir(parents=True, exist_ok=True)
    block = os.urandom(1 << 20)
    for i in range(files):
        with open(source / f"f{i:03d}.bin", "wb") as handle:
            for _ in range(size_mb):
                handle.write(block[i:] + block[:i])
    total_mb = files * size_mb
    subprocess.run(["cat", *map(str, sorted(source.iterdir()))], stdout=subprocess.DEVNULL, check=True)  # warm cache

    def cp(target: Path, sync: bool) -> float:
        shutil.rmtree(target, ignore_errors=True)
        os.sync()  # every measurement starts with no dirty pages
        started = time.perf_counter()
        subprocess.run(["cp", "-r", str(source), str(target)], check=True)
        if sync:
            subprocess.run(["sync", "-f", str(target)], check=True)
        return time.perf_counter() - started

    def ours(name: str) -> float:
        shutil.rmtree(env.collections["hpc"] / name, ignore_errors=True)
        os.sync()
        definition = _chain([("T", {"Type": "Action", "ActionUrl": TRANSFER, "ResultPath": "$.T", "WaitTime": 3600,
                                    "Parameters": {"source_endpoint": "beamline", "destination_endpoint": "hpc",
                                                   "DATA": [{"source_path": "/bench", "destination_path": f"/{name}",
                                                             "recursive": True}]}})])
        backend, run_id, _ = _run(env, definition, name)
        step = backend.store.steps(run_id)[0]
        return step.finished - step.started

    cp_plain, cp_sync, local = [], [], []
    for attempt in range(3):  # interleaved, median of three each: the machine is shared
        cp_plain.append(cp(env.collections["hpc"] / "cp_copy", sync=False))
        local.append(ours(f"transfer_{attempt}"))
        cp_sync.append(cp(env.collections["hpc"] / "cp_sync_copy", sync=True))
    best_cp, best_sync, best_local = map(statistics.median, (cp_plain, cp_sync, local))
    rate = lambda seconds: total_mb / seconds  # noqa: E731
    print(f"{'local transfer (sha256, fsync)':<32} {total_mb} MB in {files} files: {rate(best_local):7.0f} MB/s")
    print(f"{'cp -r (page cache only)':<32} {rate(best_cp):7.0f} MB/s   ratio transfer/cp      = {best_cp / best_local:.2f} (target >= 0.7)")
    print(f"{'cp -r + sync (same durability)':<32} {rate(best_sync):7.0f} MB/s   ratio transfer/cp+sync = {best_sync / best_local:.2f}")
    print("  (the transfer fsyncs every file before its atomic rename; plain cp leaves dirty pages in RAM)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pass-states", type=int, default=200)
    parser.add_argument("--actions", type=int, default=50)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--file-mb", type=int, default=32)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="ptychoflow-bench-"))
    try:
        sites = {name: workdir / name for name in ("beamline", "hpc", "edge")}
        for directory in sites.values():
            directory.mkdir()
        env = EngineEnv(workdir / "state", sites, {"local-hpc": 1, "local-edge": 1}, "bench")
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, SQLite WAL synchronous=FULL, workdir {workdir}")
        bench_pass(env, args.pass_states)
        bench_actions(env, args.actions, workdir)
        bench_transfer(env, args.files, args.file_mb)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
