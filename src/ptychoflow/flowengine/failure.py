"""Why a run failed, in one line: the failing state, the error type and the real cause.

An ``ActionFailedException``'s cause is the failed action's whole status document as JSON; the
reason a person needs (``ScanError: scan_0003.h5: /entry/data/positions: ...``) sits inside it,
often as the last line of a traceback. ``describe`` digs it out so ``runs show`` and ``runs
logs`` can print it first; the full cause stays available for ``--json``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ptychoflow.names import printable

MAX_MESSAGE = 300
_QUALIFIED = re.compile(r"^(?:[A-Za-z_]\w*\.)+(?=[A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt|Warning)?:)")


@dataclass(frozen=True)
class Failure:
    """One failure: where, what kind, the one-line reason, and the full cause behind it."""

    state: str | None
    error: str
    message: str
    cause: str

    def line(self) -> str:
        """``STATE: ERROR: message`` (without the parts that are unknown)."""
        head = ": ".join(part for part in (self.state, self.error) if part)
        return ": ".join(part for part in (head, self.message) if part)


def describe(error: str, cause: str, state: str | None = None) -> Failure:
    """The failure of ``state`` with ``error`` (a States.* or action error name) and ``cause``."""
    return Failure(state, error, reason(cause), cause)


def reason(cause: Any) -> str:
    """The one line that says why, from a cause that may be JSON, a traceback or plain text."""
    if not isinstance(cause, str):
        cause = json.dumps(cause)
    try:
        document = json.loads(cause)
    except ValueError:
        document = None
    text = _from_status(document) if isinstance(document, dict) else None
    return _clip(_last_line_of_traceback(text if text is not None else cause))


def _from_status(status: dict[str, Any]) -> str | None:
    """The most specific reason in an action status document (Compute, Transfer or other)."""
    details = status.get("details") if isinstance(status.get("details"), dict) else status
    results = details.get("results") if isinstance(details.get("results"), list) else []
    for result in results:
        if isinstance(result, dict):
            for key in ("exception", "error"):
                if isinstance(result.get(key), str) and result[key].strip():
                    return result[key]
    fatal = details.get("fatal_error")
    candidates = [details.get("exception"), details.get("description"),
                  fatal.get("description") if isinstance(fatal, dict) else None,
                  details.get("nice_status_details"), status.get("description")]
    found = next((c for c in candidates if isinstance(c, str) and c.strip()), None)
    if found is None and details.get("code"):
        found = str(details["code"])
    return found


def failure_from_text(text: str) -> Failure:
    """A failure known only by its error text (``STATE: ERROR: cause``, ``ERROR: cause`` or
    free text, as a Globus run reports it): the reason is dug out all the same."""
    head, _, rest = text.partition(": ")
    if rest and _ERROR_NAME.fullmatch(head):
        return describe(head, rest)
    second, _, cause = rest.partition(": ")
    if cause and _ERROR_NAME.fullmatch(second):
        return describe(second, cause, head)
    return describe("", text)


_ERROR_NAME = re.compile(r"(States\.\w+|\w*(Exception|Error|Timeout|ToRun|Failed|Canceled|Lost))")


def _last_line_of_traceback(text: str) -> str:
    """A Python traceback's last line (the exception), else the text's first non-empty line."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    line = lines[-1] if lines[0].startswith("Traceback") else lines[0]
    return _QUALIFIED.sub("", line)


def _clip(text: str) -> str:
    text = printable(text)
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 1] + "…"


def root_cause(events: list[dict[str, Any]]) -> Failure | None:
    """The failure behind a failed run, from its event log (``code``, ``details``).

    A flow that catches an error and then ends in a Fail state (``Catch`` -> report ->
    ``Fail``) failed because of what it caught: the last ``ErrorCaught`` before a Fail
    state's ``FlowFailed`` is the cause. Otherwise the ``FlowFailed`` itself is.
    """
    caught: Failure | None = None
    for event in events:
        details = event.get("details") if isinstance(event.get("details"), dict) else {}
        if event.get("code") == "ErrorCaught":
            caught = describe(str(details.get("error", "")), str(details.get("cause", "")), details.get("state_name"))
        elif event.get("code") == "FlowFailed":
            own = describe(str(details.get("error", "")), str(details.get("cause", "")), details.get("state_name"))
            return caught if caught is not None and details.get("fail_state") else own
    return None
