"""The results stream: per-frame phase patches on ZeroMQ PUB, in the frame-stream style.

Messages::

    [{"type": "start", "scan_id", ...the detector's start header}]
    [{"type": "result", "scan_id", "index", "position" (m), "position_px", "shape", "dtype",
      "model_version", "latency_s"}, <float32 patch bytes>]
    [{"type": "end", "scan_id", "n_frames", "inferred", "files": {"h5", "png"}}]

PUB never blocks the inference loop: a subscriber too slow for the high-water mark loses
results, not the edge its frame rate.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import zmq

RESULT = "result"


class ResultsPublisher:
    def __init__(self, address: str, *, hwm: int = 100_000, context: zmq.Context | None = None) -> None:
        self._sock = (context or zmq.Context.instance()).socket(zmq.PUB)
        self._sock.setsockopt(zmq.SNDHWM, hwm)
        self._sock.setsockopt(zmq.LINGER, 500)
        self._sock.bind(address)
        self.address = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)

    def control(self, header: dict[str, Any]) -> None:
        self._sock.send(json.dumps(header).encode())

    def results(self, scan_id: str, indices: list[int], positions_m: np.ndarray, positions_px: np.ndarray,
                patches: np.ndarray, version: str, latencies_s: np.ndarray) -> None:
        patches = np.ascontiguousarray(patches, dtype=np.float32)
        for i, index in enumerate(indices):
            header = {
                "type": RESULT, "scan_id": scan_id, "index": int(index),
                "position": [float(v) for v in positions_m[i]], "position_px": [float(v) for v in positions_px[i]],
                "shape": list(patches.shape[1:]), "dtype": patches.dtype.str,
                "model_version": version, "latency_s": float(latencies_s[i]),
            }
            self._sock.send_multipart([json.dumps(header).encode(), patches[i]], copy=False)

    def close(self) -> None:
        self._sock.close()
