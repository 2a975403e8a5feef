"""Conformance: flows in the style of public Globus flows, with routes and outputs worked by hand.

``tests/flows_conformance/NAME.json`` is a definition; ``NAME.cases.json`` lists its cases:
the run input, the scripted results of each action provider (registered through the public
``register_provider`` API at the real ActionUrls), and what the Globus docs say must happen:
the states entered in order, the request bodies sent, and the final status with the output or
error. See ``tests/flows_conformance/README.md`` for the matchers used in expected values.
"""

from __future__ import annotations

import json
from collections import deque
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from engine_helpers import make_env
from ptychoflow.backends.local import LocalBackend
from ptychoflow.flowengine.definition import load_definition, retired_url_states, successors, validate_definition
from ptychoflow.flowengine.providers import ActionFailed, ActionUnableToRun, ThreadedProvider, provider_registered
from ptychoflow.flowengine.worker import Engine
from ptychoflow.errors import FlowDefinitionError

HERE = Path(__file__).parent / "flows_conformance"
FLOWS = sorted(p for p in HERE.glob("*.json") if not p.name.endswith(".cases.json"))
URLS = {
    **{name: f"https://transfer.actions.globus.org/{name}" for name in ("transfer", "delete", "ls", "stat", "mkdir")},
    "compute": "https://compute.actions.globus.org/v3",
}
CASES = [(flow, case) for flow in FLOWS for case in json.loads(flow.with_suffix(".cases.json").read_text())["cases"]]


class ScriptedProvider(ThreadedProvider):
    """An action provider that answers from a script and records every request body."""

    threads = 1

    def __init__(self, env: Any, name: str, script: deque, calls: list) -> None:
        super().__init__(env)
        self.name, self.script, self.calls = name, script, calls

    def check(self, body: dict[str, Any]) -> None:
        self.calls.append([self.name, body])
        if not self.script:
            raise AssertionError(f"{self.name}: called more often than the case scripts")
        if "unable" in self.script[0]:
            raise ActionUnableToRun(self.script.popleft()["unable"])

    def execute(self, action_id: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.script.popleft()
        if "failed" in response:
            raise ActionFailed(response["failed"])
        return response["details"]


@pytest.fixture
def scripted_providers():
    """Register scripted providers for a case; afterwards the built-in ones are back."""
    with ExitStack() as registrations:

        def install(actions: dict[str, list[dict]], calls: list) -> dict[str, deque]:
            scripts = {name: deque(responses) for name, responses in actions.items()}
            for name in scripts:
                factory = lambda env, n=name: ScriptedProvider(env, n, scripts[n], calls)  # noqa: E731
                registrations.enter_context(provider_registered(URLS[name], factory))
            return scripts

        yield install


def test_there_are_at_least_ten_flows_and_they_validate() -> None:
    assert len(FLOWS) >= 10
    for flow in FLOWS:
        load_definition(flow)


@pytest.mark.parametrize("flow, case", CASES, ids=[f"{f.stem}: {c['name']}" for f, c in CASES])
def test_route_requests_and_output(tmp_path: Path, scripted_providers, flow: Path, case: dict) -> None:
    calls: list = []
    scripts = scripted_providers(case.get("actions", {}), calls)
    env = make_env(tmp_path)
    backend = LocalBackend(env)
    run = backend.start_run(backend.deploy_flow(flow), case["input"])
    engine = Engine(env)
    try:
        engine.run_until_finished(run.run_id, 20)
    finally:
        engine.close()
    info = backend.get_run(run.run_id)
    assert [s.name for s in info.timeline] == case["route"]
    assert_matches(case.get("calls", []), calls, run.run_id, "calls")
    assert {n: list(s) for n, s in scripts.items() if s} == {}, "scripted results left unused"
    assert info.status.value == case["status"]
    if "output" in case:
        assert_matches(case["output"], info.output, run.run_id, "output")
    if "error" in case:
        assert info.error == case["error"].replace("<run_id>", run.run_id)
    if "error_starts" in case:
        assert info.error.startswith(case["error_starts"]), info.error


@pytest.mark.parametrize("flow", FLOWS, ids=[f.stem for f in FLOWS])
def test_the_cases_take_every_branch(flow: Path) -> None:
    """Every state is entered and every Choice/Catch target is taken by some case."""
    definition = json.loads(flow.read_text())
    routes = [c["route"] for f, c in CASES if f == flow]
    entered = {name for route in routes for name in route}
    assert set(definition["States"]) == entered
    taken = {(a, b) for route in routes for a, b in zip(route, route[1:])}
    for name, state in definition["States"].items():
        for target in successors(state):
            assert (name, target) in taken, f"no case goes {name} -> {target}"


RETIRED = [
    ("funcX automate (production)", "https://api.funcx.org/automate"),
    ("funcX automate (dev)", "https://api.dev.funcx.org/automate"),
    ("Automate transfer", "https://actions.automate.globus.org/transfer/transfer"),
    ("old Transfer AP", "https://actions.globus.org/transfer/transfer"),
]


@pytest.mark.parametrize("what, url", RETIRED, ids=[r[0] for r in RETIRED])
def test_retired_urls_in_a_conformance_flow_are_refused_naming_every_state(what: str, url: str) -> None:
    """The conformance flows with their Compute or Transfer URLs swapped for retired ones."""
    definition = json.loads((HERE / "catch_fallback.json").read_text())
    for state in definition["States"].values():
        if state.get("ActionUrl") == URLS["compute"]:
            state["ActionUrl"] = url
    with pytest.raises(FlowDefinitionError, match="retired ActionUrl used by state"):
        validate_definition(definition, source="catch_fallback.json")
    assert retired_url_states(definition) == ["ReconstructGPU", "ReconstructCPU"]


# --- matching expected values ----------------------------------------------------------------
_STATUS_KEYS = {"action_id", "status", "display_status", "details", "creator_id", "label", "manage_by", "monitor_by",
                "start_time", "completion_time", "release_after"}


def assert_matches(expected: Any, actual: Any, run_id: str, where: str) -> None:
    problems = list(_mismatches(expected, actual, run_id, where))
    assert not problems, "\n".join(problems)


def _mismatches(expected: Any, actual: Any, run_id: str, where: str):
    if isinstance(expected, str):
        if expected in ("<time>", "<id>"):
            if not (isinstance(actual, str) and actual):
                yield f"{where}: expected a non-empty string, got {actual!r}"
        elif expected.replace("<run_id>", run_id) != actual:
            yield f"{where}: expected {expected.replace('<run_id>', run_id)!r}, got {actual!r}"
        return
    if isinstance(expected, dict) and "<action>" in expected:
        if not isinstance(actual, dict) or set(actual) != _STATUS_KEYS:
            yield f"{where}: expected an action status document, got {actual!r}"
            return
        for key in ("status", "display_status"):
            if actual[key] != expected["<action>"]:
                yield f"{where}.{key}: expected {expected['<action>']!r}, got {actual[key]!r}"
        yield from _mismatches(expected["details"], actual["details"], run_id, f"{where}.details")
        return
    if isinstance(expected, dict) and set(expected) == {"<json>"}:
        try:
            parsed = json.loads(actual)
        except (TypeError, ValueError):
            yield f"{where}: expected a JSON string, got {actual!r}"
            return
        yield from _mismatches(expected["<json>"], parsed, run_id, f"{where}(json)")
        return
    if isinstance(expected, dict):
        if not isinstance(actual, dict) or set(expected) != set(actual):
            yield f"{where}: expected keys {sorted(expected)}, got {actual!r}"
            return
        for key in expected:
            yield from _mismatches(expected[key], actual[key], run_id, f"{where}.{key}")
        return
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(expected) != len(actual):
            yield f"{where}: expected {len(expected)} items, got {actual!r}"
            return
        for i, (e, a) in enumerate(zip(expected, actual)):
            yield from _mismatches(e, a, run_id, f"{where}[{i}]")
        return
    if expected != actual or type(expected) is not type(actual):
        yield f"{where}: expected {expected!r}, got {actual!r}"
