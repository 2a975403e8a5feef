"""Load a flow definition and refuse anything the Globus Flows service would refuse.

The rules encode the service's published definition schema (globus/flows-ide,
``public/schemas/flow_definition_schema.json``: which fields each state type has, their JSON
types, required fields, the shapes of Catchers, Choice rules and Handlers) plus semantic checks
the schema cannot express (paths and expressions parse, every target exists, exactly one
comparison operator, no key given both plainly and as ``.$``, no retired ActionUrl, every state
reachable). Every problem becomes one line ``FILE: state NAME: reason``; all of them are
reported together in one ``FlowDefinitionError`` so an author fixes a definition in one pass.
"""

from __future__ import annotations

import json
import re
import uuid
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterator

from ptychoflow.errors import FlowDefinitionError
from ptychoflow.flowengine.choice import ALL_OPERATORS, BOOLEAN_OPERATORS, NUMERIC_OPERATORS, STRING_OPERATORS, \
    TIMESTAMP_OPERATORS, parse_timestamp, rule_operator
from ptychoflow.flowengine.expressions import ExpressionSyntaxError, parse_expression
from ptychoflow.flowengine.paths import PathSyntaxError, compile_path, reference_steps

# JSON types, as the schema names them.
_STRING, _BOOLEAN, _INTEGER, _OBJECT, _ARRAY = "a string", "true or false", "an integer", "an object", "a list"
_IS: dict[str, Callable[[Any], bool]] = {
    _STRING: lambda v: isinstance(v, str),
    _BOOLEAN: lambda v: isinstance(v, bool),
    _INTEGER: lambda v: isinstance(v, int) and not isinstance(v, bool),
    _OBJECT: lambda v: isinstance(v, dict),
    _ARRAY: lambda v: isinstance(v, list),
}
_COMMON = {"Type": _STRING, "Comment": _STRING}
_FLOW = {"Next": _STRING, "End": _BOOLEAN}
_DATA = {"Parameters": _OBJECT, "InputPath": _STRING, "ResultPath": _STRING}
_WEB_INPUT = {**_COMMON, **_FLOW, **_DATA, "Catch": _ARRAY}
# Every field each state type may have, with its JSON type ("Handler" is checked on its own).
FIELDS: dict[str, dict[str, str]] = {
    "Action": {**_COMMON, **_FLOW, **_DATA, "ActionUrl": _STRING, "ActionScope": _STRING, "Handler": "",
               "WaitTime": _INTEGER, "ExceptionOnActionFailure": _BOOLEAN, "Catch": _ARRAY, "RunAs": _STRING},
    "Pass": {**_COMMON, **_FLOW, **_DATA, "Result": _OBJECT},
    "ExpressionEval": {**_COMMON, **_FLOW, "Parameters": _OBJECT, "ResultPath": _STRING},
    "Wait": {**_COMMON, **_FLOW, "Seconds": _INTEGER, "SecondsPath": _STRING, "Timestamp": _STRING,
             "TimestampPath": _STRING},
    "Choice": {**_COMMON, "Choices": _ARRAY, "Default": _STRING},
    "Fail": {**_COMMON, "Error": _STRING, "ErrorPath": _STRING, "Cause": _STRING, "CausePath": _STRING},
    "AwaitWebInput": _WEB_INPUT,
    "CreateWebInput": _WEB_INPUT,
}
REQUIRED: dict[str, tuple[str, ...]] = {"ExpressionEval": ("Parameters", "ResultPath"), "Choice": ("Choices",)}
TERMINAL_TYPES = {"Choice", "Fail"}
# Types the service runs but the local engine cannot (they need the Globus web app).
SERVICE_ONLY_TYPES = {"AwaitWebInput", "CreateWebInput"}
_CATCHER_FIELDS = {"ErrorEquals": _ARRAY, "Next": _STRING, "ResultPath": _STRING}
_REPLACEMENT = "use https://transfer.actions.globus.org/... or https://compute.actions.globus.org/v3"
RETIRED_URLS = (
    re.compile(r"^https?://actions\.automate\.globus\.org(/|$)"),
    re.compile(r"^https?://actions\.globus\.org/transfer(/|$)"),
    re.compile(r"^https?://([a-z0-9-]+\.)*funcx\.org(/|$)"),  # funcX, now Globus Compute (api., api.dev., ...)
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


def check_runs_locally(definition: dict[str, Any], source: str = "<flow>") -> None:
    """Refuse, naming the states, a valid definition that only the Globus service can run."""
    names = [name for name, state in _states(definition) if state.get("Type") in SERVICE_ONLY_TYPES]
    if names:
        raise FlowDefinitionError(f"{source}: state(s) {', '.join(names)}: web-input states need the Globus "
                                  "Flows service (backend = \"globus\"); the local engine cannot run them")


def action_url(state: dict[str, Any]) -> str | None:
    """The URL an Action state calls: its ``ActionUrl``, or its ``Handler``'s ``Url``.

    None for a Registered API handler (the local engine has no registered APIs).
    """
    handler = state.get("Handler")
    if isinstance(handler, str):
        return handler
    if isinstance(handler, dict):
        return handler.get("Url") if handler.get("Type") == "ActionProvider" else None
    return state.get("ActionUrl")


def retired_url_states(definition: dict[str, Any]) -> list[str]:
    """Names of states whose action URL the service has retired."""
    return [name for name, state in _states(definition)
            if state.get("Type") == "Action" and _is_retired(action_url(state))]


def _is_retired(url: Any) -> bool:
    return isinstance(url, str) and any(p.match(url) for p in RETIRED_URLS)


def _states(definition: Any) -> list[tuple[str, dict[str, Any]]]:
    states = definition.get("States") if isinstance(definition, dict) else None
    if not isinstance(states, dict):
        return []
    return [(name, state) for name, state in states.items() if isinstance(state, dict)]


# --- the whole definition -------------------------------------------------------------------
def _problems(definition: Any) -> Iterator[str]:
    if not isinstance(definition, dict):
        yield "(root): a flow definition must be a JSON object"
        return
    for key in definition:
        if key not in ("StartAt", "States", "Comment"):
            yield f"(root): unknown top-level field {key!r}"
    if "Comment" in definition and not isinstance(definition["Comment"], str):
        yield "(root): Comment must be a string"
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
        yield f"(root): retired ActionUrl used by state(s) {', '.join(retired)}; {_REPLACEMENT}"
    if isinstance(start, str) and start in states:
        for name in sorted(set(states) - _reachable(start, states)):
            yield f"state {name}: unreachable from StartAt {start!r}"


# --- one state ------------------------------------------------------------------------------
def _state_problems(state: dict[str, Any], states: dict[str, Any]) -> Iterator[str]:
    kind = state.get("Type")
    if kind not in FIELDS:
        yield f"unknown state Type {kind!r} (known: {', '.join(sorted(FIELDS))})"
        return
    allowed = FIELDS[kind]
    for key, value in state.items():
        if key == "OutputPath":
            yield "OutputPath is not supported by Globus Flows (use ResultPath)"
        elif key not in allowed:
            yield f"unknown field {key!r} for a {kind} state"
        elif allowed[key] and not _IS[allowed[key]](value):
            yield f"{key} must be {allowed[key]}, got {_json(value)}"
    for key in REQUIRED.get(kind, ()):
        if key not in state:
            yield f"needs {key} (required in {kind} states)"
    yield from _transition_problems(kind, state, states)
    yield from _path_problems(state)
    yield from _parameter_problems(state.get("Parameters"), "Parameters")
    yield from _catch_problems(state.get("Catch"), states)
    yield from _KIND_CHECKS.get(kind, _no_checks)(state, states)


def _no_checks(state: dict[str, Any], states: dict[str, Any]) -> Iterator[str]:
    return iter(())


def _json(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


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
    for field in ("InputPath", "SecondsPath", "TimestampPath", "ErrorPath", "CausePath"):
        if isinstance(state.get(field), str):
            yield from _check_path(state[field], field)
    if isinstance(state.get("ResultPath"), str):
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
            if key.endswith((".$", ".=")) and key[:-2] in template:
                yield f"{where}.{key}: {key[:-2]!r} is also given as a literal; which one wins is undefined"
            if key.endswith(".$"):
                if key[:-2] + ".=" in template:
                    yield f"{where}.{key}: {key[:-2]!r} is also given as an expression ({key[:-2]}.=)"
                yield from _check_path(value, f"{where}.{key}")
            elif key.endswith(".="):
                try:
                    parse_expression(value)
                except ExpressionSyntaxError as exc:
                    yield f"{where}.{key}: {exc}"
            elif key == "__Private_Parameters":
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    yield f"{where}.{key} must be a list of parameter names"
            else:
                yield from _parameter_problems(value, f"{where}.{key}")
    elif isinstance(template, list):
        for i, item in enumerate(template):
            yield from _parameter_problems(item, f"{where}[{i}]")


def _catch_problems(catches: Any, states: dict[str, Any]) -> Iterator[str]:
    if not isinstance(catches, list):
        return  # absent, or already reported as not a list
    for i, catcher in enumerate(catches):
        where = f"Catch[{i}]"
        if not isinstance(catcher, dict):
            yield f"{where}: must be an object"
            continue
        for key, value in catcher.items():
            if key not in _CATCHER_FIELDS:
                yield f"{where}: unknown field {key!r} (a Catcher has ErrorEquals, Next, ResultPath)"
            elif not _IS[_CATCHER_FIELDS[key]](value):
                yield f"{where}.{key} must be {_CATCHER_FIELDS[key]}, got {_json(value)}"
        errors = catcher.get("ErrorEquals")
        if not isinstance(errors, list) or not errors or not all(isinstance(e, str) for e in errors):
            yield f"{where}.ErrorEquals must be a non-empty list of error names"
        yield from _target_problem(catcher.get("Next"), f"{where}.Next", states)
        if isinstance(catcher.get("ResultPath"), str):
            yield from _check_path(catcher["ResultPath"], f"{where}.ResultPath", reference=True)


# --- per type -------------------------------------------------------------------------------
def _action_checks(state: dict[str, Any], states: dict[str, Any]) -> Iterator[str]:
    if "ActionUrl" in state and "Handler" in state:
        yield "ActionUrl and Handler are mutually exclusive (Handler replaces ActionUrl)"
    elif "Handler" in state:
        yield from _handler_problems(state["Handler"])
    elif not _is_https(state.get("ActionUrl")):
        yield f"Action needs an ActionUrl that is an https:// URL, got {_json(state.get('ActionUrl'))}"
    if "Parameters" in state and "InputPath" in state:
        yield "Parameters and InputPath are mutually exclusive"
    if "Parameters" not in state and "InputPath" not in state:
        yield "Action needs Parameters or InputPath (the body sent to the action)"
    wait = state.get("WaitTime", 1)
    if _IS[_INTEGER](wait) and wait <= 0:
        yield f"WaitTime must be a positive integer of seconds, got {wait!r}"


def _is_https(url: Any) -> bool:
    return isinstance(url, str) and len(url) > len("https://") and url.startswith("https://")


def _handler_problems(handler: Any) -> Iterator[str]:
    if isinstance(handler, str):
        if not _is_https(handler):
            yield f"Handler: a handler given as a string must be an https:// URL, got {_json(handler)}"
        return
    if not isinstance(handler, dict):
        yield f"Handler must be an object or a URL string, got {_json(handler)}"
        return
    kind = handler.get("Type")
    shapes = {"ActionProvider": {"Type", "Url", "Scope"}, "RegisteredAPI": {"Type", "Id"}}
    if kind not in shapes:
        yield f"Handler.Type must be 'ActionProvider' or 'RegisteredAPI', got {_json(kind)}"
        return
    for key in sorted(set(handler) - shapes[kind]):
        yield f"Handler: unknown field {key!r} for a {kind} handler"
    if kind == "ActionProvider":
        if not _is_https(handler.get("Url")):
            yield f"Handler.Url must be an https:// URL, got {_json(handler.get('Url'))}"
        if "Scope" in handler and not isinstance(handler["Scope"], str):
            yield "Handler.Scope must be a string"
    elif not _is_uuid(handler.get("Id")):
        yield f"Handler.Id must be the UUID of a registered API, got {_json(handler.get('Id'))}"


def _is_uuid(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _pass_checks(state: dict[str, Any], states: dict[str, Any]) -> Iterator[str]:
    if "Parameters" in state and "InputPath" in state:
        yield "Parameters and InputPath are mutually exclusive"


def _wait_checks(state: dict[str, Any], states: dict[str, Any]) -> Iterator[str]:
    given = [k for k in ("Seconds", "SecondsPath", "Timestamp", "TimestampPath") if k in state]
    if len(given) != 1:
        yield "Wait needs exactly one of Seconds, SecondsPath, Timestamp, TimestampPath"
    seconds = state.get("Seconds", 0)
    if _IS[_INTEGER](seconds) and seconds < 0:
        yield f"Seconds must be a non-negative integer, got {seconds!r}"
    if isinstance(state.get("Timestamp"), str) and parse_timestamp(state["Timestamp"]) is None:
        yield f"Timestamp {state['Timestamp']!r} is not an ISO 8601 timestamp"


def _fail_checks(state: dict[str, Any], states: dict[str, Any]) -> Iterator[str]:
    for field in ("Error", "Cause"):
        if field in state and f"{field}Path" in state:
            yield f"{field} and {field}Path are mutually exclusive"


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


_OPERAND_TYPES = {
    **{op: _BOOLEAN for op in BOOLEAN_OPERATORS}, **{op: _STRING for op in STRING_OPERATORS},
    **{op: "a number" for op in NUMERIC_OPERATORS}, **{op: "an ISO 8601 timestamp" for op in TIMESTAMP_OPERATORS},
}


def _operand_ok(operator: str, value: Any) -> bool:
    if operator.endswith("Path"):
        return isinstance(value, str)
    if operator in NUMERIC_OPERATORS:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if operator in TIMESTAMP_OPERATORS:
        return parse_timestamp(value) is not None
    return _IS[_OPERAND_TYPES[operator]](value)


def _rule_problems(rule: Any, where: str, top: bool = False) -> Iterator[str]:
    if not isinstance(rule, dict):
        yield f"{where}: a rule must be an object"
        return
    if not top and "Next" in rule:
        yield f"{where}: a nested rule cannot have Next"
    combinators = [key for key in ("And", "Or", "Not") if key in rule]
    if combinators:
        key = combinators[0]
        for extra in sorted(set(rule) - {key, "Next"}):
            yield f"{where}: unknown field {extra!r} next to {key}"
        if key == "Not":
            yield from _rule_problems(rule["Not"], f"{where}.Not")
            return
        if not isinstance(rule[key], list) or not rule[key]:
            yield f"{where}.{key} must be a non-empty list of rules"
            return
        for i, sub in enumerate(rule[key]):
            yield from _rule_problems(sub, f"{where}.{key}[{i}]")
        return
    for extra in sorted(set(rule) - ALL_OPERATORS - {"Variable", "Next"}):
        yield f"{where}: unknown field {extra!r} in a rule"
    operator = rule_operator(rule)
    if operator is None:
        known = [k for k in rule if k in ALL_OPERATORS]
        yield f"{where}: needs exactly one comparison operator (got {known or 'none'}; see the Choice state docs)"
        return
    if "Variable" not in rule:
        yield f"{where}: needs a Variable"
    else:
        yield from _check_path(rule["Variable"], f"{where}.Variable")
    operand = rule[operator]
    if not _operand_ok(operator, operand):
        wanted = "a JSONPath string" if operator.endswith("Path") else _OPERAND_TYPES[operator]
        yield f"{where}.{operator} must be {wanted}, got {_json(operand)}"
    elif operator.endswith("Path"):
        yield from _check_path(operand, f"{where}.{operator}")


_KIND_CHECKS: dict[str, Callable[[dict[str, Any], dict[str, Any]], Iterator[str]]] = {
    "Action": _action_checks,
    "Pass": _pass_checks,
    "Wait": _wait_checks,
    "Fail": _fail_checks,
    "Choice": _choice_checks,
}


def successors(state: dict[str, Any]) -> list[str]:
    """Every state this one can move to (Next, Choices, Default, Catch)."""
    targets = [state.get("Next"), state.get("Default")]
    choices = state.get("Choices")
    targets += [rule.get("Next") for rule in choices if isinstance(rule, dict)] if isinstance(choices, list) else []
    catches = state.get("Catch")
    targets += [c.get("Next") for c in catches if isinstance(c, dict)] if isinstance(catches, list) else []
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
