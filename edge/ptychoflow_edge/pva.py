"""Optional pvAccess input (EPICS areaDetector NTNDArray), for beamlines without ZeroMQ.

pvapy is imported only when a channel is configured (extra ``pva``). Each NTNDArray update
becomes the same decoded message the ZeroMQ receiver makes, so checks, counting and
backpressure are shared. Positions come from NDAttributes (``PositionY``/``PositionX``, in
metres); the scan is announced by a start message built from the first frame.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np

from ptychoflow.stream import END, FRAME, START, StreamMessage

log = logging.getLogger("ptychoflow.edge.pva")
POSITION_ATTRIBUTES = ("PositionY", "PositionX")


def pvapy_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("pvaccess") is not None


def ntnd_to_array(value: dict[str, Any]) -> np.ndarray:
    """The image of an NTNDArray (as ``PvObject.get()`` returns it) as a 2-D array."""
    union = value["value"]
    union = union[0] if isinstance(union, (list, tuple)) else union
    (data,) = union.values()  # e.g. {"ushortValue": [...]}
    dims = [int(d["size"]) for d in value["dimension"]]
    return np.asarray(data).reshape(dims[::-1])  # NTNDArray lists the fastest dimension first


def ntnd_attributes(value: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for attribute in value.get("attribute", []):
        v = attribute.get("value")
        out[attribute.get("name")] = v[0] if isinstance(v, (list, tuple)) else v
    return out


class PvaFrameSource:
    """Monitors one NTNDArray channel and submits frames of scan `scan_id`."""

    def __init__(self, channel: str, submit: Callable[[StreamMessage], None], *, scan_id: str = "pva",
                 pixel_size_m: float = 1.0) -> None:
        self.channel_name = channel
        self.scan_id = scan_id
        self.pixel_size_m = pixel_size_m
        self._submit = submit
        self._channel: Any = None
        self._started = False

    def start(self) -> "PvaFrameSource":
        try:
            import pvaccess
        except ImportError:
            raise RuntimeError("pvAccess input needs pvapy: pip install 'ptychoflow[pva]'") from None
        self._channel = pvaccess.Channel(self.channel_name)
        self._channel.subscribe("ptychoflow-edge", lambda pv: self.on_update(pv.get()))
        self._channel.startMonitor()
        log.info("pvAccess input: monitoring %s", self.channel_name)
        return self

    def on_update(self, value: dict[str, Any]) -> None:
        """Turn one NTNDArray update into start (first time) + frame messages."""
        frame = ntnd_to_array(value)
        attributes = ntnd_attributes(value)
        if not self._started:
            self._submit(StreamMessage({"type": START, "scan_id": self.scan_id, "shape": list(frame.shape),
                                        "dtype": frame.dtype.str, "pixel_size_m": self.pixel_size_m}))
            self._started = True
        position = [attributes.get(name, np.nan) for name in POSITION_ATTRIBUTES]
        header = {"type": FRAME, "scan_id": self.scan_id, "index": int(value.get("uniqueId", 0)),
                  "position": position, "shape": list(frame.shape), "dtype": frame.dtype.str}
        self._submit(StreamMessage(header, frame))

    def stop(self) -> None:
        if self._channel is not None:
            self._channel.stopMonitor()
            self._channel.unsubscribe("ptychoflow-edge")
        if self._started:
            self._submit(StreamMessage({"type": END, "scan_id": self.scan_id}))
