"""Bounds on what one run may consume, so a bad definition or input fails instead of hanging.

Each limit fails the run with a named ``States.*`` error. As in the Amazon States Language
(where ``States.ALL`` does not match ``States.DataLimitExceeded``), a ``States.ALL`` catcher
does not catch them: only a catcher that names the data or expression limit does. The
transition limit cannot be caught at all (the catcher's state would be one more transition).

The defaults live here and nowhere else; a profile overrides them (``[engine]``).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, fields
from typing import Any

from ptychoflow.flowengine.errors import StateError

TRANSITION_LIMIT_ERROR = "States.TransitionLimitExceeded"
DATA_LIMIT_ERROR = "States.DataLimitExceeded"
EXPRESSION_LIMIT_ERROR = "States.ExpressionLimitExceeded"
LIMIT_ERRORS = frozenset({TRANSITION_LIMIT_ERROR, DATA_LIMIT_ERROR, EXPRESSION_LIMIT_ERROR})
UNCATCHABLE_ERRORS = frozenset({TRANSITION_LIMIT_ERROR})

# Integers in the state are JSON numbers; Python refuses to print one longer than this.
MAX_INT_DIGITS = sys.get_int_max_str_digits() or 4300


@dataclass(frozen=True)
class RunLimits:
    """Per-run bounds. Why these defaults:

    - ``max_transitions`` 10,000 states entered: ptychoflow's flows enter about 10; the looping
      batched move of the Globus examples enters 5 per batch, so 2,000 batches fit. A
      Pass -> Pass loop (about 270 transitions/s) stops after ~40 s instead of never.
    - ``max_state_bytes`` 200 KB of JSON: the Globus Flows service's "Maximum Run State Size"
      (docs.globus.org/api/flows/limits). A run that fits here fits there, and the database
      stores at most one state-sized record per transition.
    - ``expression_cpu_seconds`` 1 s of thread CPU time per expression: the expressions of
      real flows take microseconds; a second is far beyond any of them on a loaded host.
    - ``expression_max_size`` 200,000: the largest string (characters), list or object
      (items, counted through nesting) an expression may build; no larger value fits a state.
    """

    max_transitions: int = 10_000
    max_state_bytes: int = 200 * 1024
    expression_cpu_seconds: float = 1.0
    expression_max_size: int = 200_000

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{item.name} must be a positive number, got {value!r}")

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> "RunLimits":
        """Build from a profile table; unknown keys are refused (a typo must not be ignored)."""
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown limit(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        return {item.name: getattr(self, item.name) for item in fields(self)}


DEFAULT_LIMITS = RunLimits()


def json_size(document: Any) -> int:
    """Bytes of ``document`` as compact JSON (how the store keeps it)."""
    return len(json.dumps(document, separators=(",", ":")).encode())


def check_state_size(document: Any, limits: RunLimits, what: str) -> None:
    """Raise States.DataLimitExceeded when ``document`` is larger than the state may be."""
    size = json_size(document)
    if size > limits.max_state_bytes:
        raise StateError(DATA_LIMIT_ERROR, f"{what} is {_kib(size)} of JSON; the limit is "
                                           f"{_kib(limits.max_state_bytes)} (limits.max_state_bytes)")


def transition_limit_error(limits: RunLimits) -> StateError:
    return StateError(TRANSITION_LIMIT_ERROR, f"the run entered {limits.max_transitions} states without ending "
                                              "(limits.max_transitions); is there a loop without an exit?")


def _kib(size: int) -> str:
    return f"{size / 1024:.1f} KiB"
