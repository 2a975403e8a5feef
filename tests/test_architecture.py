"""The shape of the code, checked from its syntax trees: no import cycles, and each low-level
idea (atomic write, hashing, locking, JSON state, SQLite transactions) coded in one place.

Both checks read the source with ``ast``; nothing is imported, so they are fast and see every
import, including those deferred into function bodies.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE_ROOTS = (REPO / "src", REPO / "edge")  # the import roots (pytest's pythonpath too)
SOURCE_DIRS = (REPO / "src", REPO / "edge", REPO / "functions")


# --- the import graph -------------------------------------------------------------------------
@dataclass(frozen=True)
class Import:
    target: str  # one of our modules
    path: Path
    line: int


def our_modules(roots: tuple[Path, ...] = PACKAGE_ROOTS) -> dict[str, Path]:
    """Dotted module name -> file, for every module of every package under `roots`."""
    modules: dict[str, Path] = {}
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if not (root / parts[0] / "__init__.py").exists():
                continue  # a loose script, not part of a package
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of the nodes under ``if TYPE_CHECKING:``: never executed, so never an import."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    return skipped


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> Iterator[Import]:
    """Every import of one of `modules` in `path`, at any depth (module level, functions,
    ``try`` blocks), plus ``importlib.import_module("literal")``. An import names the module
    it executes: ``from a.b import c`` is ``a.b.c`` when that is a module, else ``a.b``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    skipped = _type_checking_only(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def ours(dotted: str) -> str | None:
        while dotted and dotted not in modules:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        targets: list[str | None] = []
        if isinstance(node, ast.Import):
            targets = [ours(alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            targets = [ours(f"{source}.{alias.name}") if f"{source}.{alias.name}" in modules else ours(source)
                       for alias in node.names]
        elif (isinstance(node, ast.Call) and ast.unparse(node.func) in ("importlib.import_module", "import_module")
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            targets = [ours(node.args[0].value)]
        for target in targets:
            if target and target != name:
                yield Import(target, path, node.lineno)


def import_graph(modules: dict[str, Path]) -> dict[str, dict[str, Import]]:
    graph: dict[str, dict[str, Import]] = {}
    for name, path in modules.items():
        graph[name] = {}
        for found in imports_of(name, path, modules):
            graph[name].setdefault(found.target, found)
    return graph


def find_cycle(graph: dict[str, dict[str, Import]]) -> list[Import] | None:
    """One import cycle as the chain of imports that closes it, or None (iterative DFS)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    for start in sorted(graph):
        if start in state:
            continue
        path: list[tuple[str, Iterator[Import]]] = [(start, iter(graph[start].values()))]
        via: list[Import] = []
        state[start] = 1
        while path:
            node, edges = path[-1]
            step = next(edges, None)
            if step is None:
                state[node] = 2
                path.pop()
                if via:
                    via.pop()
                continue
            if state.get(step.target) == 1:
                names = [n for n, _ in path]
                return via[names.index(step.target):] + [step]
            if step.target not in state:
                state[step.target] = 1
                via.append(step)
                path.append((step.target, iter(graph[step.target].values())))
    return None


def describe(cycle: list[Import], modules: dict[str, Path]) -> str:
    """One line per link: ``a imports b  (a/file.py:LINE)``."""
    by_path = {path: name for name, path in modules.items()}
    lines = []
    for link in cycle:
        importer = by_path[link.path]
        depth = len(importer.split(".")) + (link.path.name == "__init__.py")
        shown = "/".join(link.path.parts[-depth:])
        lines.append(f"  {importer} imports {link.target}  ({shown}:{link.line})")
    return "\n".join(lines)


def test_no_import_cycle_among_our_modules() -> None:
    """No cycle, deferred or not. ``if TYPE_CHECKING:`` imports never run and do not count;
    a package's ``__init__`` counts only where a module imports the package itself."""
    modules = our_modules()
    assert {"ptychoflow.fs", "ptychoflow.flowengine.providers.registry", "ptychoflow_edge.service"} <= set(modules)
    cycle = find_cycle(import_graph(modules))
    assert cycle is None, "import cycle:\n" + describe(cycle, modules)


def test_the_cycle_finder_sees_deferred_imports(tmp_path: Path) -> None:
    """The check above can fail: a cycle closed by an import inside a function is found, a
    type-only one is not, and the report names every link."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.sub import b\n")
    (package / "sub" / "b.py").write_text("from . import c\n")
    (package / "sub" / "c.py").write_text("def later():\n    from pkg import a\n")
    (package / "d.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import e\n")
    (package / "e.py").write_text("import importlib\nimport pkg.d\n")
    modules = our_modules((tmp_path,))
    graph = import_graph(modules)
    assert set(graph["pkg.e"]) == {"pkg.d"} and graph["pkg.d"] == {}
    cycle = find_cycle(graph)
    assert cycle is not None
    assert sorted(i.target for i in cycle) == ["pkg.a", "pkg.sub.b", "pkg.sub.c"]
    report = describe(cycle, modules)
    assert "pkg.sub.c imports pkg.a  (pkg/sub/c.py:2)" in report
    (package / "sub" / "c.py").write_text("def later():\n    import importlib\n    importlib.import_module('pkg.a')\n")
    assert find_cycle(import_graph(our_modules((tmp_path,)))) is not None
    (package / "sub" / "c.py").write_text("")
    assert find_cycle(import_graph(our_modules((tmp_path,)))) is None


# --- one place for each low-level idea ----------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    idea: str
    home: tuple[str, ...]  # the only files (relative to the repository) where it may be coded
    matches: Callable[[ast.AST], bool]


def _call_name(node: ast.AST) -> str:
    return ast.unparse(node.func) if isinstance(node, ast.Call) else ""


def _imports_module(node: ast.AST, module: str) -> bool:
    if isinstance(node, ast.Import):
        return any(alias.name.split(".")[0] == module for alias in node.names)
    return isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == module and not node.level


def _renames(node: ast.AST) -> bool:
    """``os.replace/rename``, ``shutil.move``, or ``path.replace(x)`` / ``path.rename(x)``
    (one argument: ``str.replace`` needs two, ``dataclasses.replace`` takes keywords)."""
    if _call_name(node) in ("os.replace", "os.rename", "os.renames", "shutil.move"):
        return True
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("replace", "rename") and len(node.args) == 1 and not node.keywords)


def _writes_json(node: ast.AST) -> bool:
    """``json.dump(doc, handle)`` or ``something.write_text(json.dumps(doc))``."""
    if _call_name(node) == "json.dump":
        return True
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "write_text"
            and any(_call_name(arg) == "json.dumps" for arg in node.args))


def _sqlite_transaction_or_connection(node: ast.AST) -> bool:
    """``sqlite3.connect(...)`` or ``db.execute("BEGIN ...")``."""
    if _call_name(node) == "sqlite3.connect":
        return True
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("execute", "executescript") and bool(node.args)
            and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
            and node.args[0].value.lstrip().upper().startswith("BEGIN"))


FS = "src/ptychoflow/fs.py"
RULES = (
    Rule("atomic write (rename into place)", (FS,), _renames),
    Rule("fsync", (FS,), lambda n: _call_name(n) in ("os.fsync", "os.fdatasync")),
    Rule("sha256 (hashlib): use fs.sha256_file / fs.sha256_text", (FS,), lambda n: _imports_module(n, "hashlib")),
    Rule("file lock (fcntl): use fs.file_lock / fs.SingleInstance", (FS,), lambda n: _imports_module(n, "fcntl")),
    Rule("JSON state written by hand: use fs.JsonStateFile / fs.atomic_write_json", (FS,), _writes_json),
    Rule("SQLite connection or transaction: use ptychoflow.sqlite", ("src/ptychoflow/sqlite.py",),
         _sqlite_transaction_or_connection),
)

# Justified exceptions, each with its reason: (file, idea) -> why.
ALLOWED: dict[tuple[str, str], str] = {}


def violations() -> list[str]:
    found = []
    for directory in SOURCE_DIRS:
        for path in sorted(directory.rglob("*.py")):
            relative = path.relative_to(REPO).as_posix()
            tree = ast.parse(path.read_text(encoding="utf-8"), relative)
            for rule in RULES:
                if relative in rule.home or (relative, rule.idea) in ALLOWED:
                    continue
                for node in ast.walk(tree):
                    if rule.matches(node):
                        found.append(f"{relative}:{node.lineno}: {rule.idea}: {ast.unparse(node)[:80]}")
    return found


def test_the_rules_recognise_each_hand_made_copy() -> None:
    """Each rule catches the hand-made forms found in the tree before the consolidation, and
    leaves look-alikes alone (``str.replace``, ``dataclasses.replace``, a SELECT)."""
    hand_made = {
        "atomic write (rename into place)": ["os.replace(tmp, target)", "tmp.replace(target)", "tmp.rename(target)"],
        "fsync": ["os.fsync(f.fileno())"],
        "sha256 (hashlib): use fs.sha256_file / fs.sha256_text": ["import hashlib", "from hashlib import sha256"],
        "file lock (fcntl): use fs.file_lock / fs.SingleInstance": ["import fcntl"],
        "JSON state written by hand: use fs.JsonStateFile / fs.atomic_write_json":
            ["json.dump(doc, handle)", "path.write_text(json.dumps(doc))"],
        "SQLite connection or transaction: use ptychoflow.sqlite":
            ["sqlite3.connect(path)", "db.execute('BEGIN IMMEDIATE')", "db.execute('begin')"],
    }
    look_alikes = ["name.replace('-', '_')", "dataclasses.replace(options, alpha=1)", "json.dumps(doc)",
                   "db.execute('SELECT 1')", "path.write_text(text)", "import json", "'Begin the scan.'"]
    for rule in RULES:
        for source in hand_made[rule.idea]:
            assert any(rule.matches(n) for n in ast.walk(ast.parse(source))), (rule.idea, source)
        for source in look_alikes:
            assert not any(rule.matches(n) for n in ast.walk(ast.parse(source))), (rule.idea, source)


def test_low_level_ideas_are_coded_only_in_their_home() -> None:
    """No repeated block of atomic-write, hashing, locking, JSON-state or SQLite-transaction
    code anywhere in src/, edge/ and functions/: each lives in ``ptychoflow.fs`` (or
    ``ptychoflow.sqlite``), and every exception is listed in ALLOWED with its reason."""
    found = violations()
    assert not found, "hand-made copies of a shared primitive:\n" + "\n".join(found)
