"""Safe evaluator for ``.=`` expressions, built on Python's ``ast`` (never ``eval``).

The language is the Python-like one of the Globus Flows docs ("Expressions") and the public
example flows:
  - names are top-level keys of the state (``input_file``); ``_context`` is the run context;
    ``a.b`` walks objects; ``[i]`` and slices index lists and strings
  - operators ``+ - * / // % **``, ``& | ^ << >> ~`` on integers, comparisons (``in``, ``is``),
    ``and or not``, ``x if c else y``; list, object and tuple literals; ``true/false/null``
  - list comprehensions and generator expressions (``[i * 2 for i in x if i]``), and object
    comprehensions (``{k: v for k, v in d.items()}``)
  - the documented functions ``pathsplit(p)``, ``is_present(path)``, ``getattr(path, default)``,
    backtick JSONPath (a path between backticks, e.g. `$.a.b`)
  - pure builtins (``FUNCTIONS``) and the read-only methods of strings, lists and objects
    (``METHODS``)
Everything else (imports, dunders, lambdas, assignment, sets, f-strings) is refused when the
definition is validated. Failures at run time are ``States.Runtime``; going over the run's
expression limits (thread CPU time, size of any value built) is
``States.ExpressionLimitExceeded``. No other exception leaves ``evaluate``.
"""

from __future__ import annotations

import ast
import math
import operator
import posixpath
import re
import string
import time
from functools import lru_cache
from typing import Any, Callable, Iterable

from ptychoflow.flowengine.errors import StateError, runtime_error
from ptychoflow.flowengine.limits import DEFAULT_LIMITS, EXPRESSION_LIMIT_ERROR, MAX_INT_DIGITS, RunLimits
from ptychoflow.flowengine.paths import PathSyntaxError, get_path

_JSONPATH_CALL = "__jsonpath__"
_MAX_INT_BITS = int(MAX_INT_DIGITS * math.log2(10))
_CHECK_CLOCK_EVERY = 64  # node visits between reads of the thread CPU clock

_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
    ast.BitAnd: operator.and_, ast.BitOr: operator.or_, ast.BitXor: operator.xor,
    ast.LShift: operator.lshift, ast.RShift: operator.rshift,
}
_UNARYOPS: dict[type, Callable[[Any], Any]] = {
    ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_, ast.Invert: operator.invert,
}
_CMPOPS: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b, ast.Is: operator.is_, ast.IsNot: operator.is_not,
}
_CONSTANT_NAMES = {"True": True, "False": False, "None": None, "true": True, "false": False, "null": None}

# Every public ``str`` method except those that make bytes (encode), take translation tables
# (maketrans, translate: unbounded growth) or a mapping of fields (format_map).
_STR_METHODS = frozenset(name for name in dir(str) if not name.startswith("_")) - {
    "encode", "maketrans", "translate", "format_map",
}
_LIST_METHODS = frozenset({"count", "index", "copy"})  # the ones that do not change the list
_DICT_METHODS = frozenset({"get", "keys", "values", "items", "copy"})
METHODS: dict[type, frozenset[str]] = {str: _STR_METHODS, list: _LIST_METHODS, tuple: _LIST_METHODS - {"copy"},
                                       dict: _DICT_METHODS}
_ALL_METHODS = frozenset().union(*METHODS.values())
_DOCUMENTED = ("pathsplit", "is_present", "getattr")
FUNCTIONS = frozenset({
    *_DOCUMENTED, "len", "str", "int", "float", "bool", "abs", "round", "min", "max", "sum", "sorted",
    "list", "tuple", "dict", "any", "all", "range", "enumerate", "zip", "reversed",
})

# Node types the language has; anything else is refused at validation.
_ALLOWED_NODES: tuple[type, ...] = (
    ast.Expression, ast.Constant, ast.Name, ast.Load, ast.Store, ast.List, ast.Tuple, ast.Dict,
    ast.Attribute, ast.Subscript, ast.Slice, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.IfExp,
    ast.Call, ast.keyword, ast.ListComp, ast.GeneratorExp, ast.DictComp, ast.comprehension, ast.And, ast.Or,
    *_BINOPS, *_UNARYOPS, *_CMPOPS,
)
_REFUSED_WHY = {
    ast.Set: "sets are not JSON values; use a list", ast.SetComp: "sets are not JSON values; use a list",
    ast.JoinedStr: "f-strings are not supported; use + or 'text {}'.format(value)",
    ast.Lambda: "lambda is not allowed", ast.NamedExpr: "assignment (:=) is not allowed",
    ast.Starred: "* unpacking is not allowed",
}


class ExpressionSyntaxError(ValueError):
    """The expression does not parse or uses a construct the language does not have."""


def pathsplit(path: str) -> list[str]:
    """``/a/b/c.h5`` -> ``["/a/b", "c.h5"]`` (the Flows function; a trailing '/' is ignored).

    The Transfer root ``/~/`` is never split: ``pathsplit("/~/x")`` is ``["/~/", "x"]``.
    """
    if not isinstance(path, str):
        raise runtime_error(f"pathsplit() needs a string, got {type(path).__name__}")
    if path.startswith("/~/") and "/" not in path[3:].rstrip("/"):
        return ["/~/", path[3:].rstrip("/")]
    head, tail = posixpath.split(path.rstrip("/") or path)
    return [head, tail]


@lru_cache(maxsize=2048)
def parse_expression(text: str) -> ast.Expression:
    """Parse (cached) and vet every node once, so validation refuses what a run could not do."""
    if not isinstance(text, str):
        raise ExpressionSyntaxError(f"expression must be a string, got {type(text).__name__}")
    try:
        tree = ast.parse(_rewrite_backticks(text), mode="eval")
    except SyntaxError as exc:
        raise ExpressionSyntaxError(f"cannot parse expression {text!r}: {exc.msg}") from None
    except (RecursionError, MemoryError, ValueError):
        raise ExpressionSyntaxError(f"cannot parse expression {text[:60]!r}...: nested too deeply") from None
    for node in ast.walk(tree):
        why = _refusal(node)
        if why:
            raise ExpressionSyntaxError(f"{text!r}: {why}")
    return tree


def _refusal(node: ast.AST) -> str | None:
    """Why ``node`` is not part of the language (None when it is)."""
    if type(node) in _REFUSED_WHY:
        return _REFUSED_WHY[type(node)]
    if not isinstance(node, _ALLOWED_NODES):
        return f"{type(node).__name__} is not supported in expressions"
    if isinstance(node, ast.Attribute) and node.attr.startswith("_") and node.attr != "_context":
        return f"private attribute {node.attr!r} is not allowed"
    if isinstance(node, ast.comprehension) and node.is_async:
        return "async comprehensions are not supported"
    if isinstance(node, ast.Call):
        if isinstance(node.func, ast.Name):
            if node.func.id not in FUNCTIONS and node.func.id != _JSONPATH_CALL:
                return f"unknown function {node.func.id!r} (known: {', '.join(sorted(FUNCTIONS))})"
        elif isinstance(node.func, ast.Attribute):
            if node.func.attr not in _ALL_METHODS:
                return f"method {node.func.attr!r} is not available (string, list and object methods that " \
                       "do not modify anything are)"
        else:
            return "only named functions and methods can be called"
        if any(kw.arg is None for kw in node.keywords):
            return "** unpacking in a call is not allowed"
    return None


def _rewrite_backticks(text: str) -> str:
    """Turn `` `$.a.b` `` into ``__jsonpath__('$.a.b')``, leaving quoted strings alone."""
    if "`" not in text:
        return text
    out: list[str] = []
    quote: str | None = None
    i = 0
    while i < len(text):
        char = text[i]
        if quote:
            out.append(char)
            if char == "\\" and i + 1 < len(text):
                out.append(text[i + 1])
                i += 1
            elif char == quote:
                quote = None
        elif char in "'\"":
            quote = char
            out.append(char)
        elif char == "`":
            end = text.find("`", i + 1)
            if end < 0:
                raise ExpressionSyntaxError(f"{text!r}: unterminated backtick JSONPath")
            out.append(f"{_JSONPATH_CALL}({text[i + 1:end]!r})")
            i = end
        else:
            out.append(char)
        i += 1
    return "".join(out)


def evaluate(text: str, state: Any, context: dict[str, Any] | None = None,
             limits: RunLimits = DEFAULT_LIMITS) -> Any:
    """Evaluate one ``.=`` expression against the state document; the result is plain JSON."""
    try:
        tree = parse_expression(text)
    except ExpressionSyntaxError as exc:
        raise runtime_error(str(exc)) from None
    scope = dict(state) if isinstance(state, dict) else {}
    scope["_context"] = context or {}
    evaluator = _Evaluator(text, scope, limits)
    try:
        return evaluator.json(evaluator.visit(tree.body))
    except StateError:
        raise
    except RecursionError:
        raise runtime_error(f"expression {text!r} is nested too deeply") from None
    except MemoryError:
        raise evaluator.over_limit("ran out of memory") from None
    except Exception as exc:  # a construct misused on data (TypeError, ValueError, ...)
        raise evaluator.fail(f"{type(exc).__name__}: {exc}") from None


class _Evaluator:
    def __init__(self, text: str, scope: dict[str, Any], limits: RunLimits) -> None:
        self.text = text
        self.scope = scope
        self.frames: list[dict[str, Any]] = []  # comprehension variables, innermost last
        self.max_size = limits.expression_max_size
        self.cpu_seconds = limits.expression_cpu_seconds
        self.deadline = time.thread_time() + limits.expression_cpu_seconds
        self.visits = 0

    def fail(self, why: str) -> StateError:
        return runtime_error(f"expression {self.text!r}: {why}")

    def over_limit(self, why: str) -> StateError:
        return StateError(EXPRESSION_LIMIT_ERROR, f"expression {self.text!r}: {why}")

    def visit(self, node: ast.AST) -> Any:
        self.visits += 1
        if self.visits % _CHECK_CLOCK_EVERY == 0 and time.thread_time() > self.deadline:
            raise self.over_limit(f"used more than {self.cpu_seconds:g} s of CPU time "
                                  "(limits.expression_cpu_seconds)")
        return getattr(self, f"visit_{type(node).__name__}")(node)

    # --- size ---------------------------------------------------------------------------
    def bounded(self, value: Any) -> Any:
        """``value`` if its size is within the limit, else States.ExpressionLimitExceeded."""
        size = measure(value, self.max_size)
        if size > self.max_size:
            raise self.over_limit(f"builds a value of more than {self.max_size} characters or items "
                                  "(limits.expression_max_size)")
        return value

    def check_int_bits(self, bits: int) -> None:
        if bits > _MAX_INT_BITS:
            raise self.over_limit(f"builds an integer of more than {MAX_INT_DIGITS} digits")

    def check_width(self, width: Any, what: str) -> None:
        if isinstance(width, int) and width > self.max_size:
            raise self.over_limit(f"{what} {width} is over limits.expression_max_size ({self.max_size})")

    def json(self, value: Any) -> Any:
        """The value as the state stores it: tuples become lists, keys strings, numbers finite."""
        return _to_json(self.bounded(value), self)

    # --- atoms --------------------------------------------------------------------------
    def visit_Constant(self, node: ast.Constant) -> Any:
        return node.value

    def visit_Name(self, node: ast.Name) -> Any:
        for frame in reversed(self.frames):
            if node.id in frame:
                return frame[node.id]
        if node.id in self.scope:
            return self.scope[node.id]
        if node.id in _CONSTANT_NAMES:
            return _CONSTANT_NAMES[node.id]
        raise self.fail(f"name {node.id!r} is not present in the state")

    def visit_List(self, node: ast.List) -> list[Any]:
        return self.bounded([self.visit(item) for item in node.elts])

    def visit_Tuple(self, node: ast.Tuple) -> tuple[Any, ...]:
        return self.bounded(tuple(self.visit(item) for item in node.elts))

    def visit_Dict(self, node: ast.Dict) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        for key, value in zip(node.keys, node.values):
            if key is None:  # {**other}
                merged = self.visit(value)
                if not isinstance(merged, dict):
                    raise self.fail("** needs an object")
                result.update(merged)
            else:
                result[self.visit(key)] = self.visit(value)
        return self.bounded(result)

    # --- access -------------------------------------------------------------------------
    def visit_Attribute(self, node: ast.Attribute) -> Any:
        value = self.visit(node.value)
        if isinstance(value, dict) and node.attr in value:
            return value[node.attr]
        raise self.fail(f"no field {node.attr!r}")

    def visit_Subscript(self, node: ast.Subscript) -> Any:
        value = self.visit(node.value)
        index = self.visit(node.slice)
        try:
            return value[index]
        except Exception as exc:  # KeyError, IndexError, TypeError, ValueError (slice step 0)
            raise self.fail(f"cannot index with {index!r}: {type(exc).__name__}: {exc}") from None

    def visit_Slice(self, node: ast.Slice) -> slice:
        part = lambda n: None if n is None else self.visit(n)  # noqa: E731
        return slice(part(node.lower), part(node.upper), part(node.step))

    # --- operators ----------------------------------------------------------------------
    def visit_BinOp(self, node: ast.BinOp) -> Any:
        left, right = self.visit(node.left), self.visit(node.right)
        self._precheck_binop(node.op, left, right)
        try:
            result = _BINOPS[type(node.op)](left, right)
        except Exception as exc:  # TypeError, ZeroDivisionError, OverflowError...
            raise self.fail(f"{type(exc).__name__}: {exc}") from None
        return self.bounded(result)

    def _precheck_binop(self, op: ast.operator, left: Any, right: Any) -> None:
        """Refuse, before computing, an operation whose result would be over the limits."""
        if isinstance(op, ast.Mult):
            for seq, count in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and _is_int(count) and count > 0:
                    if measure(seq, self.max_size) * count > self.max_size:
                        self.bounded_fail()
            if _is_int(left) and _is_int(right):
                self.check_int_bits(abs(left).bit_length() + abs(right).bit_length())
        elif isinstance(op, ast.Pow) and _is_int(left) and _is_int(right) and right > 0 and abs(left) > 1:
            self.check_int_bits(abs(left).bit_length() * right)
        elif isinstance(op, ast.LShift) and _is_int(left) and _is_int(right):
            self.check_int_bits(abs(left).bit_length() + max(right, 0))
        elif isinstance(op, ast.Mod) and isinstance(left, str):
            self._check_printf(left)

    def bounded_fail(self) -> None:
        raise self.over_limit(f"builds a value of more than {self.max_size} characters or items "
                              "(limits.expression_max_size)")

    def _check_printf(self, template: str) -> None:
        for width, precision in _PRINTF_FIELD.findall(template):
            for number in (width, precision):
                if number == "*":
                    raise self.fail("'*' widths are not supported in % formatting")
                if number:
                    self.check_width(int(number), "% format width")

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Any:
        value = self.visit(node.operand)
        try:
            return _UNARYOPS[type(node.op)](value)
        except Exception as exc:
            raise self.fail(f"unary {type(node.op).__name__}: {type(exc).__name__}: {exc}") from None

    def visit_BoolOp(self, node: ast.BoolOp) -> Any:
        result: Any = None
        for value_node in node.values:
            result = self.visit(value_node)
            if isinstance(node.op, ast.And) and not result:
                return result
            if isinstance(node.op, ast.Or) and result:
                return result
        return result

    def visit_Compare(self, node: ast.Compare) -> bool:
        left = self.visit(node.left)
        for op, comparator in zip(node.ops, node.comparators):
            right = self.visit(comparator)
            try:
                if not _CMPOPS[type(op)](left, right):
                    return False
            except TypeError as exc:
                raise self.fail(str(exc)) from None
            left = right
        return True

    def visit_IfExp(self, node: ast.IfExp) -> Any:
        return self.visit(node.body) if self.visit(node.test) else self.visit(node.orelse)

    # --- comprehensions -----------------------------------------------------------------
    def visit_ListComp(self, node: ast.ListComp) -> list[Any]:
        result: list[Any] = []
        budget = [0]

        def produce() -> None:
            item = self.visit(node.elt)
            budget[0] += 1 + measure(item, self.max_size)
            if budget[0] > self.max_size:
                self.bounded_fail()
            result.append(item)

        self._comprehend(node.generators, produce)
        return result

    visit_GeneratorExp = visit_ListComp  # materialised: results are JSON lists anyway

    def visit_DictComp(self, node: ast.DictComp) -> dict[Any, Any]:
        result: dict[Any, Any] = {}

        def produce() -> None:
            result[self.visit(node.key)] = self.visit(node.value)

        self._comprehend(node.generators, produce)
        return self.bounded(result)

    def _comprehend(self, generators: list[ast.comprehension], produce: Callable[[], None]) -> None:
        """Run the ``for ... in ... if ...`` clauses, calling ``produce`` for every binding."""
        frame: dict[str, Any] = {}
        self.frames.append(frame)
        try:
            self._loop(generators, 0, frame, produce)
        finally:
            self.frames.pop()

    def _loop(self, generators: list[ast.comprehension], depth: int, frame: dict[str, Any],
              produce: Callable[[], None]) -> None:
        if depth == len(generators):
            produce()
            return
        clause = generators[depth]
        iterable = self.visit(clause.iter)
        if isinstance(iterable, dict):
            iterable = list(iterable)  # like Python: iterating an object gives its keys
        if not isinstance(iterable, (list, tuple, str)):
            raise self.fail(f"cannot iterate over {type(iterable).__name__} (a list, string or object is needed)")
        for item in iterable:
            self._bind(clause.target, item, frame)
            if all(self.visit(condition) for condition in clause.ifs):
                self._loop(generators, depth + 1, frame, produce)

    def _bind(self, target: ast.expr, value: Any, frame: dict[str, Any]) -> None:
        if isinstance(target, ast.Name):
            frame[target.id] = value
            return
        if isinstance(target, (ast.Tuple, ast.List)):
            if not isinstance(value, (list, tuple)) or len(value) != len(target.elts):
                raise self.fail(f"cannot unpack {value!r} into {len(target.elts)} names")
            for sub_target, sub_value in zip(target.elts, value):
                self._bind(sub_target, sub_value, frame)
            return
        raise self.fail("a comprehension variable must be a name or a tuple of names")

    # --- calls --------------------------------------------------------------------------
    def visit_Call(self, node: ast.Call) -> Any:
        args = [self.visit(arg) for arg in node.args]
        kwargs = {kw.arg: self.visit(kw.value) for kw in node.keywords if kw.arg}
        if isinstance(node.func, ast.Name):
            return self.bounded(self._call_function(node.func.id, args, kwargs))
        assert isinstance(node.func, ast.Attribute)  # parse_expression refuses other callees
        target = self.visit(node.func.value)
        return self.bounded(self._call_method(target, node.func.attr, args, kwargs))

    def _call_method(self, target: Any, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        allowed = next((names for kind, names in METHODS.items() if isinstance(target, kind)), frozenset())
        if name not in allowed:
            raise self.fail(f"method {name!r} is not available on {_type_name(target)}")
        if isinstance(target, str):
            self._precheck_str_method(target, name, args, kwargs)
        try:
            result = getattr(target, name)(*args, **kwargs)
        except Exception as exc:
            raise self.fail(f"{name}(): {type(exc).__name__}: {exc}") from None
        return list(result) if name in ("keys", "values", "items") else result

    def _precheck_str_method(self, text: str, name: str, args: list[Any], kwargs: dict[str, Any]) -> None:
        """Estimate the size of string methods that can grow their input; refuse before building."""
        first = args[0] if args else next(iter(kwargs.values()), None)
        if name in ("center", "ljust", "rjust", "zfill"):
            self.check_width(first, f"{name}() width")
        elif name == "expandtabs":
            tab = first if _is_int(first) else 8
            if len(text) + text.count("\t") * max(tab, 0) > self.max_size:
                self.bounded_fail()
        elif name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
            hits = text.count(args[0]) if args[0] else len(text) + 1
            if len(args) > 2 and _is_int(args[2]) and args[2] >= 0:
                hits = min(hits, args[2])
            if len(text) + hits * len(args[1]) > self.max_size:
                self.bounded_fail()
        elif name == "join" and isinstance(first, (list, tuple)):
            pieces = sum(len(p) if isinstance(p, str) else 0 for p in first)
            if pieces + len(text) * max(len(first) - 1, 0) > self.max_size:
                self.bounded_fail()
        elif name == "format":
            self._check_format(text)

    def _check_format(self, template: str) -> None:
        try:
            fields = list(string.Formatter().parse(template))
        except ValueError as exc:
            raise self.fail(f"format(): {exc}") from None
        for _literal, field, spec, _conversion in fields:
            if field is None:
                continue
            if field and not (field.isdigit() or field.isidentifier()):
                raise self.fail(f"format(): field {{{field}}} may only be a position or a name")
            if spec and "{" in spec:
                raise self.fail("format(): nested {} inside a format spec is not supported")
            for number in re.findall(r"\d+", spec or ""):
                self.check_width(int(number), "format() width")

    def _call_function(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        if name == _JSONPATH_CALL:
            return self._lookup(args[0])
        if name == "pathsplit":
            return pathsplit(*args)
        if name == "is_present":
            return self._present(args[0] if args else None)
        if name == "getattr":
            if len(args) not in (1, 2):
                raise self.fail("getattr(path, default) takes one or two arguments")
            return self._lookup(args[0]) if self._present(args[0]) else (args[1] if len(args) == 2 else None)
        if name == "range":
            return self._range(args)
        try:
            return _BUILTINS[name](*args, **kwargs)
        except StateError:
            raise
        except Exception as exc:
            raise self.fail(f"{name}(): {type(exc).__name__}: {exc}") from None

    def _range(self, args: list[Any]) -> list[int]:
        if not args or len(args) > 3 or not all(_is_int(a) for a in args):
            raise self.fail("range() takes one to three integers")
        try:
            numbers = range(*args)
            count = len(numbers)
        except (ValueError, OverflowError) as exc:
            raise self.fail(f"range(): {exc}") from None
        if count > self.max_size:
            self.bounded_fail()
        return list(numbers)

    def _present(self, path: Any) -> bool:
        try:
            self._lookup(path)
        except StateError:
            return False
        return True

    def _lookup(self, path: Any) -> Any:
        """A JSONPath (``$.a.b``) or a dotted name path (``a.b``) into the state."""
        if not isinstance(path, str):
            raise self.fail(f"a path must be a string, got {path!r}")
        json_path = path if path.startswith("$") else "$." + path
        if json_path == "$":  # the state itself; the virtual _context is not part of it
            return {k: v for k, v in self.scope.items() if k != "_context"}
        try:
            return get_path(self.scope, json_path)
        except PathSyntaxError as exc:
            raise self.fail(str(exc)) from None


_PRINTF_FIELD = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[a-zA-Z%]")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", tuple: "a list", str: "a string"}.get(type(value),
                                                                                     type(value).__name__)


def _sum(values: Iterable[Any], start: Any = 0) -> Any:
    """``sum`` of numbers only (adding lists this way is quadratic)."""
    items = list(values)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in [*items, start]):
        raise TypeError("sum() adds numbers; join strings with ''.join(...) and lists with +")
    return sum(items, start)


_BUILTINS: dict[str, Callable[..., Any]] = {
    "len": len, "str": str, "int": int, "float": float, "bool": bool, "abs": abs, "round": round,
    "min": min, "max": max, "sum": _sum, "sorted": sorted, "list": list, "tuple": list, "dict": dict,
    "any": any, "all": all, "enumerate": lambda items, start=0: list(enumerate(items, start)),
    "zip": lambda *items: list(zip(*items)), "reversed": lambda items: list(reversed(items)),
}
assert FUNCTIONS == {*_BUILTINS, *_DOCUMENTED, "range"}


def measure(value: Any, limit: int) -> int:
    """Size of ``value``: characters of strings, digits of integers, items of lists and objects
    counted through nesting. Stops counting once past ``limit`` (cost O(limit) at most)."""
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, (list, tuple)):
            total += len(item)
            if total <= limit:
                stack.extend(item)
        elif isinstance(item, dict):
            total += len(item)
            if total <= limit:
                stack.extend(item.keys())
                stack.extend(item.values())
        elif _is_int(item):
            total += 1 + abs(item).bit_length() // 4
        else:
            total += 1
        if total > limit:
            break
    return total


def _to_json(value: Any, evaluator: _Evaluator) -> Any:
    if value is None or isinstance(value, (str, bool)):
        return value
    if _is_int(value):
        evaluator.check_int_bits(abs(value).bit_length())
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise evaluator.fail(f"{value} is not a JSON number")
        return value
    if isinstance(value, (list, tuple)):
        return [_to_json(v, evaluator) for v in value]
    if isinstance(value, dict):
        return {_json_key(k, evaluator): _to_json(v, evaluator) for k, v in value.items()}
    raise evaluator.fail(f"the result contains a {type(value).__name__}, which is not a JSON value")


def _json_key(key: Any, evaluator: _Evaluator) -> str:
    """Object keys as JSON has them (``1`` -> ``"1"``, ``True`` -> ``"true"``), as the store reloads them."""
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, (bool, int, float)):
        return "null" if key is None else "true" if key is True else "false" if key is False else str(
            _to_json(key, evaluator))
    raise evaluator.fail(f"an object key must be a string or a number, not {type(key).__name__}")


__all__ = ["evaluate", "parse_expression", "pathsplit", "measure", "ExpressionSyntaxError", "FUNCTIONS", "METHODS"]
