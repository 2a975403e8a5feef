"""Safe evaluator for ``.=`` expressions, built on Python's ``ast`` (never ``eval``).

The language is the Python-like subset the Globus Flows examples use:
  - names are top-level keys of the state (``input_file``), ``_context`` is the run context,
    attribute access walks objects (``result.details.files``), ``[i]``/slices index lists
  - operators ``+ - * / // % **``, comparisons (incl. ``in``), ``and or not``, ``x if c else y``
  - list/dict/tuple literals, ``true/false/null`` as JSON spellings
  - ``pathsplit(p)`` -> ``[head, tail]``, ``is_present(path)``, ``getattr(path, default)``,
    backtick JSONPath (a path between backticks, e.g. `$.a.b`), a few pure builtins and read-only ``str`` methods.
Anything else (imports, dunders, lambdas, arbitrary calls) is a States.Runtime error.
"""

from __future__ import annotations

import ast
import operator
import posixpath
from functools import lru_cache
from typing import Any, Callable

from ptychoflow.flowengine.errors import runtime_error
from ptychoflow.flowengine.paths import PathSyntaxError, get_path, has_path

_MAX_SIZE = 1_000_000  # longest string/list an expression may build
_JSONPATH_CALL = "__jsonpath__"

_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_CMPOPS: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b, ast.Is: operator.is_, ast.IsNot: operator.is_not,
}
_CONSTANT_NAMES = {"True": True, "False": False, "None": None, "true": True, "false": False, "null": None}
_STR_METHODS = frozenset({
    "lower", "upper", "strip", "lstrip", "rstrip", "split", "rsplit", "join", "replace", "startswith",
    "endswith", "format", "find", "count", "zfill", "title", "capitalize",
})
_DICT_METHODS = frozenset({"get", "keys", "values", "items"})
_BUILTINS: dict[str, Callable[..., Any]] = {
    "len": len, "str": str, "int": int, "float": float, "bool": bool, "abs": abs, "round": round,
    "min": min, "max": max, "sum": sum, "sorted": sorted, "list": list, "any": any, "all": all,
}


class ExpressionSyntaxError(ValueError):
    """The expression does not parse or uses a construct the evaluator refuses."""


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
    """Parse (cached) and vet the expression's node types once."""
    if not isinstance(text, str):
        raise ExpressionSyntaxError(f"expression must be a string, got {type(text).__name__}")
    try:
        tree = ast.parse(_rewrite_backticks(text), mode="eval")
    except SyntaxError as exc:
        raise ExpressionSyntaxError(f"cannot parse expression {text!r}: {exc.msg}") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and node.attr != "_context":
            raise ExpressionSyntaxError(f"{text!r}: private attribute {node.attr!r} is not allowed")
        if isinstance(node, (ast.Lambda, ast.NamedExpr, ast.Await, ast.Yield, ast.YieldFrom, ast.ListComp,
                             ast.SetComp, ast.DictComp, ast.GeneratorExp, ast.Starred)):
            raise ExpressionSyntaxError(f"{text!r}: {type(node).__name__} is not allowed in expressions")
    return tree


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


def evaluate(text: str, state: Any, context: dict[str, Any] | None = None) -> Any:
    """Evaluate one ``.=`` expression against the state document."""
    tree = parse_expression(text)
    scope = dict(state) if isinstance(state, dict) else {}
    scope["_context"] = context or {}
    try:
        return _plain(_Evaluator(text, scope).visit(tree.body))
    except RecursionError:
        raise runtime_error(f"expression {text!r} is nested too deeply") from None


class _Evaluator:
    def __init__(self, text: str, scope: dict[str, Any]) -> None:
        self.text = text
        self.scope = scope

    def fail(self, why: str) -> Exception:
        return runtime_error(f"expression {self.text!r}: {why}")

    def visit(self, node: ast.AST) -> Any:
        method = getattr(self, f"visit_{type(node).__name__}", None)
        if method is None:
            raise self.fail(f"{type(node).__name__} is not supported")
        return method(node)

    # --- atoms -------------------------------------------------------------------------
    def visit_Constant(self, node: ast.Constant) -> Any:
        return node.value

    def visit_Name(self, node: ast.Name) -> Any:
        if node.id in self.scope:
            return self.scope[node.id]
        if node.id in _CONSTANT_NAMES:
            return _CONSTANT_NAMES[node.id]
        raise self.fail(f"name {node.id!r} is not present in the state")

    def visit_List(self, node: ast.List) -> list[Any]:
        return [self.visit(item) for item in node.elts]

    def visit_Tuple(self, node: ast.Tuple) -> tuple[Any, ...]:
        return tuple(self.visit(item) for item in node.elts)

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
        return result

    # --- access ------------------------------------------------------------------------
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
        except (KeyError, IndexError, TypeError) as exc:
            raise self.fail(f"cannot index with {index!r}: {exc}") from None

    def visit_Slice(self, node: ast.Slice) -> slice:
        part = lambda n: None if n is None else self.visit(n)  # noqa: E731
        return slice(part(node.lower), part(node.upper), part(node.step))

    # --- operators ---------------------------------------------------------------------
    def visit_BinOp(self, node: ast.BinOp) -> Any:
        left, right = self.visit(node.left), self.visit(node.right)
        op = _BINOPS.get(type(node.op))
        if op is None:
            raise self.fail(f"operator {type(node.op).__name__} is not supported")
        if isinstance(node.op, ast.Pow) and isinstance(right, (int, float)) and abs(right) > 1000:
            raise self.fail("exponent too large")
        if isinstance(node.op, ast.Mult) and _size(left, right) > _MAX_SIZE:
            raise self.fail("result too large")
        try:
            result = op(left, right)
        except Exception as exc:  # TypeError, ZeroDivisionError...
            raise self.fail(f"{type(exc).__name__}: {exc}") from None
        if isinstance(result, (str, list)) and len(result) > _MAX_SIZE:
            raise self.fail("result too large")
        return result

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Any:
        value = self.visit(node.operand)
        if isinstance(node.op, ast.Not):
            return not value
        try:
            return {ast.USub: operator.neg, ast.UAdd: operator.pos}[type(node.op)](value)
        except (KeyError, TypeError) as exc:
            raise self.fail(f"unary {type(node.op).__name__}: {exc}") from None

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

    # --- calls -------------------------------------------------------------------------
    def visit_Call(self, node: ast.Call) -> Any:
        args = [self.visit(arg) for arg in node.args]
        kwargs = {kw.arg: self.visit(kw.value) for kw in node.keywords if kw.arg}
        if isinstance(node.func, ast.Name):
            return self._call_function(node.func.id, args, kwargs)
        if isinstance(node.func, ast.Attribute):
            target = self.visit(node.func.value)
            allowed = _STR_METHODS if isinstance(target, str) else _DICT_METHODS if isinstance(target, dict) else ()
            if node.func.attr in allowed:
                try:
                    result = getattr(target, node.func.attr)(*args, **kwargs)
                except Exception as exc:
                    raise self.fail(f"{node.func.attr}(): {exc}") from None
                return list(result) if node.func.attr in ("keys", "values", "items") else result
            raise self.fail(f"method {node.func.attr!r} is not available on {type(target).__name__}")
        raise self.fail("only named functions can be called")

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
        func = _BUILTINS.get(name)
        if func is None:
            raise self.fail(f"unknown function {name!r}")
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            raise self.fail(f"{name}(): {exc}") from None

    def _present(self, path: Any) -> bool:
        try:
            self._lookup(path)
        except Exception:
            return False
        return True

    def _lookup(self, path: Any) -> Any:
        """A JSONPath (``$.a.b``) or a dotted name path (``a.b``) into the state."""
        if not isinstance(path, str):
            raise self.fail(f"a path must be a string, got {path!r}")
        json_path = path if path.startswith("$") else "$." + path
        try:
            return get_path(self.scope, json_path)
        except PathSyntaxError as exc:
            raise self.fail(str(exc)) from None


def _plain(value: Any) -> Any:
    """JSON-shaped result: tuples become lists (the state document is JSON)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _size(left: Any, right: Any) -> int:
    for seq, count in ((left, right), (right, left)):
        if isinstance(seq, (str, list, tuple)) and isinstance(count, int):
            return len(seq) * count
    return 0


__all__ = ["evaluate", "parse_expression", "pathsplit", "ExpressionSyntaxError", "has_path"]
