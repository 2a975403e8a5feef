"""Build the input document of a bundled flow from a profile (what the watcher and CLI send).

The flows hard-code nothing site-specific: collection ids, paths, endpoint ids and their
``user_endpoint_config``, function ids and policy knobs all come from here. Every path comes
from the site layout (``ptychoflow.site``), twice: as the collection shows it (Transfer,
below each site's ``collection_base_path``) and as the compute endpoint's workers see it
(Compute). Every value a flow reads is present: Globus Flows does not fill in schema
defaults, so an input that leaves one out would pass the schema and fail at run time.

Collection ids are the sites' ``collection_id`` or, on the local backend, the site name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ptychoflow import site
from ptychoflow.errors import PtychoflowError
from ptychoflow.function_registry import FunctionRegistry
from ptychoflow.names import safe_component
from ptychoflow.site import SiteLayout, collection_path

FUNCTION_NAMES = ("reconstruct", "validate", "train", "activate")


def _collection(site_config: Any, name: str) -> str:
    return site_config.collection_id or name


def _function_ids(profile: Any) -> dict[str, str]:
    ids = dict(profile.functions)
    ids.update({n: r.function_id for n, r in FunctionRegistry(profile.state_path).all(profile.backend).items()})
    return ids


def _pick(ids: dict[str, str], names: tuple[str, ...]) -> dict[str, str]:
    missing = [n for n in names if n not in ids]
    if missing:
        raise PtychoflowError(f"functions not registered: {', '.join(missing)}; run `ptychoflow functions register`")
    return {n: ids[n] for n in names}


def _beamline_path(profile: Any, layout: SiteLayout, scan: str | Path) -> str:
    """The scan as a path on the beamline collection (``<base>/scan_0001.h5``)."""
    scan = Path(scan)
    if scan.is_absolute():
        scan = scan.relative_to(layout.beamline_root)
    return collection_path(scan.as_posix().lstrip("/"), base=profile.beamline.collection_base_path)


def _hpc(profile: Any, *parts: str) -> str:
    return collection_path(*parts, base=profile.hpc.collection_base_path)


def _edge(profile: Any, layout: SiteLayout) -> dict[str, Any]:
    return {"collection_id": _collection(profile.edge, "edge"), "endpoint_id": profile.edge.endpoint_id,
            "user_endpoint_config": dict(profile.edge.user_endpoint_config),
            "staging_path": collection_path(site.EDGE_STAGING, base=profile.edge.collection_base_path),
            "staging_dir": str(layout.edge.staging_dir), "model_dir": str(layout.edge.model_dir)}


def _compute_site(profile: Any) -> dict[str, Any]:
    return {"collection_id": _collection(profile.hpc, "hpc"), "endpoint_id": profile.hpc.endpoint_id,
            "user_endpoint_config": dict(profile.hpc.user_endpoint_config)}


def _rpie(policy: Any) -> dict[str, Any]:
    return {"engine": policy.engine, "iterations": policy.iterations, "batch_size": policy.batch_size, "alpha": policy.alpha}


def _scan_names(layout: SiteLayout, scan: str | Path, scan_id: str | None) -> tuple[str, str]:
    scan_name = safe_component(Path(scan).name, source=layout.beamline_root, field="scan file name")
    return scan_name, safe_component(scan_id or Path(scan).stem, source=layout.beamline_root, field="scan_id")


def reconstruct_and_train_input(profile: Any, scan: str | Path, *, scan_id: str | None = None) -> dict[str, Any]:
    """Input for ``reconstruct_and_train`` for one scan (a path relative to the beamline dir)."""
    layout = SiteLayout.from_profile(profile)
    scan_name, scan_id = _scan_names(layout, scan, scan_id)
    policy = profile.policy
    return {
        "scan_id": scan_id,
        "beamline": {"collection_id": _collection(profile.beamline, "beamline"),
                     "scan_path": _beamline_path(profile, layout, scan)},
        "hpc": {
            **_compute_site(profile),
            "scan_path": _hpc(profile, site.SCANS, scan_name), "scan_file": str(layout.hpc.scan_file(scan_name)),
            "output_dir": str(layout.hpc.products_dir(scan_id)), "registry_dir": str(layout.hpc.registry_dir),
            "registry_path": _hpc(profile, site.REGISTRY), "corpus_path": str(layout.hpc.corpus_path),
        },
        "edge": _edge(profile, layout),
        "functions": _pick(_function_ids(profile), FUNCTION_NAMES),
        "policy": {
            **_rpie(policy), "ssim_tolerance": policy.ssim_tolerance,
            "promote_margin": policy.promote_margin, "train_epochs": policy.train_epochs,
            "train_time_limit_s": policy.train_time_limit_s, "model": policy.model, "patch_size": policy.patch_size,
        },
    }


def reconstruct_input(profile: Any, scan: str | Path, *, scan_id: str | None = None) -> dict[str, Any]:
    """Input for ``reconstruct``: the product comes back to ``<beamline>/results/<scan id>``."""
    layout = SiteLayout.from_profile(profile)
    scan_name, scan_id = _scan_names(layout, scan, scan_id)
    return {
        "scan_id": scan_id,
        "beamline": {"collection_id": _collection(profile.beamline, "beamline"),
                     "scan_path": _beamline_path(profile, layout, scan),
                     "results_path": collection_path("results", scan_id, base=profile.beamline.collection_base_path)},
        "hpc": {**_compute_site(profile),
                "scan_path": _hpc(profile, site.SCANS, scan_name), "scan_file": str(layout.hpc.scan_file(scan_name)),
                "output_dir": str(layout.hpc.products_dir(scan_id)), "output_path": _hpc(profile, site.PRODUCTS, scan_id)},
        "functions": _pick(_function_ids(profile), ("reconstruct",)),
        "policy": _rpie(profile.policy),
    }


def deploy_model_input(profile: Any, version: str) -> dict[str, Any]:
    """Input for ``deploy_model``: push registry version ``version`` to the edge."""
    layout = SiteLayout.from_profile(profile)
    return {
        "version": version,
        "hpc": {"collection_id": _collection(profile.hpc, "hpc"), "registry_path": _hpc(profile, site.REGISTRY)},
        "edge": _edge(profile, layout),
        "functions": _pick(_function_ids(profile), ("activate",)),
    }


SCAN_FLOW_INPUTS = {"reconstruct_and_train": reconstruct_and_train_input, "reconstruct": reconstruct_input}


def scan_flow_input(profile: Any, flow_name: str, scan: str | Path, *, scan_id: str | None = None) -> dict[str, Any] | None:
    """The input of bundled flow `flow_name` for one scan, or None for a flow we don't know."""
    builder = SCAN_FLOW_INPUTS.get(flow_name)
    return None if builder is None else builder(profile, scan, scan_id=scan_id)
