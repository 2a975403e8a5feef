"""Locate the bundled flow definitions and remote functions.

In a wheel they are under ``ptychoflow/_bundled``; in a source checkout (editable
install, or ``PYTHONPATH=src``) they are the top-level ``flows/`` and ``functions/``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


@cache
def _bundled_root() -> Path:
    bundled = _PACKAGE_DIR / "_bundled"
    if (bundled / "flows").is_dir():
        return bundled
    checkout = _PACKAGE_DIR.parent.parent  # src/ptychoflow -> repo root
    if (checkout / "flows").is_dir():
        return checkout
    raise FileNotFoundError(
        f"cannot find the bundled flows/ and functions/ (looked in {bundled} and {checkout}); "
        "reinstall ptychoflow"
    )


def flows_dir() -> Path:
    """Directory holding ``*.json`` flow definitions and their ``*.schema.json`` inputs."""
    return _bundled_root() / "flows"


def bundled_flows() -> list[Path]:
    """Every bundled flow definition (``NAME.json``, its ``NAME.schema.json`` beside it)."""
    return sorted(p for p in flows_dir().glob("*.json") if not p.name.endswith(".schema.json"))


def functions_dir() -> Path:
    """Directory holding the remote functions registered with Globus Compute."""
    return _bundled_root() / "functions"


def flow_path(name: str) -> Path:
    """Resolve a flow by bundled name (``reconstruct``) or by a path to a JSON file.

    Anything that looks like a path (a ``.json`` suffix or a directory part) is that file
    or nothing: a missing ``/site/reconstruct.json`` never quietly runs the bundled flow
    of the same name.
    """
    candidate = Path(name)
    if candidate.suffix == ".json" or len(candidate.parts) > 1:
        if candidate.is_file():
            return candidate
        raise FileNotFoundError(f"{name}: (file): no such flow file")
    bundled = flows_dir() / f"{candidate.name}.json"
    if bundled.exists() and not candidate.name.endswith(".schema"):
        return bundled
    known = ", ".join(sorted(p.stem for p in flows_dir().glob("*.json") if not p.stem.endswith(".schema")))
    raise FileNotFoundError(f"{name}: no such flow file or bundled flow (bundled: {known})")
