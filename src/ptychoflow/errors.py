"""Errors that reach users: one line that names the file and the field."""

from __future__ import annotations

from pathlib import Path


class PtychoflowError(Exception):
    """Base class for errors that the CLI prints as one clean line (no traceback)."""


class InputError(PtychoflowError):
    """Bad input data: names the file and the offending field so nobody has to guess."""

    def __init__(self, path: str | Path, field: str, problem: str) -> None:
        self.path = str(path)
        self.field = field
        self.problem = problem
        super().__init__(f"{self.path}: {field}: {problem}")


class ScanError(InputError):
    """A scan file is malformed, incomplete or physically implausible."""


class ProfileError(InputError):
    """A profile TOML is missing a key or has an invalid value."""


class FlowDefinitionError(PtychoflowError):
    """A flow definition would be rejected by the Globus Flows service."""


class CredentialsError(PtychoflowError):
    """Globus credentials are missing or lack a consent; the message says how to fix it."""
