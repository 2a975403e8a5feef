"""Names that come from data (scan ids, run labels, model versions, manifest fields).

One rule, enforced here and nowhere else: such a name becomes a path component only through
``safe_component``, which refuses (never rewrites) anything that could escape its directory
or confuse a shell, a glob or a terminal. And ``printable`` escapes control characters
wherever a name is printed or logged, so a scan id cannot forge log lines or colour a
terminal.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from ptychoflow.errors import InputError

MAX_COMPONENT_LENGTH = 128
# Letters, digits and a few punctuation marks; must start with a letter or digit (no ".",
# "..", hidden files or option-like "-x").
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=@,-]*")


def is_safe_component(name: object) -> bool:
    return (
        isinstance(name, str)
        and 0 < len(name) <= MAX_COMPONENT_LENGTH
        and _SAFE.fullmatch(name) is not None
        and ".." not in name
    )


def safe_component(name: object, *, source: str | Path, field: str) -> str:
    """`name` unchanged if it is a safe single file-name component, else an InputError that
    names `source` (the file or stream it came from) and `field`."""
    if is_safe_component(name):
        return name  # type: ignore[return-value]
    if not isinstance(name, str):
        problem = f"must be a string, got {type(name).__name__}"
    elif not name:
        problem = "is empty"
    elif len(name) > MAX_COMPONENT_LENGTH:
        problem = f"is {len(name)} characters long (at most {MAX_COMPONENT_LENGTH})"
    else:
        problem = (f"{printable(name)!s} is not a safe name: use letters, digits and . _ - + = @ , "
                   "starting with a letter or digit, with no '..'")
    raise InputError(source, field, problem)


def inside(root: str | Path, relative: str | Path, *, source: str | Path, field: str) -> Path:
    """``root / relative`` if it stays inside `root` (no absolute path, no ``..``, no symlink
    leading out), else an InputError. For paths that arrive in flow inputs and manifests."""
    root_path = Path(root).resolve()
    text = str(relative)
    if "\x00" in text:
        raise InputError(source, field, "contains a NUL byte")
    candidate = Path(text)
    if candidate.is_absolute():
        raise InputError(source, field, f"{printable(text)} is absolute; give a path relative to {root_path}")
    resolved = (root_path / candidate).resolve()
    if resolved != root_path and root_path not in resolved.parents:
        raise InputError(source, field, f"{printable(text)} leads outside {root_path}")
    return resolved


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: object) -> str:
    """`text` with control characters (newlines, ANSI escapes, NUL) shown as escapes."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(text))


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"  # the CLI's one timestamp style (ptychoflow.clock)


class PrintableFormatter(logging.Formatter):
    """Log lines whose message is passed through ``printable``: a name from data (a scan id
    with a newline or an ANSI escape) cannot forge a log line or repaint a terminal.
    A traceback, appended after the message, keeps its lines."""

    def __init__(self, fmt: str = LOG_FORMAT, datefmt: str = LOG_DATE_FORMAT) -> None:
        super().__init__(fmt, datefmt)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        record.message = printable(record.message)
        return super().formatMessage(record)


def printable_handler(handler: logging.Handler, fmt: str = LOG_FORMAT) -> logging.Handler:
    """`handler` formatting with ``PrintableFormatter`` (every ptychoflow log handler)."""
    handler.setFormatter(PrintableFormatter(fmt))
    return handler
