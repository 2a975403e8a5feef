"""Build the input document of a bundled flow from a profile (what the watcher and CLI send).

The flows hard-code nothing site-specific: collection ids, paths, endpoint ids, function ids
and policy knobs all come from here. Layout on the sites (relative to each site's path):

  hpc:  scans/<scan file>, products/<scan id>/, registry/<version>/, corpus/corpus.h5
  edge: staging/<version>/ (transferred), model/ (the active model the edge service serves)

Collection ids are the sites' ``collection_id`` or, on the local backend, the site name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ptychoflow.errors import PtychoflowError
from ptychoflow.function_registry import FunctionRegistry

FUNCTION_NAMES = ("reconstruct", "validate", "train", "activate")


def _collection(site: Any, name: str) -> str:
    return site.collection_id or name


def _function_ids(profile: Any) -> dict[str, str]:
    ids = dict(profile.functions)
    ids.update({n: r.function_id for n, r in FunctionRegistry(profile.state_path).all(profile.backend).items()})
    return ids


def _sites(profile: Any) -> tuple[Path, Path]:
    return profile.resolve(profile.hpc.path), profile.resolve(profile.edge.path)


def _beamline_path(profile: Any, scan: str | Path) -> str:
    """The scan as a path on the beamline collection (``/scan_0001.h5``)."""
    scan = Path(scan)
    if scan.is_absolute():
        scan = scan.relative_to(profile.resolve(profile.beamline.path))
    return "/" + scan.as_posix().lstrip("/")


def _edge(profile: Any, edge_root: Path) -> dict[str, Any]:
    return {"collection_id": _collection(profile.edge, "edge"), "endpoint_id": profile.edge.endpoint_id,
            "staging_path": "/staging", "staging_dir": str(edge_root / "staging"), "model_dir": str(edge_root / "model")}


def _pick(ids: dict[str, str], names: tuple[str, ...]) -> dict[str, str]:
    missing = [n for n in names if n not in ids]
    if missing:
        raise PtychoflowError(f"functions not registered: {', '.join(missing)}; run `ptychoflow functions register`")
    return {n: ids[n] for n in names}


def reconstruct_and_train_input(profile: Any, scan: str | Path, *, scan_id: str | None = None) -> dict[str, Any]:
    """Input for ``reconstruct_and_train`` for one scan (a path relative to the beamline dir)."""
    scan_name = Path(scan).name
    scan_id = scan_id or Path(scan).stem
    hpc_root, edge_root = _sites(profile)
    policy = profile.policy
    return {
        "scan_id": scan_id,
        "beamline": {"collection_id": _collection(profile.beamline, "beamline"), "scan_path": _beamline_path(profile, scan)},
        "hpc": {
            "collection_id": _collection(profile.hpc, "hpc"), "endpoint_id": profile.hpc.endpoint_id,
            "scan_path": f"/scans/{scan_name}", "scan_file": str(hpc_root / "scans" / scan_name),
            "output_dir": str(hpc_root / "products" / scan_id), "registry_dir": str(hpc_root / "registry"),
            "registry_path": "/registry", "corpus_path": str(hpc_root / "corpus" / "corpus.h5"),
        },
        "edge": _edge(profile, edge_root),
        "functions": _pick(_function_ids(profile), FUNCTION_NAMES),
        "policy": {
            "engine": policy.engine, "iterations": policy.iterations, "batch_size": policy.batch_size, "alpha": policy.alpha,
            "ssim_tolerance": policy.ssim_tolerance,
            "promote_margin": policy.promote_margin, "train_epochs": policy.train_epochs,
            "train_time_limit_s": policy.train_time_limit_s, "model": policy.model, "patch_size": policy.patch_size,
        },
    }


def reconstruct_input(profile: Any, scan: str | Path, *, scan_id: str | None = None) -> dict[str, Any]:
    """Input for ``reconstruct``: the product comes back to ``<beamline>/results/<scan id>``."""
    scan_name = Path(scan).name
    scan_id = scan_id or Path(scan).stem
    hpc_root, _ = _sites(profile)
    return {
        "scan_id": scan_id,
        "beamline": {"collection_id": _collection(profile.beamline, "beamline"), "scan_path": _beamline_path(profile, scan),
                     "results_path": f"/results/{scan_id}"},
        "hpc": {"collection_id": _collection(profile.hpc, "hpc"), "endpoint_id": profile.hpc.endpoint_id,
                "scan_path": f"/scans/{scan_name}", "scan_file": str(hpc_root / "scans" / scan_name),
                "output_dir": str(hpc_root / "products" / scan_id), "output_path": f"/products/{scan_id}"},
        "functions": _pick(_function_ids(profile), ("reconstruct",)),
        "policy": {"engine": profile.policy.engine, "iterations": profile.policy.iterations,
                   "batch_size": profile.policy.batch_size, "alpha": profile.policy.alpha},
    }


def deploy_model_input(profile: Any, version: str) -> dict[str, Any]:
    """Input for ``deploy_model``: push registry version ``version`` to the edge."""
    _, edge_root = _sites(profile)
    return {
        "version": version,
        "hpc": {"collection_id": _collection(profile.hpc, "hpc"), "registry_path": "/registry"},
        "edge": _edge(profile, edge_root),
        "functions": _pick(_function_ids(profile), ("activate",)),
    }


SCAN_FLOW_INPUTS = {"reconstruct_and_train": reconstruct_and_train_input, "reconstruct": reconstruct_input}


def scan_flow_input(profile: Any, flow_name: str, scan: str | Path, *, scan_id: str | None = None) -> dict[str, Any] | None:
    """The input of bundled flow `flow_name` for one scan, or None for a flow we don't know."""
    builder = SCAN_FLOW_INPUTS.get(flow_name)
    return None if builder is None else builder(profile, scan, scan_id=scan_id)
