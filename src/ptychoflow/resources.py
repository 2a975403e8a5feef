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
    """Resolve a flow by bundled name (``reconstruct``) or by a path to a JSON file."""
    candidate = Path(name)
    if candidate.suffix == ".json" and candidate.exists():
        return candidate
    bundled = flows_dir() / f"{candidate.stem}.json"
    if bundled.exists():
        return bundled
    known = ", ".join(sorted(p.stem for p in flows_dir().glob("*.json") if not p.stem.endswith(".schema")))
    raise FileNotFoundError(f"{name}: no such flow file or bundled flow (bundled: {known})")
