"""The expression language as the Globus docs and public flows use it, and its limits.

Every function and every method the evaluator offers has a worked example here (a test fails
when one is added without one), with the result written out by hand.
"""

from __future__ import annotations

import time
import tracemalloc

import pytest

from ptychoflow.flowengine.errors import StateError
from ptychoflow.flowengine.expressions import FUNCTIONS, METHODS, ExpressionSyntaxError, evaluate, parse_expression
from ptychoflow.flowengine.limits import EXPRESSION_LIMIT_ERROR, RunLimits

STATE = {
    "source": {"id": "src", "path": "/~/data/run7/"},
    "destination": {"path": "/~/archive"},
    "ls": {"details": {"DATA": [{"name": "a.h5", "type": "file", "size": 10},
                                {"name": "b.h5", "type": "file", "size": 0},
                                {"name": "logs", "type": "dir", "size": 4096}]}},
    "paths": ["/x/a.h5", "/~/", "/y/b.h5"],
    "nums": [3, 1, 2],
    "word": "Scan Ready",
    "tabbed": "a\tb",
    "settings": {"retries": 2},
}

# (expression, expected) — one or more per function and method.
FUNCTION_CASES = [
    ("pathsplit(paths[0])", ["/x", "a.h5"]),
    ("is_present('settings.retries')", True),
    ("getattr('settings.timeout', 60)", 60),
    ("len(nums)", 3),
    ("str(nums[0]) + 'x'", "3x"),
    ("int('42') + 1", 43),
    ("float('2.5') * 2", 5.0),
    ("bool(nums)", True),
    ("abs(-4)", 4),
    ("round(2.567, 2)", 2.57),
    ("min(nums)", 1),
    ("max(nums, default=0)", 3),
    ("sum(nums)", 6),
    ("sorted(nums)", [1, 2, 3]),
    ("list('ab')", ["a", "b"]),
    ("tuple(nums)", [3, 1, 2]),
    ("dict([['a', 1]])", {"a": 1}),
    ("any(n > 2 for n in nums)", True),
    ("all(n > 0 for n in nums)", True),
    ("range(2, 8, 3)", [2, 5]),
    ("enumerate(['a', 'b'], 1)", [[1, "a"], [2, "b"]]),
    ("zip(nums, 'abc')", [[3, "a"], [1, "b"], [2, "c"]]),
    ("reversed(nums)", [2, 1, 3]),
]
METHOD_CASES = [
    ("word.capitalize()", "Scan ready"), ("word.casefold()", "scan ready"), ("'ab'.center(6, '*')", "**ab**"),
    ("word.count('a')", 2), ("word.endswith('Ready')", True), ("tabbed.expandtabs(4)", "a   b"),
    ("word.find('R')", 5), ("'{}-{n}'.format(1, n=2)", "1-2"), ("word.index('n')", 3),
    ("'ab1'.isalnum()", True), ("'ab'.isalpha()", True), ("word.isascii()", True), ("'12'.isdecimal()", True),
    ("'12'.isdigit()", True), ("'run_7'.isidentifier()", True), ("word.islower()", False),
    ("'½'.isnumeric()", True), ("word.isprintable()", True), ("' '.isspace()", True), ("word.istitle()", True),
    ("word.isupper()", False), ("'/'.join(['a', 'b'])", "a/b"), ("'7'.ljust(3, '0')", "700"),
    ("word.lower()", "scan ready"), ("'//a'.lstrip('/')", "a"), ("'a/b/c'.partition('/')", ["a", "/", "b/c"]),
    ("word.removeprefix('Scan ')", "Ready"), ("'x.h5'.removesuffix('.h5')", "x"), ("word.replace(' ', '_')", "Scan_Ready"),
    ("'a/b/a'.rfind('a')", 4), ("'a/b/a'.rindex('/')", 3), ("'7'.rjust(3, '0')", "007"),
    ("'a/b/c'.rpartition('/')", ["a/b", "/", "c"]), ("'a/b/c'.rsplit('/', 1)", ["a/b", "c"]),
    ("source.path.rstrip('/')", "/~/data/run7"), ("'a,b'.split(',')", ["a", "b"]), ("'a\\nb'.splitlines()", ["a", "b"]),
    ("word.startswith('Scan')", True), ("'  x '.strip()", "x"), ("word.swapcase()", "sCAN rEADY"),
    ("'scan ready'.title()", "Scan Ready"), ("word.upper()", "SCAN READY"), ("'7'.zfill(3)", "007"),
    ("nums.copy()", [3, 1, 2]), ("nums.count(1)", 1), ("nums.index(2)", 2),
    ("tuple(nums).count(3)", 1), ("word.partition(' ').index('Ready')", 2),
    ("settings.copy()", {"retries": 2}), ("settings.get('x', 0)", 0), ("settings.items()", [["retries", 2]]),
    ("settings.keys()", ["retries"]), ("settings.values()", [2]),
]
# Constructs public flows use (globus-flows-examples: looping batched move, move, two-hop,
# tar-and-transfer), written afresh against STATE.
IDIOM_CASES = [
    ("[{'source_path': source.path.rstrip('/') + '/' + item.name, 'destination_path': destination.path + '/' + item.name}"
     " for item in ls.details.DATA if item.type == 'file']",
     [{"source_path": "/~/data/run7/a.h5", "destination_path": "/~/archive/a.h5"},
      {"source_path": "/~/data/run7/b.h5", "destination_path": "/~/archive/b.h5"}]),
    ("['~' in p or p == '/' for p in paths] == [False] * len(paths)", False),
    ("source.path.rpartition('/')[2] if not source.path.endswith('/') else source.path.split('/')[-2]", "run7"),
    ("[pathsplit(p.rstrip('/'))[1] + '/' if p.endswith('/') else pathsplit(p)[1] for p in paths]",
     ["a.h5", "~/", "b.h5"]),  # '/~/'.rstrip('/') is '/~', whose last element is '~'
    ("{i.name: i.size for i in ls.details.DATA if i.size}", {"a.h5": 10, "logs": 4096}),
    ("[[n, m] for n in nums if n > 1 for m in range(n) if m]", [[3, 1], [3, 2], [2, 1]]),
    ("[x * 2 for x in nums]", [6, 2, 4]),
    ("[n for n in nums if n > 1][0]", 3),
    ("{k: v for k, v in settings.items()}", {"retries": 2}),
    ("[c for c in 'ab']", ["a", "b"]),
    ("[k for k in settings]", ["retries"]),
    ("[x for x in [x for x in nums] if x != 1]", [3, 2]),  # a comprehension variable shadows the state's name
]


@pytest.mark.parametrize("expression, expected", FUNCTION_CASES + METHOD_CASES + IDIOM_CASES)
def test_worked_examples(expression: str, expected: object) -> None:
    assert evaluate(expression, STATE, {"run_id": "r"}) == expected


def test_every_function_and_method_has_a_worked_example() -> None:
    functions_used = {e.split("(")[0] for e, _ in FUNCTION_CASES}
    assert functions_used == FUNCTIONS
    methods_used = {part.split("(")[0] for e, _ in METHOD_CASES for part in e.split(".")[1:]}
    assert set().union(*METHODS.values()) <= methods_used


def test_comprehension_variables_do_not_leak_into_the_state() -> None:
    with pytest.raises(StateError, match="name 'x' is not present"):
        evaluate("[x for x in nums] + [x]", STATE)


@pytest.mark.parametrize("expression, why", [
    ("{[1]: 2}", "TypeError: unhashable"),
    ("nums[::0]", "ValueError: slice step cannot be zero"),
    ("'a' + 1", "TypeError"),
    ("int('nope')", "ValueError"),
    ("[a for a, b in nums]", "cannot unpack 3 into 2 names"),
    ("[x for x in 5]", "cannot iterate over int"),
    ("float('nan')", "not a JSON number"),
    ("{(1, 2): 3}", "an object key must be a string or a number"),
    ("(-8) ** 0.5", "complex, which is not a JSON value"),
    ("sum([[1], [2]], [])", "sum() adds numbers"),
    ("'{0.__class__}'.format(1)", "may only be a position or a name"),
    ("'%*d' % (5, 1)", "'*' widths are not supported"),
])
def test_failures_are_states_runtime_with_the_reason(expression: str, why: str) -> None:
    """No Python exception escapes: every failure is a States.Runtime naming the expression."""
    with pytest.raises(StateError) as caught:
        evaluate(expression, STATE)
    assert caught.value.name == "States.Runtime"
    assert why in caught.value.cause and expression in caught.value.cause


@pytest.mark.parametrize("expression", [
    "((10**1000)**1000)**1000", "'{:>900000000}'.format(1)", "'%900000000d' % 1", "'x' * 10**8",
    "[[0] * 1000] * 1000", "'a'.center(10**9)", "('a' * 1000).replace('', 'xyz' * 100)", "1 << 100000",
    "'\\t'.expandtabs(10**9)", "'x' * 1000 + 'y'.zfill(10**8)", "range(10**9)",
    "str([[0] * 100] * 5000)", "','.join(['abcdefghij'] * 30000)", "[[i, j] for i in range(1000) for j in range(1000)]",
])
def test_size_limits_refuse_before_building(expression: str) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(StateError) as caught:  # a CPU budget that cannot run out first (tracing is slow)
            evaluate(expression, STATE, None, RunLimits(expression_cpu_seconds=60))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.name == EXPRESSION_LIMIT_ERROR
    assert "limits.expression_max_size" in caught.value.cause or "digits" in caught.value.cause
    # refused up front, not after building gigabytes (memory, unlike time, does not depend on the machine's load)
    assert peak < 32 << 20, f"{peak / 2**20:.0f} MiB allocated before the refusal"


def test_cpu_time_limit_stops_a_runaway_comprehension() -> None:
    limits = RunLimits(expression_cpu_seconds=0.2)
    started = time.thread_time()
    with pytest.raises(StateError) as caught:
        evaluate("[a for a in range(5000) for b in range(5000) if a < 0]", {}, None, limits)
    spent = time.thread_time() - started
    assert caught.value.name == EXPRESSION_LIMIT_ERROR and "limits.expression_cpu_seconds" in caught.value.cause
    assert 0.2 <= spent < 1.0


def test_the_size_limit_is_configurable() -> None:
    small = RunLimits(expression_max_size=10)
    assert evaluate("'x' * 10", {}, None, small) == "x" * 10
    with pytest.raises(StateError, match="more than 10 characters or items"):
        evaluate("'x' * 11", {}, None, small)


@pytest.mark.parametrize("expression, why", [
    ("{1, 2}", "sets are not JSON values"),
    ("{x for x in nums}", "sets are not JSON values"),
    ("f'{word}'", "f-strings are not supported"),
    ("open('/etc/passwd')", "unknown function 'open'"),
    ("nums.append(4)", "method 'append' is not available"),
    ("lambda: 1", "lambda is not allowed"),
    ("word.__class__", "private attribute"),
    ("[*nums]", "* unpacking is not allowed"),
    ("len(**settings)", "** unpacking in a call"),
    ("nums[0](1)", "only named functions and methods can be called"),
])
def test_constructs_outside_the_language_are_refused_at_validation(expression: str, why: str) -> None:
    with pytest.raises(ExpressionSyntaxError, match=why.replace("*", r"\*").replace("(", r"\(")):
        parse_expression(expression)
