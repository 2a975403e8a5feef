"""Where everything lives: one layout, derived from the profile, that every part asks.

A deployment has three sites (beamline, hpc, edge) and a state directory. Each fact about a
path is written here once: the flows' inputs, the remote functions' defaults, the CLI, the
demo, the dashboard and the edge service all ask this module. Paths below a site are the same
on disk and on its Globus collection, below the site's ``collection_base_path`` (the site
directory as the collection shows it): ``collection_path``.

  beamline: <scan file>   results/<scan id>/ (products sent back by the reconstruct flow)
  hpc:   scans/<scan file>   products/<scan id>/   registry/ (+ registry/staged/<version>/)
         corpus/corpus.h5
  edge:  staging/<version>/  model/  model-last-good/  mosaics/  edge-status.json

Names that come from data go through ``ptychoflow.names.safe_component`` first. The remote
functions receive a site's root (the profile's path, as the compute endpoint sees it) and
paths relative to it, resolved by ``site_root`` and ``names.inside``: an absolute path or an
escape in a flow input is refused, never written to.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from ptychoflow.errors import InputError
from ptychoflow.names import inside, printable, safe_component

if TYPE_CHECKING:
    from ptychoflow.profile import Profile

# Paths relative to a site root: the same on disk and on the site's collection.
RESULTS = "results"  # on the beamline: reconstruction products sent back
SCANS = "scans"
PRODUCTS = "products"
REGISTRY = "registry"
STAGED = "staged"  # below the registry: artifacts ready to ship
CORPUS = "corpus/corpus.h5"
EDGE_STAGING = "staging"
EDGE_MODEL = "model"
EDGE_LAST_GOOD = "model-last-good"  # the edge's copy of the last model it accepted
EDGE_MOSAICS = "mosaics"
EDGE_STATUS = "edge-status.json"


def collection_path(*parts: str, base: str = "/") -> str:
    """A path on a site's collection, as Globus Transfer wants it: ``<base>/products/scan_0001``.

    ``base`` is the site's ``collection_base_path``: ``/`` for a collection rooted at the
    site directory, the directory's full path for a mapped collection rooted at ``/``.
    """
    return str(PurePosixPath("/", base.lstrip("/"), *parts))


@dataclass(frozen=True)
class HpcLayout:
    root: Path

    @property
    def scans_dir(self) -> Path:
        return self.root / SCANS

    def scan_file(self, scan_name: str) -> Path:
        return self.scans_dir / safe_component(scan_name, source=self.root, field="scan file name")

    def products_dir(self, scan_id: str) -> Path:
        return self.root / PRODUCTS / safe_component(scan_id, source=self.root, field="scan_id")

    @property
    def registry_dir(self) -> Path:
        return self.root / REGISTRY

    @property
    def corpus_path(self) -> Path:
        return self.root / CORPUS


def site_root(root: object, *, source: str | Path, field: str = "site_root") -> Path:
    """A site's root as a remote function receives it (the profile's path for that site): an
    absolute path to an existing directory. Paths inside it go through ``site_path``."""
    if not isinstance(root, (str, Path)) or not str(root):
        raise InputError(source, field, f"must be a directory path, got {printable(root)!r}")
    text = str(root)
    if "\x00" in text:
        raise InputError(source, field, "contains a NUL byte")
    path = Path(text)
    if not path.is_absolute():
        raise InputError(source, field, f"{printable(text)} is relative; the site root must be absolute")
    if not path.is_dir():
        raise InputError(source, field, f"{printable(text)} is not a directory on this endpoint")
    return path.resolve()


def site_path(root: Path, relative: object, *, source: str | Path, field: str) -> Path:
    """`relative` (a path from a flow input) inside the site `root`; absolute paths and escapes
    (``..``, symlinks leading out) are refused with one line."""
    if not isinstance(relative, (str, Path)) or not str(relative):
        raise InputError(source, field, f"must be a path relative to {root}, got {printable(relative)!r}")
    return inside(root, relative, source=source, field=field)


def site_arguments(root: object, arguments: dict[str, Any], *, source: str,
                   required: tuple[str, ...] = ()) -> tuple[Path, dict[str, Any]]:
    """How a remote function reads its keyword arguments: (the checked site root, `arguments`
    with every path argument (a name ending in ``_dir`` or ``_path``; None only where optional,
    i.e. not in `required`) and every list of paths (``_dirs``, ``_paths``) resolved inside
    it). Any absolute path or escape is one InputError naming `source` and the argument."""
    checked = site_root(root, source=source)

    def resolved(name: str, value: Any) -> Any:
        if name.endswith(("_dir", "_path")) and (value is not None or name in required):
            return site_path(checked, value, source=source, field=name)
        if name.endswith(("_dirs", "_paths")):
            if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
                raise InputError(source, name, f"expected a list of paths, got {type(value).__name__}")
            return [site_path(checked, item, source=source, field=f"{name}[{k}]") for k, item in enumerate(value)]
        return value

    return checked, {name: resolved(name, value) for name, value in arguments.items()}


def staged_dir(registry_dir: str | Path, version: str) -> Path:
    """Where a registry version's edge artifact is staged before it ships."""
    return Path(registry_dir) / STAGED / safe_component(version, source=registry_dir, field="version")


@dataclass(frozen=True)
class EdgeLayout:
    root: Path

    @property
    def staging_dir(self) -> Path:
        return self.root / EDGE_STAGING

    def staged_model_dir(self, version: str) -> Path:
        """Where the flow transfers registry version `version` before activating it."""
        return self.staging_dir / safe_component(version, source=self.root, field="version")

    @property
    def model_dir(self) -> Path:
        return self.root / EDGE_MODEL

    @property
    def last_good_dir(self) -> Path:
        return self.root / EDGE_LAST_GOOD

    @property
    def mosaics_dir(self) -> Path:
        return self.root / EDGE_MOSAICS

    @property
    def status_file(self) -> Path:
        return self.root / EDGE_STATUS


@dataclass(frozen=True)
class SiteLayout:
    """The whole deployment's paths (absolute, resolved against the profile's folder)."""

    beamline_root: Path
    hpc: HpcLayout
    edge: EdgeLayout
    state_dir: Path

    @classmethod
    def from_profile(cls, profile: Profile) -> SiteLayout:
        return cls(
            beamline_root=profile.resolve(profile.beamline.path),
            hpc=HpcLayout(profile.resolve(profile.hpc.path)),
            edge=EdgeLayout(profile.resolve(profile.edge.path)),
            state_dir=profile.state_path,
        )
