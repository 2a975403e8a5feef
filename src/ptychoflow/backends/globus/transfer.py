"""The few Transfer calls the CLI needs directly: is a collection there, how is a task doing."""

from __future__ import annotations

from typing import Any

import globus_sdk


def collection_status(client: globus_sdk.TransferClient, collection_id: str) -> dict[str, Any]:
    """A small, JSON-able summary of a collection (``get_endpoint``)."""
    doc = client.get_endpoint(collection_id).data
    return {
        "id": doc.get("id", collection_id),
        "display_name": doc.get("display_name") or doc.get("canonical_name") or "",
        "entity_type": doc.get("entity_type") or "",
        "owner": doc.get("owner_string") or "",
        "gcs_version": doc.get("gcs_version"),
        "high_assurance": bool(doc.get("high_assurance")),
        "status": "ok",
    }


def task_status(client: globus_sdk.TransferClient, task_id: str) -> dict[str, Any]:
    """Where a transfer task stands (``get_task``), with the fields operators look at."""
    doc = client.get_task(task_id).data
    keys = ("task_id", "status", "nice_status", "label", "files", "files_transferred", "bytes_transferred", "faults")
    return {key: doc.get(key) for key in keys}
