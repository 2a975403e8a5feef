"""`.=` expressions, JSONPath get/set, and Parameters rendering."""

from __future__ import annotations

import pytest

from ptychoflow.flowengine.errors import StateError
from ptychoflow.flowengine.expressions import ExpressionSyntaxError, evaluate, parse_expression
from ptychoflow.flowengine.parameters import render
from ptychoflow.flowengine.paths import PathSyntaxError, compile_path, get_path, set_path

STATE = {"name": "scan_0001.h5", "dir": "/data/in", "n": 3, "flag": True, "nested": {"a": {"b": [10, 20]}},
         "path": "/data/in/scan_0001.h5", "items": [{"x": 1}, {"x": 2}]}
CONTEXT = {"run_id": "r-1", "flow_id": "f-1", "username": "alice"}


@pytest.mark.parametrize("expression, expected", [
    ("dir + '/' + name", "/data/in/scan_0001.h5"),
    ("n * 2 + 1", 7),
    ("n / 2", 1.5),
    ("n // 2", 1),
    ("n % 2", 1),
    ("-n", -3),
    ("n > 2 and flag", True),
    ("not flag or n == 3", True),
    ("1 < n <= 3", True),
    ("'scan' in name", True),
    ("nested.a.b[1]", 20),
    ("nested.a.b[-1]", 20),
    ("name[:4]", "scan"),
    ("[n, name, {'k': n}]", [3, "scan_0001.h5", {"k": 3}]),
    ("{'a': 1, **{'b': 2}}", {"a": 1, "b": 2}),
    ("pathsplit(path)", ["/data/in", "scan_0001.h5"]),
    ("pathsplit(path)[1]", "scan_0001.h5"),
    ("pathsplit('/a/b/')", ["/a", "b"]),
    ("pathsplit('/~/path')", ["/~/", "path"]),
    ("pathsplit('/~/a/b')", ["/~/a", "b"]),
    ("is_present('nested.a.b')", True),
    ("is_present('nested.zzz')", False),
    ("is_present('$.nested.a')", True),
    ("getattr('nested.zzz', 'fallback')", "fallback"),
    ("getattr('n', 0)", 3),
    ("`$.nested.a.b[0]` + 1", 11),
    ("`$.items[*].x`", [1, 2]),
    ("'it`s' + name[:1]", "it`ss"),
    ("_context.run_id + ':' + _context.username", "r-1:alice"),
    ("'%s-%d' % (name, n)", "scan_0001.h5-3"),
    ("'{}_{}'.format(n, name.upper())", "3_SCAN_0001.H5"),
    ("len(items) if flag else 0", 2),
    ("true and not null", True),
    ("str(n) + 'x'", "3x"),
    ("max(n, 10)", 10),
])
def test_expressions(expression: str, expected: object) -> None:
    assert evaluate(expression, STATE, CONTEXT) == expected


@pytest.mark.parametrize("expression", [
    "__import__('os')", "name.__class__", "(lambda: 1)()", "open('/etc/passwd')",
    "missing_name", "nested.nope", "n / 0", "'a' * 10000000", "2 ** 100000", "name.encode()",
])
def test_refused_or_failing_expressions_are_runtime_errors(expression: str) -> None:
    with pytest.raises((StateError, ExpressionSyntaxError)):
        evaluate(expression, STATE, CONTEXT)


def test_syntax_errors_are_caught_at_parse_time() -> None:
    with pytest.raises(ExpressionSyntaxError):
        parse_expression("n +")
    with pytest.raises(ExpressionSyntaxError):
        parse_expression("`$.a")


def test_plain_paths_may_use_names_jsonpath_ng_reserves() -> None:
    """``where`` is a keyword to jsonpath-ng, but an ordinary field name in a flow's state."""
    state = {"where": {"id": "bl", "wherenot": [1, 2]}, "a b": {"c": 3}}
    assert get_path(state, "$.where.id") == "bl"
    assert get_path(state, "$.where.wherenot[1]") == 2
    assert get_path(state, "$['a b'].c") == 3
    assert set_path(state, "$.where.path", "/~/x")["where"] == {"id": "bl", "wherenot": [1, 2], "path": "/~/x"}
    assert evaluate("where.id + '!'", state) == "bl!"


def test_get_path_semantics() -> None:
    assert get_path(STATE, "$") is STATE
    assert get_path(STATE, "$.nested.a.b[1]") == 20
    assert get_path(STATE, "$.items[*].x") == [1, 2]
    assert get_path(STATE, "$['name']") == "scan_0001.h5"
    with pytest.raises(StateError, match=r"\$\.nope not found"):
        get_path(STATE, "$.nope")
    with pytest.raises(PathSyntaxError):
        compile_path("nested.a")
    with pytest.raises(PathSyntaxError):
        compile_path("$.a[")


def test_set_path_creates_and_replaces_without_mutating() -> None:
    original = {"a": 1}
    assert set_path(original, "$", {"z": 0}) == {"z": 0}
    assert set_path(original, "$.b.c", 2) == {"a": 1, "b": {"c": 2}}
    assert set_path(original, "$.l[1]", "x") == {"a": 1, "l": [None, "x"]}
    assert original == {"a": 1}
    with pytest.raises(PathSyntaxError):
        set_path(original, "$.items[*].x", 1)


def test_render_parameters_literals_paths_and_expressions() -> None:
    template = {
        "literal": {"deep": {"keep": "$.name", "list": [1, {"n.$": "$.n"}]}},
        "name.$": "$.name",
        "upper.=": "name.upper()",
        "ctx.$": "$._context.flow_id",
        "array": [{"p.$": "$.path"}, "$.not_a_path"],
    }
    assert render(template, STATE, CONTEXT) == {
        "literal": {"deep": {"keep": "$.name", "list": [1, {"n": 3}]}},
        "name": "scan_0001.h5",
        "upper": "SCAN_0001.H5",
        "ctx": "f-1",
        "array": [{"p": "/data/in/scan_0001.h5"}, "$.not_a_path"],
    }


def test_render_missing_path_names_the_key() -> None:
    with pytest.raises(StateError, match=r"Parameters\.inner\.x\.\$: path \$\.absent not found"):
        render({"inner": {"x.$": "$.absent"}}, STATE, CONTEXT)
