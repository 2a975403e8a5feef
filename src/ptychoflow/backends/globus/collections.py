"""Which collections take a ``data_access`` consent, as Transfer itself describes them.

A flow that moves data through a Globus Connect Server v5 *mapped* collection needs the
user's (or the watcher client's) consent to ``<collection>/data_access`` beneath the
flow's Transfer scope. Guest collections, Globus Connect Personal and High Assurance
collections have no such scope: asking for it makes Globus Auth refuse the whole login
with "Unknown Scope". The rule is globus-cli's: a non-High-Assurance
``GCSv5_mapped_collection``. What Transfer answered for each collection is kept in
``<state_dir>/globus_collections.json`` so that error messages built while the network
or the credentials are failing still name the right collections.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ptychoflow.fs import JsonStateFile

MAPPED_COLLECTION = "GCSv5_mapped_collection"
STATE_FILENAME = "globus_collections.json"


def needs_data_access(doc: Mapping[str, Any]) -> bool:
    """True for a collection document (``get_endpoint``) that takes a data_access consent."""
    return doc.get("entity_type") == MAPPED_COLLECTION and doc.get("high_assurance") is False


class CollectionTypes:
    """``<state_dir>/globus_collections.json``: collection id -> entity type, HA flag, name."""

    def __init__(self, state_dir: Path) -> None:
        self.file = JsonStateFile(Path(state_dir) / STATE_FILENAME, "collection types")

    def record(self, collection_id: str, doc: Mapping[str, Any]) -> None:
        with self.file.updating() as known:
            known[collection_id] = {
                "entity_type": doc.get("entity_type") or "",
                "high_assurance": bool(doc.get("high_assurance")),
                "display_name": doc.get("display_name") or "",
                "checked": time.time(),
            }

    def known(self) -> dict[str, dict[str, Any]]:
        return self.file.load()

    def unknown(self, collection_ids: Iterable[str]) -> list[str]:
        known = self.known()
        return [c for c in dict.fromkeys(collection_ids) if c not in known]

    def data_access(self, collection_ids: Iterable[str]) -> list[str]:
        """The given collections known to take a data_access consent, in order."""
        known = self.known()
        return [c for c in dict.fromkeys(collection_ids) if c in known and needs_data_access(known[c])]
