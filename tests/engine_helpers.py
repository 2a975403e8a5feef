"""Helpers shared by the engine/flow tests: an in-process engine over a temp deployment."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ptychoflow.backends.local import LocalBackend
from ptychoflow.flowengine.providers.base import EngineEnv, FunctionProvider
from ptychoflow.flowengine.providers.registry import register_provider
from ptychoflow.flowengine.worker import Engine

TEST_URL = "https://test.example.org/echo"
FAIL_URL = "https://test.example.org/fail"


def make_env(tmp_path: Path, workers: int = 2) -> EngineEnv:
    sites = {name: tmp_path / name for name in ("beamline", "hpc", "edge")}
    for directory in sites.values():
        directory.mkdir(parents=True, exist_ok=True)
    return EngineEnv(tmp_path / "state", sites, {"local-hpc": workers, "local-edge": 1}, "tester")


def register_test_providers() -> None:
    """echo: details = {"echo": body}; fail: FAILED with details = {"why": body}."""
    from ptychoflow.flowengine.providers.base import ActionFailed

    def fail(body: dict[str, Any]) -> dict[str, Any]:
        raise ActionFailed({"why": body})

    register_provider(TEST_URL, lambda env: FunctionProvider(env, lambda body: {"echo": body}))
    register_provider(FAIL_URL, lambda env: FunctionProvider(env, fail))


def run_flow(tmp_path: Path, definition: dict[str, Any], body: dict[str, Any] | None = None,
             timeout: float = 20.0, env: EngineEnv | None = None, limits: Any = None,
             label: str = "") -> tuple[Any, LocalBackend]:
    """Deploy ``definition``, run it to completion in this process, return (RunInfo, backend)."""
    register_test_providers()
    env = env or make_env(tmp_path)
    flow_file = tmp_path / f"flow_{abs(hash(json.dumps(definition, sort_keys=True)))}.json"
    flow_file.write_text(json.dumps(definition))
    backend = LocalBackend(env)
    run = backend.start_run(backend.deploy_flow(flow_file), body or {}, label=label)
    engine = Engine(env)
    if limits is not None:
        engine.interpreter.limits = limits
    try:
        engine.run_until_finished(run.run_id, timeout)
    finally:
        engine.close()
    return backend.get_run(run.run_id), backend


def chain(*states: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """A linear flow from (name, state) pairs: each gets Next to the following, the last End."""
    names = [n for n, _ in states]
    built = {}
    for i, (name, state) in enumerate(states):
        state = dict(state)
        if state["Type"] not in ("Choice", "Fail") and "Next" not in state and "End" not in state:
            state.update({"Next": names[i + 1]} if i + 1 < len(names) else {"End": True})
        built[name] = state
    return {"StartAt": names[0], "States": built}


def write_function(directory: Path, name: str, body: str) -> Path:
    """A function file ``NAME.py`` defining ``NAME(**kwargs)`` with ``body`` (indented for you)."""
    import textwrap

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.py"
    path.write_text(f"def {name}(**kwargs):\n" + textwrap.indent(textwrap.dedent(body), "    "))
    return path


PROFILE_TOML = """\
backend = "local"
state_dir = "state"
[beamline]
path = "beamline"
[hpc]
path = "hpc"
endpoint_id = "local-hpc"
workers = 2
[edge]
path = "edge"
endpoint_id = "local-edge"
"""


def write_profile(directory: Path) -> Path:
    """A minimal local profile with its site directories; returns the TOML path."""
    for sub in ("beamline", "hpc", "edge", "state"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    path = directory / "ptychoflow.toml"
    path.write_text(PROFILE_TOML)
    return path


def wait_until(predicate: Any, timeout: float, what: str, poll: float = 0.02) -> Any:
    """Poll ``predicate`` until it is true and return its value; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, their children...), read from /proc: the
    processes that would be orphaned if ``pid`` died and they did not."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile
            parents.setdefault(ppid, []).append(int(entry.name))
    found, queue = [], [pid]
    while queue:
        for child in parents.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def run_bundled_flow(profile: Any, backend: LocalBackend, flow: str, body: dict[str, Any],
                     timeout: float = 60.0) -> Any:
    """Start the bundled flow ``flow`` on ``backend`` and run it to its end in this process; returns its RunInfo."""
    from ptychoflow.resources import flow_path

    run = backend.start_run(backend.deploy_flow(flow_path(flow)), body)
    engine = Engine(EngineEnv.from_profile(profile))
    try:
        engine.run_until_finished(run.run_id, timeout)
    finally:
        engine.close()
    return backend.get_run(run.run_id)
