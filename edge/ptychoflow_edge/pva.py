"""pvAccess (EPICS) input and output, as at APS beamlines: the areaDetector way, with p4p.

Input: ``PvaFrameSource`` monitors one NTNDArray channel (an areaDetector PVA plugin, e.g.
``13SIM1:Pva1:Image``). Each update becomes the same decoded message the ZeroMQ receiver
makes, so checks, counting and backpressure are shared. Positions come from the frame's
NDAttributes (``PositionY``/``PositionX`` by default, scaled to metres), as an NDAttributes
file attaches motor readbacks. areaDetector sends no start or end of scan, so:

- a scan starts with the first frame, announced with the configured object pixel size;
- the detector's frame counter (``uniqueId``) going backwards (a new acquisition) ends the
  scan and starts the next one;
- frames missing from the counter's sequence (the monitor queue overflowed) are counted as
  dropped, reason ``pva_gap``.

Output: ``PvaPhaseServer`` serves the live phase mosaic of the scan being inferred as an
NTNDArray (float32, radians), so an EPICS display (Phoebus/CSS, ImageJ's EPICS plugin)
shows it beside the detector image. Updates are rate limited (the status loop posts what the
limit held back, so the last frames always show); a slow client never slows inference.

Configuration is EPICS's own: ``EPICS_PVA_ADDR_LIST`` and friends for the client,
``EPICS_PVAS_*`` for the server (read from the environment, as every EPICS tool does).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

import numpy as np

from ptychoflow.stream import END, FRAME, START, StreamMessage

log = logging.getLogger("ptychoflow.edge.pva")
POSITION_ATTRIBUTES = ("PositionY", "PositionX")
MONITOR_QUEUE = 1000  # updates buffered per monitor (about 64 MB of 128x128 float32 frames)
INSTALL_HINT = "pvAccess needs p4p: pip install 'ptychoflow[pva]'"


def p4p_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("p4p") is not None


def ntnd_to_array(value: dict[str, Any]) -> np.ndarray | None:
    """The image of an NTNDArray as a 2-D array; None for an update that carries no image.

    Takes the structure as p4p's ``Value.todict()`` gives it (the union already unpacked) or
    as pvapy's ``PvObject.get()`` does (``{"ushortValue": [...]}``).
    """
    union = value.get("value")
    if isinstance(union, (list, tuple)) and union and isinstance(union[0], dict):
        union = union[0]
    if isinstance(union, dict):
        union = next(iter(union.values()), None)
    if union is None:
        return None
    data = np.asarray(union)
    if data.size == 0:
        return None
    codec = value.get("codec") or {}
    if isinstance(codec, dict) and codec.get("name"):
        raise ValueError(f"compressed NTNDArray (codec {codec['name']!r}): turn compression off in the PVA plugin")
    dims = [int(d["size"]) for d in value.get("dimension", [])]
    if len(dims) != 2 or dims[0] * dims[1] != data.size:
        raise ValueError(f"NTNDArray dimensions {dims} do not describe a 2-D image of {data.size} values")
    return data.reshape(dims[::-1])  # NTNDArray lists the fastest-varying dimension first


def ntnd_attributes(value: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for attribute in value.get("attribute", []) or []:
        v = attribute.get("value")
        if isinstance(v, dict):  # pvapy: {"doubleValue": 1.0}
            v = next(iter(v.values()), None)
        out[attribute.get("name")] = v[0] if isinstance(v, (list, tuple)) and v else v
    return out


class PvaFrameSource:
    """Monitors one NTNDArray channel and submits start/frame/end messages."""

    def __init__(self, channel: str, submit: Callable[[StreamMessage], None], *, pixel_size_m: float,
                 scan_prefix: str = "pva", position_attributes: tuple[str, str] = POSITION_ATTRIBUTES,
                 position_scale: float = 1.0, on_gap: Callable[[int], None] | None = None,
                 on_error: Callable[[str], None] | None = None) -> None:
        self.channel_name = channel
        self.pixel_size_m = pixel_size_m
        self.scan_prefix = scan_prefix
        self.position_attributes = position_attributes
        self.position_scale = position_scale
        self._submit = submit
        self._on_gap = on_gap or (lambda n: None)
        self._on_error = on_error or (lambda reason: None)
        self._context: Any = None
        self._subscription: Any = None
        self._lock = threading.Lock()
        self.scan_id: str | None = None
        self.scans_started = 0
        self.connected = False
        self._last_id: int | None = None

    def start(self) -> "PvaFrameSource":
        try:
            from p4p.client.thread import Context
        except ImportError:
            raise RuntimeError(INSTALL_HINT) from None
        self._context = Context("pva", nt=False)
        # A deep monitor queue on both ends rides out bursts (the default holds a handful of
        # updates and squashes the rest); whatever is still lost shows up as a uniqueId gap.
        self._subscription = self._context.monitor(self.channel_name, self._on_value, notify_disconnect=True,
                                                   request=f"record[queueSize={MONITOR_QUEUE}]field()")
        log.info("pvAccess input: monitoring %s", self.channel_name)
        return self

    def _on_value(self, value: Any) -> None:
        if isinstance(value, Exception):  # Disconnected, RemoteError, Cancelled
            if self.connected:
                log.warning("pvAccess input %s: %s", self.channel_name, type(value).__name__)
            self.connected = False
            return
        self.connected = True
        try:
            self.on_update(value.todict())
        except Exception as exc:  # a strange update must never kill the monitor thread
            self._on_error("pva")
            log.warning("pvAccess input %s: update dropped: %s", self.channel_name, exc)

    def on_update(self, value: dict[str, Any]) -> None:
        """Turn one NTNDArray update into messages: start (new scan), frame."""
        frame = ntnd_to_array(value)
        if frame is None:
            return  # the record's initial, empty value
        unique_id = int(value.get("uniqueId", 0))
        attributes = ntnd_attributes(value)
        with self._lock:
            if self.scan_id is None or (self._last_id is not None and unique_id <= self._last_id):
                self._end_scan()
                self._start_scan(frame)
            elif self._last_id is not None and unique_id > self._last_id + 1:
                self._on_gap(unique_id - self._last_id - 1)
            self._last_id = unique_id
            position = [_float(attributes.get(name)) * self.position_scale for name in self.position_attributes]
            header = {"type": FRAME, "scan_id": self.scan_id, "index": unique_id, "position": position,
                      "shape": list(frame.shape), "dtype": frame.dtype.str}
            self._submit(StreamMessage(header, frame))

    def _start_scan(self, frame: np.ndarray) -> None:
        self.scans_started += 1
        self.scan_id = f"{self.scan_prefix}-{time.strftime('%Y%m%dT%H%M%S')}-{self.scans_started:03d}"
        self._submit(StreamMessage({"type": START, "scan_id": self.scan_id, "shape": list(frame.shape),
                                    "dtype": frame.dtype.str, "pixel_size_m": self.pixel_size_m,
                                    "source": f"pva:{self.channel_name}"}))

    def _end_scan(self) -> None:
        if self.scan_id is not None:
            self._submit(StreamMessage({"type": END, "scan_id": self.scan_id}))

    def stop(self) -> None:
        if self._subscription is not None:
            self._subscription.close()
        if self._context is not None:
            self._context.close()
        with self._lock:
            self._end_scan()
            self.scan_id = None


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")  # the receiver counts a frame without a usable position


class PvaPhaseServer:
    """Serves the live phase mosaic as an NTNDArray PV, at most every `min_interval_s`."""

    def __init__(self, pv_name: str, *, min_interval_s: float = 0.5) -> None:
        try:
            from p4p.nt import NTNDArray
            from p4p.server import Server
            from p4p.server.thread import SharedPV
        except ImportError:
            raise RuntimeError(INSTALL_HINT) from None
        self.pv_name = pv_name
        self.min_interval_s = min_interval_s
        self._pv = SharedPV(nt=NTNDArray(), initial=np.zeros((1, 1), np.float32))
        self._server = Server(providers=[{pv_name: self._pv}])
        self._last = 0.0
        self._shown: tuple[str, int] | None = None  # (scan, frames) last posted
        self._lock = threading.Lock()
        self.updates = 0
        log.info("pvAccess output: live phase on %s", pv_name)

    def due(self, scan_id: str, frames: int) -> bool:
        """Whether an update now would be sent (lets the caller skip rendering the mosaic):
        the interval has passed and the scan has frames not shown yet."""
        return time.monotonic() - self._last >= self.min_interval_s and self._shown != (scan_id, frames)

    @property
    def port(self) -> int:
        return int(self._server.conf()["EPICS_PVAS_SERVER_PORT"])

    def publish(self, image: np.ndarray, *, scan_id: str, frames: int, pixel_size_m: float, force: bool = False) -> bool:
        """Post the mosaic (NaN where nothing was inferred yet is sent as 0); False if not due."""
        from p4p.nt.ndarray import ntndarray

        with self._lock:
            if not (force or self.due(scan_id, frames)):
                return False
            value = np.nan_to_num(np.asarray(image, np.float32), nan=0.0).view(ntndarray)
            value.attrib = {"ScanId": scan_id, "Frames": int(frames), "PixelSizeM": float(pixel_size_m)}
            self._pv.post(value, timestamp=time.time())
            self._last, self._shown = time.monotonic(), (scan_id, int(frames))
            self.updates += 1
        return True

    def close(self) -> None:
        self._server.stop()
