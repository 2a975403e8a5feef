"""Load a flow definition and reject anything the Globus Flows service would reject.

Every problem becomes one line ``FILE: state NAME: reason`` and all of them are reported
together in one ``FlowDefinitionError`` so an author fixes a definition in one pass.
"""

from __future__ import annotations

import json
import re
from collections import deque
from pathlib import Path
from typing import Any, Iterator

from ptychoflow.flowengine.choice import ALL_OPERATORS, parse_timestamp, rule_operator
from ptychoflow.flowengine.expressions import ExpressionSyntaxError, parse_expression
from ptychoflow.flowengine.paths import PathSyntaxError, compile_path, reference_steps
from ptychoflow.errors import FlowDefinitionError

_COMMON = {"Type", "Comment"}
_FLOW = {"Next", "End"}
FIELDS: dict[str, set[str]] = {
    "Action": _COMMON | _FLOW | {"ActionUrl", "ActionScope", "Parameters", "InputPath", "ResultPath", "WaitTime",
                                 "ExceptionOnActionFailure", "RunAs", "Catch"},
    "Pass": _COMMON | _FLOW | {"Parameters", "InputPath", "ResultPath", "Result"},
    "ExpressionEval": _COMMON | _FLOW | {"Parameters", "ResultPath"},
    "Wait": _COMMON | _FLOW | {"Seconds", "SecondsPath", "Timestamp", "TimestampPath"},
    "Choice": _COMMON | {"Choices", "Default"},
    "Fail": _COMMON | {"Error", "Cause"},
}
TERMINAL_TYPES = {"Choice", "Fail"}
RETIRED_URLS = (
    re.compile(r"^https?://actions\.automate\.globus\.org(/|$)"),
    re.compile(r"^https?://actions\.globus\.org/transfer(/|$)"),
)


def load_definition(path: str | Path) -> dict[str, Any]:
    """Read and validate ``path``; returns the definition dict."""
    path = Path(path)
    try:
        definition = json.loads(path.read_text())
    except FileNotFoundError:
        raise FlowDefinitionError(f"{path}: no such flow definition") from None
    except json.JSONDecodeError as exc:
        raise FlowDefinitionError(f"{path}: (json): line {exc.lineno}: {exc.msg}") from None
    validate_definition(definition, source=str(path))
    return definition


def schema_path_for(definition_path: Path) -> Path:
    """``flows/NAME.json`` -> ``flows/NAME.schema.json``."""
    return definition_path.with_name(definition_path.stem + ".schema.json")


def load_schema(definition_path: Path) -> dict[str, Any]:
    """The flow's input schema, or an accept-anything object schema when it has none."""
    path = schema_path_for(Path(definition_path))
    if not path.exists():
        return {"type": "object"}
    try:
        schema = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise FlowDefinitionError(f"{path}: (json): line {exc.lineno}: {exc.msg}") from None
    import jsonschema

    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise FlowDefinitionError(f"{path}: {'/'.join(map(str, exc.path)) or '(root)'}: {exc.message}") from None
    return schema


def validate_definition(definition: Any, source: str = "<flow>") -> None:
    """Raise ``FlowDefinitionError`` listing every problem, one line each."""
    problems = list(_problems(definition))
    if problems:
        raise FlowDefinitionError("\n".join(f"{source}: {p}" for p in problems))


def retired_url_states(definition: dict[str, Any]) -> list[str]:
    """Names of states whose ActionUrl the service has retired."""
    return [name for name, state in _states(definition) if _is_retired(state.get("ActionUrl"))]


def _is_retired(url: Any) -> bool:
    return isinstance(url, str) and any(p.match(url) for p in RETIRED_URLS)


def _states(definition: Any) -> list[tuple[str, dict[str, Any]]]:
    states = definition.get("States") if isinstance(definition, dict) else None
    if not isinstance(states, dict):
        return []
    return [(name, state) for name, state in states.items() if isinstance(state, dict)]


def _problems(definition: Any) -> Iterator[str]:
    if not isinstance(definition, dict):
        yield "(root): a flow definition must be a JSON object"
        return
    for key in definition:
        if key not in ("StartAt", "States", "Comment"):
            yield f"(root): unknown top-level field {key!r}"
    states = definition.get("States")
    if not isinstance(states, dict) or not states:
        yield "(root): States is missing or empty"
        return
    start = definition.get("StartAt")
    if not isinstance(start, str):
        yield "(root): StartAt is missing"
    elif start not in states:
        yield f"(root): StartAt names {start!r}, which is not a state"
    for name, state in states.items():
        if not isinstance(state, dict):
            yield f"state {name}: must be an object"
            continue
        for reason in _state_problems(state, states):
            yield f"state {name}: {reason}"
    retired = retired_url_states(definition)
    if retired:
        yield f"(root): retired ActionUrl used by state(s) {', '.join(retired)}; use https://transfer.actions.globus.org/... or https://compute.actions.globus.org/v3"
    if isinstance(start, str) and start in states:
        for name in sorted(set(states) - _reachable(start, states)):
            yield f"state {name}: unreachable from StartAt {start!r}"


def _state_problems(state: dict[str, Any], states: dict[str, Any]) -> Iterator[str]:
    kind = state.get("Type")
    if kind not in FIELDS:
        yield f"unknown state Type {kind!r} (known: {', '.join(sorted(FIELDS))})"
        return
    for key in state:
        if key == "OutputPath":
            yield "OutputPath is not supported by Globus Flows (use ResultPath)"
        elif key not in FIELDS[kind]:
            yield f"unknown field {key!r} for a {kind} state"
    yield from _transition_problems(kind, state, states)
    yield from _path_problems(state)
    yield from _parameter_problems(state.get("Parameters"), "Parameters")
    yield from _KIND_CHECKS.get(kind, lambda s, ss: iter(()))(state, states)


def _transition_problems(kind: str, state: dict[str, Any], states: dict[str, Any]) -> Iterator[str]:
    if kind in TERMINAL_TYPES:
        return
    has_next, has_end = "Next" in state, "End" in state
    if has_next and has_end:
        yield "has both Next and End"
    elif not has_next and not has_end:
        yield "needs Next or End"
    if has_end and state["End"] is not True:
        yield "End must be true"
    if has_next:
        yield from _target_problem(state["Next"], "Next", states)


def _target_problem(target: Any, field: str, states: dict[str, Any]) -> Iterator[str]:
    if not isinstance(target, str) or target not in states:
        yield f"{field} names {target!r}, which is not a state"


def _path_problems(state: dict[str, Any]) -> Iterator[str]:
    for field in ("InputPath", "SecondsPath", "TimestampPath"):
        if field in state:
            yield from _check_path(state[field], field)
    if "ResultPath" in state:
        yield from _check_path(state["ResultPath"], "ResultPath", reference=True)


def _check_path(value: Any, field: str, reference: bool = False) -> Iterator[str]:
    try:
        steps = reference_steps(value) if reference else compile_path(value)
    except PathSyntaxError as exc:
        yield f"{field}: {exc}"
        return
    if reference and steps and steps[0] == "_context":
        yield f"{field}: $._context is read-only"


def _parameter_problems(template: Any, where: str) -> Iterator[str]:
    if isinstance(template, dict):
        for key, value in template.items():
            if key.endswith(".$"):
                yield from _check_path(value, f"{where}.{key}")
            elif key.endswith(".="):
                try:
                    parse_expression(value)
                except ExpressionSyntaxError as exc:
                    yield f"{where}.{key}: {exc}"
            else:
                yield from _parameter_problems(value, f"{where}.{key}")
    elif isinstance(template, list):
        for i, item in enumerate(template):
            yield from _parameter_problems(item, f"{where}[{i}]")


def _action_checks(state: dict[str, Any], states: dict[str, Any]) -> Iterator[str]:
    url = state.get("ActionUrl")
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        yield "Action needs an ActionUrl (an https:// URL)"
    if "Parameters" in state and "InputPath" in state:
        yield "Parameters and InputPath are mutually exclusive"
    if "Parameters" not in state and "InputPath" not in state:
        yield "Action needs Parameters or InputPath (the body sent to the action)"
    wait = state.get("WaitTime", 1)
    if not isinstance(wait, int) or isinstance(wait, bool) or wait <= 0:
        yield f"WaitTime must be a positive integer of seconds, got {wait!r}"
    if not isinstance(state.get("ExceptionOnActionFailure", True), bool):
        yield "ExceptionOnActionFailure must be true or false"
    catches = state.get("Catch", [])
    if not isinstance(catches, list):
        yield "Catch must be a list"
        return
    for i, catcher in enumerate(catches):
        where = f"Catch[{i}]"
        if not isinstance(catcher, dict):
            yield f"{where}: must be an object"
            continue
        errors = catcher.get("ErrorEquals")
        if not isinstance(errors, list) or not errors or not all(isinstance(e, str) for e in errors):
            yield f"{where}.ErrorEquals must be a non-empty list of error names"
        yield from _target_problem(catcher.get("Next"), f"{where}.Next", states)
        if "ResultPath" in catcher:
            yield from _check_path(catcher["ResultPath"], f"{where}.ResultPath", reference=True)
        for key in catcher:
            if key not in ("ErrorEquals", "Next", "ResultPath", "Comment"):
                yield f"{where}: unknown field {key!r}"


def _pass_checks(state: dict[str, Any], states: dict[str, Any]) -> Iterator[str]:
    if "Parameters" in state and "InputPath" in state:
        yield "Parameters and InputPath are mutually exclusive"


def _expression_eval_checks(state: dict[str, Any], states: dict[str, Any]) -> Iterator[str]:
    if not isinstance(state.get("Parameters"), dict):
        yield "ExpressionEval needs a Parameters object"


def _wait_checks(state: dict[str, Any], states: dict[str, Any]) -> Iterator[str]:
    given = [k for k in ("Seconds", "SecondsPath", "Timestamp", "TimestampPath") if k in state]
    if len(given) != 1:
        yield "Wait needs exactly one of Seconds, SecondsPath, Timestamp, TimestampPath"
    seconds = state.get("Seconds", 0)
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
        yield f"Seconds must be a non-negative number, got {seconds!r}"
    if "Timestamp" in state:
        if parse_timestamp(state["Timestamp"]) is None:
            yield f"Timestamp {state['Timestamp']!r} is not an ISO 8601 timestamp"


def _choice_checks(state: dict[str, Any], states: dict[str, Any]) -> Iterator[str]:
    choices = state.get("Choices")
    if not isinstance(choices, list) or not choices:
        yield "Choice needs a non-empty Choices list"
        return
    for i, rule in enumerate(choices):
        where = f"Choices[{i}]"
        if not isinstance(rule, dict):
            yield f"{where}: must be an object"
            continue
        yield from _target_problem(rule.get("Next"), f"{where}.Next", states)
        yield from _rule_problems(rule, where, top=True)
    if "Default" in state:
        yield from _target_problem(state["Default"], "Default", states)


def _rule_problems(rule: Any, where: str, top: bool = False) -> Iterator[str]:
    if not isinstance(rule, dict):
        yield f"{where}: a rule must be an object"
        return
    if not top and "Next" in rule:
        yield f"{where}: a nested rule cannot have Next"
    if "And" in rule or "Or" in rule:
        key = "And" if "And" in rule else "Or"
        if not isinstance(rule[key], list) or not rule[key]:
            yield f"{where}.{key} must be a non-empty list of rules"
            return
        for i, sub in enumerate(rule[key]):
            yield from _rule_problems(sub, f"{where}.{key}[{i}]")
        return
    if "Not" in rule:
        yield from _rule_problems(rule["Not"], f"{where}.Not")
        return
    operator = rule_operator(rule)
    if operator is None:
        known = [k for k in rule if k not in ("Variable", "Next", "Comment")]
        yield f"{where}: needs exactly one comparison operator (got {known or 'none'}; see the Choice state docs)"
        return
    if "Variable" not in rule:
        yield f"{where}: needs a Variable"
    else:
        yield from _check_path(rule["Variable"], f"{where}.Variable")
    if operator.endswith("Path") and operator in ALL_OPERATORS:
        yield from _check_path(rule[operator], f"{where}.{operator}")


_KIND_CHECKS = {
    "Action": _action_checks,
    "Pass": _pass_checks,
    "ExpressionEval": _expression_eval_checks,
    "Wait": _wait_checks,
    "Choice": _choice_checks,
}


def successors(state: dict[str, Any]) -> list[str]:
    """Every state this one can move to (Next, Choices, Default, Catch)."""
    targets = [state.get("Next"), state.get("Default")]
    targets += [rule.get("Next") for rule in state.get("Choices", []) if isinstance(rule, dict)]
    targets += [c.get("Next") for c in state.get("Catch", []) if isinstance(c, dict)]
    return [t for t in targets if isinstance(t, str)]


def _reachable(start: str, states: dict[str, Any]) -> set[str]:
    seen, queue = {start}, deque([start])
    while queue:
        state = states.get(queue.popleft())
        if not isinstance(state, dict):
            continue
        for target in successors(state):
            if target in states and target not in seen:
                seen.add(target)
                queue.append(target)
    return seen
