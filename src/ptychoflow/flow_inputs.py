"""Build the input document of a bundled flow from a profile (what the watcher and CLI send).

The flows hard-code nothing site-specific: collection ids, paths, endpoint ids and their
``user_endpoint_config``, function ids and policy knobs all come from here. Every path comes
from ``ptychoflow.site``: the same relative path names a file on a site's collection
(``collection_path``, below the site's ``collection_base_path``) and on its disk
(``SiteLayout``), given to the functions as the site's ``root`` and paths relative to it:
they refuse any path that leads out (``site.site_arguments``). Collection ids are the
sites' ``collection_id`` or, on the local backend, the site name.

Every policy knob the flow reads is always sent (the Globus Flows service does not apply
input-schema defaults), so the profile's ``Policy`` is the one place a default lives.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ptychoflow.errors import InputError, PtychoflowError, ScanError
from ptychoflow.function_registry import FunctionRegistry
from ptychoflow.names import safe_component
from ptychoflow.scan.registry import choose_reader
from ptychoflow.site import EDGE_STAGING, PRODUCTS, REGISTRY, RESULTS, SCANS, STAGED, SiteLayout, collection_path

if TYPE_CHECKING:
    from ptychoflow.profile import Profile

FUNCTION_NAMES = ("reconstruct", "validate", "train", "activate")
RECONSTRUCT_KNOBS = ("engine", "iterations", "batch_size", "alpha", "export_formats", "probe_start")  # the Policy knobs rPIE reads


def _collection(site: Any, name: str) -> str:
    return site.collection_id or name


def _function_ids(profile: Profile) -> dict[str, str]:
    ids = dict(profile.functions)
    ids.update({n: r.function_id for n, r in FunctionRegistry(profile.state_path).all(profile.backend).items()})
    return ids


def _pick(ids: dict[str, str], names: tuple[str, ...]) -> dict[str, str]:
    missing = [n for n in names if n not in ids]
    if missing:
        raise PtychoflowError(f"functions not registered: {', '.join(missing)}; run `ptychoflow functions register`")
    return {n: ids[n] for n in names}


def scan_in_beamline(profile: Profile, scan: str | Path, *, must_exist: bool = True) -> Path:
    """A scan file a user names (relative to here, or to the beamline directory) as a path
    relative to the beamline directory, where the flows transfer it from. Without
    `must_exist`, a relative name that is nowhere yet is taken as relative to that directory."""
    root = SiteLayout.from_profile(profile).beamline_root.resolve()
    for candidate in (Path(scan), root / scan):
        if candidate.is_file():
            try:
                return candidate.resolve().relative_to(root)
            except ValueError:
                raise InputError(scan, "(file)", f"not inside the beamline directory {root}, where the flows "
                                                 "transfer scans from (copy it there, or set [beamline] path)") from None
    if not must_exist and not Path(scan).is_absolute():
        return Path(scan)
    raise InputError(scan, "(file)", f"no such scan file (looked here and in the beamline directory {root})")


def _on(site: Any, *parts: str) -> str:
    """A path below ``site``'s directory, as its collection shows it."""
    return collection_path(*parts, base=site.collection_base_path)


def _beamline_path(profile: Profile, layout: SiteLayout, scan: str | Path) -> str:
    """The scan as a path on the beamline collection (``<base>/scan_0001.h5``)."""
    scan = Path(scan)
    if scan.is_absolute():
        scan = scan.relative_to(layout.beamline_root)
    return _on(profile.beamline, scan.as_posix().lstrip("/"))


def _scan_names(layout: SiteLayout, scan: str | Path, scan_id: str | None) -> tuple[str, str]:
    """(scan file name, scan id), both refused if they could escape a directory."""
    name = safe_component(Path(scan).name, source=scan, field="scan file name")
    return name, safe_component(scan_id or Path(name).stem, source=scan, field="scan_id")


def _scan_files(profile: Profile, layout: SiteLayout, scan: str | Path) -> list[Path]:
    """The scan file and what its reader needs beside it, relative to the beamline directory."""
    path = Path(scan) if Path(scan).is_absolute() else layout.beamline_root / scan
    try:  # a layout that needs files beside the scan says which; the reconstruct function validates the rest
        reader = choose_reader(path, profile.beamline.scan_format)
    except ScanError:
        reader = None
    extra = reader.companions(path, profile.beamline.read_options()) if reader else []
    files = []
    for file in [path, *extra]:
        relative = Path(file).resolve().relative_to(layout.beamline_root.resolve())
        files.append(Path(*(safe_component(part, source=path, field="scan file name") for part in relative.parts)))
    return files


def _transfer(profile: Profile, layout: SiteLayout, scan: str | Path) -> list[dict[str, Any]]:
    """Transfer items beamline -> HPC scans/: the scan file keeps its place relative to the others."""
    files = _scan_files(profile, layout, scan)
    base = files[0].parent
    return [{"source_path": _on(profile.beamline, f.as_posix()), "recursive": False,
             "destination_path": _on(profile.hpc, SCANS, f.relative_to(base).as_posix())} for f in files]


def _reading(profile: Profile) -> dict[str, Any]:
    beamline = profile.beamline
    return {"format": beamline.scan_format, "options": {"frame_size": beamline.frame_size,
                                                        "positions_file": beamline.positions_file,
                                                        "y_source": beamline.y_source}}


def _in_site(root: Path, path: Path) -> str:
    """`path` relative to its site's root, as the functions take it."""
    return path.relative_to(root).as_posix()


def _hpc_scan(profile: Profile, layout: SiteLayout, scan_name: str, scan_id: str) -> dict[str, Any]:
    """Where the scan lands on HPC and where its product goes (collection, and below the root)."""
    hpc = layout.hpc
    return {
        "root": str(hpc.root), "collection_id": _collection(profile.hpc, "hpc"), "endpoint_id": profile.hpc.endpoint_id,
        "user_endpoint_config": dict(profile.hpc.user_endpoint_config),
        "scan_path": _on(profile.hpc, SCANS, scan_name), "scan_file": _in_site(hpc.root, hpc.scan_file(scan_name)),
        "output_dir": _in_site(hpc.root, hpc.products_dir(scan_id)),
    }


def _edge(profile: Profile, layout: SiteLayout) -> dict[str, Any]:
    return {"root": str(layout.edge.root), "collection_id": _collection(profile.edge, "edge"),
            "endpoint_id": profile.edge.endpoint_id, "user_endpoint_config": dict(profile.edge.user_endpoint_config),
            "staging_path": _on(profile.edge, EDGE_STAGING)}


def reconstruct_and_train_input(profile: Profile, scan: str | Path, *, scan_id: str | None = None) -> dict[str, Any]:
    """Input for ``reconstruct_and_train`` for one scan (a path relative to the beamline dir)."""
    layout = SiteLayout.from_profile(profile)
    scan_name, scan_id = _scan_names(layout, scan, scan_id)
    return {
        "scan_id": scan_id,
        "beamline": {"collection_id": _collection(profile.beamline, "beamline"), "scan_path": _beamline_path(profile, layout, scan),
                     "transfer": _transfer(profile, layout, scan)},
        "scan": _reading(profile),
        "hpc": {
            **_hpc_scan(profile, layout, scan_name, scan_id),
            "registry_dir": _in_site(layout.hpc.root, layout.hpc.registry_dir),
            "staged_path": _on(profile.hpc, REGISTRY, STAGED),
            "corpus_path": _in_site(layout.hpc.root, layout.hpc.corpus_path),
        },
        "edge": _edge(profile, layout),
        "functions": _pick(_function_ids(profile), FUNCTION_NAMES),
        "policy": profile.policy.model_dump(mode="json"),
    }


def reconstruct_input(profile: Profile, scan: str | Path, *, scan_id: str | None = None) -> dict[str, Any]:
    """Input for ``reconstruct``: the product comes back to ``<beamline>/results/<scan id>``."""
    layout = SiteLayout.from_profile(profile)
    scan_name, scan_id = _scan_names(layout, scan, scan_id)
    return {
        "scan_id": scan_id,
        "beamline": {"collection_id": _collection(profile.beamline, "beamline"), "scan_path": _beamline_path(profile, layout, scan),
                     "results_path": _on(profile.beamline, RESULTS, scan_id), "transfer": _transfer(profile, layout, scan)},
        "scan": _reading(profile),
        "hpc": {**_hpc_scan(profile, layout, scan_name, scan_id), "output_path": _on(profile.hpc, PRODUCTS, scan_id)},
        "functions": _pick(_function_ids(profile), ("reconstruct",)),
        "policy": profile.policy.model_dump(mode="json", include=set(RECONSTRUCT_KNOBS)),
    }


def deploy_model_input(profile: Profile, version: str) -> dict[str, Any]:
    """Input for ``deploy_model``: push registry version ``version`` to the edge."""
    layout = SiteLayout.from_profile(profile)
    return {
        "version": safe_component(version, source="deploy_model input", field="version"),
        "hpc": {"collection_id": _collection(profile.hpc, "hpc"), "staged_path": _on(profile.hpc, REGISTRY, STAGED)},
        "edge": _edge(profile, layout),
        "functions": _pick(_function_ids(profile), ("activate",)),
    }


SCAN_FLOW_INPUTS = {"reconstruct_and_train": reconstruct_and_train_input, "reconstruct": reconstruct_input}


def scan_flow_input(profile: Profile, flow_name: str, scan: str | Path, *, scan_id: str | None = None) -> dict[str, Any] | None:
    """The input of bundled flow `flow_name` for one scan, or None for a flow we don't know."""
    builder = SCAN_FLOW_INPUTS.get(flow_name)
    return None if builder is None else builder(profile, scan, scan_id=scan_id)
