"""Remote function (edge endpoint): activate a staged model for the running edge service.

Runs under Globus Compute (or the local pool), so every import is inside the body and the
arguments and result are small JSON values.
"""


def activate(staged_model_dir: str, edge_model_dir: str, wait_s: float = 15.0) -> dict:
    """Verify the staged model.onnx + manifest.json (and the stitching weight it names: sha256,
    shape), publish them atomically into `edge_model_dir` (manifest last: the commit point),
    then wait up to `wait_s` for a running service (found by its status file, beside the
    model dir in the edge site's layout) to serve it.

    Returns {version, sha256, activated_at, serving_version[, refused]}; serving_version is
    None when no service is running. Raises InputError if a staged file fails its checks.
    """
    import time
    from datetime import datetime, timezone
    from pathlib import Path

    from ptychoflow.artifact import MODEL_FILENAME, publish_model, stitch_weight_file, verified_model_bytes
    from ptychoflow.site import EdgeLayout
    from ptychoflow_edge.statusfile import fetch_http_status, running_status

    staged, target = Path(staged_model_dir), Path(edge_model_dir)
    manifest, _ = verified_model_bytes(staged)
    published = time.time()
    publish_model(target, staged / MODEL_FILENAME, manifest, stitch_weight_file(staged, manifest))
    activated_at = datetime.now(timezone.utc).isoformat()

    status_path = EdgeLayout(target.parent).status_file
    serving, refused = None, None
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        status = running_status(status_path)
        if status is None:
            break  # no service running: the model is in place for the next start
        status = (fetch_http_status(status["http_url"]) if status.get("http_url") else None) or status
        serving = (status.get("model") or {}).get("version")
        refusals = [e for e in status.get("model_events", [])
                    if e["event"] == "refused" and e["version"] == manifest.version and e["at"] >= published - 1]
        if serving == manifest.version or refusals:
            refused = refusals[-1]["detail"] if refusals and serving != manifest.version else None
            break
        time.sleep(0.2)
    result = {"version": manifest.version, "sha256": manifest.sha256, "activated_at": activated_at,
              "serving_version": serving}
    if refused:
        result["refused"] = refused
    return result
