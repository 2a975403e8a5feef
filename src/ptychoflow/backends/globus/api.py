"""Plain functions for the CLI (``flows deploy``, ``functions register``, ``runs ...``).

Each takes a profile (or a ready backend, for tests) and returns backend records, so the
CLI modules stay free of Globus details.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ptychoflow.backends.base import DeployedFlow, RegisteredFunction, RunInfo
from ptychoflow.profile import Profile

from .backend import GlobusBackend


def backend_for(profile: Profile, backend: GlobusBackend | None = None) -> GlobusBackend:
    return backend or GlobusBackend(profile)


def deploy_flows(profile: Profile, paths: list[Path], *, backend: GlobusBackend | None = None) -> list[DeployedFlow]:
    """``flows deploy``: create/update each flow file, keyed on its checksum."""
    globus = backend_for(profile, backend)
    return [globus.deploy_flow(Path(path)) for path in paths]


def register_functions(
    profile: Profile,
    functions: dict[str, Path] | None = None,
    *,
    force: bool = False,
    backend: GlobusBackend | None = None,
) -> list[RegisteredFunction]:
    """``functions register --backend globus``: bundled functions unless given; ids go to the registry."""
    return backend_for(profile, backend).register_all(functions, force=force)


def start_run(
    profile: Profile,
    flow_path: Path,
    body: dict[str, Any],
    *,
    label: str = "",
    tags: list[str] | None = None,
    backend: GlobusBackend | None = None,
) -> RunInfo:
    """``flows run``: deploy if needed (one GET when unchanged), then start a run."""
    globus = backend_for(profile, backend)
    return globus.start_run(globus.deploy_flow(Path(flow_path)), body, label=label, tags=tags)


def run_action(profile: Profile, verb: str, run_id: str, *, backend: GlobusBackend | None = None) -> Any:
    """``runs show|logs|cancel|resume RUN_ID``: the verb's record (logs: list of entries)."""
    globus = backend_for(profile, backend)
    actions = {"show": globus.get_run, "logs": globus.get_run_log, "cancel": globus.cancel_run, "resume": globus.resume_run}
    if verb not in actions:
        raise ValueError(f"unknown run verb {verb!r}; expected one of {', '.join(actions)}")
    return actions[verb](run_id)


def wait_run(profile: Profile, run_id: str, *, timeout: float | None = None, backend: GlobusBackend | None = None) -> RunInfo:
    """``runs watch`` / ``flows run --wait``: poll with backoff until the run finishes."""
    return backend_for(profile, backend).wait_run(run_id, timeout=timeout)
