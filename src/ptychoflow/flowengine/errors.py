"""Runtime errors raised while a run executes; ``name`` is what ``Catch.ErrorEquals`` matches."""

from __future__ import annotations


class StateError(Exception):
    """A named flow error (``ActionFailedException``, ``States.Runtime`` ...) with its cause."""

    def __init__(self, name: str, cause: str) -> None:
        super().__init__(f"{name}: {cause}")
        self.name = name
        self.cause = cause


def runtime_error(cause: str) -> StateError:
    """A data error inside the flow (missing path, bad expression): the service's States.Runtime."""
    return StateError("States.Runtime", cause)
