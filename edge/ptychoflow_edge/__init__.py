"""ptychoflow edge service: live PtychoNN inference on the detector's frame stream.

Start it with ``ptychoflow edge serve --profile P`` or in Python::

    service = EdgeService(EdgeConfig.from_profile(profile)).start()
    ...
    service.stop()

Other processes find it through ``<edge.path>/edge-status.json`` (see ``statusfile``).
Names are imported lazily so that reading the status file does not load ONNX Runtime.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "EdgeConfig": "ptychoflow_edge.config",
    "EdgeService": "ptychoflow_edge.service",
    "read_status": "ptychoflow_edge.statusfile",
    "running_status": "ptychoflow_edge.statusfile",
    "fetch_http_status": "ptychoflow_edge.statusfile",
    "wait_until_ready": "ptychoflow_edge.statusfile",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ptychoflow_edge' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
