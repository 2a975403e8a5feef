"""Activation with a truthful answer: a staged model goes into the edge's model slot, and the
caller learns what the edge made of that exact file.

``activate_staged`` is what the flow's ``activate`` function runs on the edge endpoint:

1. it reads ``<edge>/staging/<version>/`` (``EdgeLayout``; the version must be a safe
   name) and checks the files against their manifest (sha256, stitching weight);
2. with an edge service running, it publishes the model into ``<edge>/model/`` and waits,
   at most `wait_s`, for the service's verdict on this sha256. A refusal raises
   ``ActivationRefused`` with the edge's reason (the service has already put its last good
   model back); no verdict in time raises ``ActivationTimeout``;
3. with no service running, it runs the service's own checks on the model here and
   publishes it only if they pass, so the next start serves it.

Either way a success means the model passed the edge's checks, and a failure says why.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ptychoflow.artifact import (
    ModelManifest, publish_from, verified_model_bytes, verified_probe, verified_stitch_weight,
)
from ptychoflow.errors import InputError, PtychoflowError
from ptychoflow.site import EdgeLayout
from ptychoflow_edge.statusfile import fetch_http_status, running_status

POLL_S = 0.2


class ActivationRefused(PtychoflowError):
    """The edge (or its checks, with no service running) refused the model."""


class ActivationTimeout(PtychoflowError):
    """A running edge service gave no verdict on the model in time."""


def activate_staged(layout: EdgeLayout, version: str, *, wait_s: float) -> dict[str, Any]:
    """Activate staged registry version `version` on the edge site `layout` (see module doc).

    Returns {version, sha256, activated_at, serving_version, verdict}.
    """
    staged = layout.staged_model_dir(version)
    manifest, blob = verified_model_bytes(staged)
    verified_stitch_weight(staged, manifest)  # a transfer that damaged a file is an InputError, not a verdict
    verified_probe(staged, manifest)
    if manifest.version != version:
        raise InputError(staged / "manifest.json", "version", f"is {manifest.version!r}, staged as {version!r}")
    status = running_status(layout.status_file)
    if status is None:
        _check_here(manifest, blob, staged)
    published = time.time()
    publish_from(layout.model_dir, staged, manifest)
    result = {"version": manifest.version, "sha256": manifest.sha256,
              "activated_at": datetime.now(timezone.utc).isoformat()}
    if status is None:
        return {**result, "serving_version": None,
                "verdict": "passed the edge's checks; no edge service running: it serves this model when it starts"}
    serving = _wait_for_verdict(layout, manifest, published, wait_s)
    return {**result, "serving_version": serving, "verdict": "serving"}


def _check_here(manifest: ModelManifest, blob: bytes, staged: Path) -> None:
    """The service's own checks (CPU provider), for when no service is there to run them."""
    from ptychoflow_edge.inference import ModelRejected, load_model

    try:
        load_model(manifest, blob, staged, providers=["CPUExecutionProvider"], intra_op_threads=1)
    except ModelRejected as exc:
        raise ActivationRefused(f"{staged}: model {manifest.version} (sha256 {manifest.sha256[:12]}…) fails the "
                                f"edge's checks, not activated: {exc}") from None


def _wait_for_verdict(layout: EdgeLayout, manifest: ModelManifest, published: float, wait_s: float) -> str:
    """The version now serving once the service serves this sha256; raises on its refusal."""
    deadline = time.monotonic() + wait_s
    last: dict[str, Any] | None = None
    while True:
        status = running_status(layout.status_file)
        if status is not None:
            last = (fetch_http_status(status["http_url"]) if status.get("http_url") else None) or status
            serving = last.get("model") or {}
            if serving.get("sha256") == manifest.sha256:
                return str(serving.get("version"))
            refusal = next((e for e in reversed(last.get("model_events", []))
                            if e.get("event") == "refused" and e.get("sha256") == manifest.sha256
                            and e.get("at", 0) >= published - 1), None)
            if refusal is not None:
                still = serving.get("version") or "no model"
                raise ActivationRefused(f"{layout.status_file}: model {manifest.version} (sha256 "
                                        f"{manifest.sha256[:12]}…) refused by the edge: {refusal.get('detail')}; "
                                        f"still serving {still}")
        if time.monotonic() >= deadline:
            break
        time.sleep(POLL_S)
    who = f"edge service pid {last.get('pid')}" if last else "the edge service (it stopped reporting)"
    raise ActivationTimeout(f"{layout.status_file}: {who} gave no verdict on model {manifest.version} (sha256 "
                            f"{manifest.sha256[:12]}…) within {wait_s:g} s; it stays in {layout.model_dir} and is "
                            "checked when the service next polls")
