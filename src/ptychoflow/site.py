"""Where everything lives: one layout, derived from the profile, that every part asks.

A deployment has three sites (beamline, hpc, edge) and a state directory. Each fact about a
path is written here once: the flows' inputs, the remote functions' defaults, the CLI, the
demo, the dashboard and the edge service all ask this module. Paths below a site are the same
on disk and on its Globus collection, below the site's ``collection_base_path`` (the site
directory as the collection shows it): ``collection_path``.

  beamline: <scan file>   results/<scan id>/ (products sent back by the reconstruct flow)
  hpc:   scans/<scan file>   products/<scan id>/   registry/ (+ registry/staged/<version>/)
         corpus/corpus.h5
  edge:  staging/<version>/  model/  mosaics/  edge-status.json

Names that come from data go through ``ptychoflow.names.safe_component`` first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from ptychoflow.names import safe_component

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


def staged_dir(registry_dir: str | Path, version: str) -> Path:
    """Where a registry version's edge artifact is staged before it ships."""
    return Path(registry_dir) / STAGED / safe_component(version, source=registry_dir, field="version")


@dataclass(frozen=True)
class EdgeLayout:
    root: Path

    @property
    def staging_dir(self) -> Path:
        return self.root / EDGE_STAGING

    @property
    def model_dir(self) -> Path:
        return self.root / EDGE_MODEL

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
            state_dir=profile.resolve(profile.state_dir),
        )
