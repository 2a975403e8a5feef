"""The fuzz suite's checks and its tally.

Every hostile case ends in one of three accepted outcomes:

- ``one_line``: exit status != 0 (or a PtychoflowError in process) with one line that names
  the file and the field, and no traceback;
- ``refused``: counted by reason and refused, with the service still up;
- ``contained``: nothing written outside its site, nothing half-written under a final name,
  and a name from data printed with its control characters escaped (it stays in its place on
  the terminal and in the log).

The checks below record what they saw in ``TALLY`` (faults included, before they fail the
case), and ``tests/conftest.py`` prints the totals at the end of every run that ran hostile
cases (``record`` and ``summary``), so the summary line is measured, never asserted. Adding a
case: call one of these checks from a new test (or add a parameter to an existing one)
anywhere in ``tests/hostile/``.
"""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ptychoflow.errors import PtychoflowError
from ptychoflow.names import printable

REPO = Path(__file__).resolve().parents[1]
HOSTILE = REPO / "tests" / "hostile"
CONSOLE_SCRIPT = REPO / ".venv" / "bin" / "ptychoflow"  # the installed entry point, as users run it

OUTCOMES = ("one_line", "refused", "contained")
FAULTS = ("traceback", "silent", "outside", "half_written")
TALLY: Counter[str] = Counter()


def _fault(kind: str, message: str) -> AssertionError:
    TALLY[kind] += 1
    return AssertionError(f"[{kind}] {message}")


def _require_names(text: str, names: Iterable[str]) -> None:
    missing = [name for name in names if name not in text]
    if missing:
        raise AssertionError(f"error does not name {missing}: {text!r}")


def one_line_error(call: Callable[[], Any], *names: str) -> str:
    """`call()` must raise a PtychoflowError: one line naming each of `names` (file, field)."""
    try:
        result = call()
    except PtychoflowError as exc:
        message = str(exc)
    except Exception as exc:  # anything else would reach a user as a traceback
        raise _fault("traceback", f"{type(exc).__name__}: {exc}") from exc
    else:
        raise _fault("silent", f"accepted, returned {result!r:.200}")
    if "\n" in message:
        raise AssertionError(f"error is not one line: {message!r}")
    _require_names(message, names)
    TALLY["one_line"] += 1
    return message


def console(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
    """The installed ``ptychoflow`` console script (not ``python -m``)."""
    return subprocess.run([str(CONSOLE_SCRIPT), *args], capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def cli_error(args: list[str], *names: str, cwd: Path | None = None, env: dict[str, str] | None = None,
              timeout: float = 120) -> str:
    """The console script must exit != 0 with one ``error:`` line naming each of `names`."""
    result = console(*args, cwd=cwd, env=env, timeout=timeout)
    output = result.stderr + result.stdout
    if "Traceback (most recent call last)" in output:
        raise _fault("traceback", f"ptychoflow {' '.join(args)}:\n{output[-2000:]}")
    if result.returncode == 0:
        raise _fault("silent", f"ptychoflow {' '.join(args)} exited 0:\n{output[-1000:]}")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if len(lines) != 1:
        raise AssertionError(f"expected one error line, got {len(lines)}:\n{result.stderr}")
    _require_names(lines[0], names)
    TALLY["one_line"] += 1
    return lines[0]


def counted(before: dict[str, int], after: dict[str, int], reason: str, *, alive: bool) -> None:
    """A stream message was refused and counted under `reason`, and the service is still up."""
    if not alive:
        raise _fault("traceback", f"the service died on a message refused for {reason}")
    if after.get(reason, 0) != before.get(reason, 0) + 1:
        raise _fault("silent", f"not counted as {reason}: {before} -> {after}")
    TALLY["refused"] += 1


def refused_with_reason(condition: bool, message: str) -> None:
    """A service declined an input and recorded why (`condition`), and kept going."""
    if not condition:
        raise _fault("silent", message)
    TALLY["refused"] += 1


def escaped(shown: str, raw: str) -> None:
    """A name from data (`raw`, with control characters) was printed escaped: shown whole as
    ``names.printable`` writes it (rich markup taken literally), none of its control characters
    reached `shown`, and no line of `shown` begins with one of its lines."""
    controls = sorted({c for c in raw if not c.isprintable()})
    leaked = [c for c in controls if c in shown and c != "\n"]
    forged = [line for line in raw.splitlines()[1:] if any(s.startswith(line) for s in shown.splitlines())]
    if leaked or forged or printable(raw) not in shown:
        raise _fault("silent", f"not printed as {printable(raw)!r}: controls {leaked}, forged lines {forged}:\n"
                               f"{shown[-1000:]}")
    TALLY["contained"] += 1


class Tree:
    """A snapshot of every file below `root` (path -> size, mtime), to see what a case wrote."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.before = self._scan()

    def _scan(self) -> dict[Path, tuple[int, int]]:
        found = {}
        for path in self.root.rglob("*"):
            if path.is_file() or path.is_symlink():
                st = path.lstat()
                found[path] = (st.st_size, st.st_mtime_ns)
        return found

    def written(self) -> list[Path]:
        after = self._scan()
        return sorted(p for p, sig in after.items() if self.before.get(p) != sig)

    def contained(self, *allowed: Path) -> list[Path]:
        """Assert every file written since the snapshot lies below one of `allowed` and none
        is a leftover temporary (``.<name>.tmp-…``); returns the files written."""
        written = self.written()
        outside = [p for p in written if not any(p == a or a in p.parents for a in allowed)]
        if outside:
            raise _fault("outside", f"written outside {[str(a) for a in allowed]}: {[str(p) for p in outside]}")
        leftovers = [p for p in written if p.name.startswith(".") and ".tmp" in p.name]
        if leftovers:
            raise _fault("half_written", f"temporary files left: {leftovers}")
        TALLY["contained"] += 1
        return written


def not_half_written(condition: bool, message: str) -> None:
    """A final name holds a whole, accepted file (or nothing): `condition` says it does."""
    if not condition:
        raise _fault("half_written", message)
    TALLY["contained"] += 1


CASES: dict[str, str] = {}  # node id -> outcome of each hostile case run


def record(path: Path, nodeid: str, when: str, outcome: str) -> None:
    """A test report (pytest_runtest_logreport): remember the outcome of hostile cases."""
    if not path.resolve().is_relative_to(HOSTILE):
        return
    if when == "call" or outcome != "passed":  # setup/teardown failures and skips count too
        CASES[nodeid] = "failed" if outcome == "failed" or CASES.get(nodeid) == "failed" else outcome


def summary() -> str | None:
    """The suite's summary line, or None when no hostile case ran."""
    ran = [outcome for outcome in CASES.values() if outcome != "skipped"]
    if not ran:
        return None
    checks = ", ".join(f"{TALLY[o]} {o.replace('_', '-')}" for o in OUTCOMES)
    return (f"hostile inputs: {len(ran)} cases, {ran.count('passed')} passed ({checks}); {TALLY['traceback']} "
            f"tracebacks, {TALLY['silent']} silent acceptances, {TALLY['outside']} writes outside a site, "
            f"{TALLY['half_written']} half-written files")
