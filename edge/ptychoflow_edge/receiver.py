"""Receiver: a thread that subscribes to the frame stream and fills the bounded queue.

It checks every message before it reaches the inference loop, so malformed input is
counted here (by reason) and never reaches a mosaic or crashes anything downstream. Other
inputs (pvAccess) call `submit()` with the same decoded messages.

What a stream publisher can make the edge do is bounded here:
- a scan id names mosaic files, so it must be a safe name (``ptychoflow.names``);
- a frame must have the dtype and shape its scan's start message declared, finite,
  non-negative counts and a finite position;
- a scan's positions may span only what ``ScanLimits.max_scan_mb`` of mosaic memory holds;
- at most ``ScanLimits.max_open_scans`` scans are open at once. To make room for a new scan
  the longest-idle open scan is closed (saved, marked incomplete), but only one that has
  received no frame for ``ScanLimits.scan_idle_s``: a scan still receiving frames is never
  dropped; when every open scan is live, the new start is refused and counted.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import zmq

from ptychoflow.errors import InputError
from ptychoflow.names import printable, safe_component
from ptychoflow.stream import END, START, FrameSubscriber, MalformedMessage, StreamMessage
from ptychoflow_edge.frames import ControlItem, FrameItem, FrameQueue
from ptychoflow_edge.metrics import EdgeMetrics
from ptychoflow_edge.ratelimit import RateLimitedLog

log = logging.getLogger("ptychoflow.edge.receiver")
MOSAIC_BYTES_PER_PIXEL = 16  # the weighted sum and the weight sum, float64 each (ptychoflow.stitch.Mosaic)
REAL_KINDS = "uif"


class Invalid(Exception):
    """A decodable message that breaks the protocol; `reason` is a short metrics label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class ScanLimits:
    """How much one stream may make the edge hold (the profile's ``[edge]`` settings)."""

    max_open_scans: int = 8
    scan_idle_s: float = 30.0
    max_scan_mb: float = 256.0

    @property
    def max_scan_pixels(self) -> int:
        return int(self.max_scan_mb * 2**20 / MOSAIC_BYTES_PER_PIXEL)


class OpenScan:
    """What the receiver knows of a scan between its start and end messages."""

    def __init__(self, header: dict[str, Any], shape: tuple[int, ...], dtype: np.dtype | None,
                 pixel_size_m: float) -> None:
        self.header = header
        self.shape = shape
        self.dtype = dtype  # None until the first frame when the start message declares none
        self.pixel_size_m = pixel_size_m
        self.last_seen = time.monotonic()
        self.lo: np.ndarray | None = None  # accepted probe centres' bounding box, object pixels
        self.hi: np.ndarray | None = None

    def mosaic_pixels(self, centre: np.ndarray) -> float:
        """Pixels the mosaic would cover with a patch at `centre` added (a patch is at most a
        frame); inf or NaN for positions beyond any pixel grid."""
        lo = centre if self.lo is None else np.minimum(self.lo, centre)
        hi = centre if self.hi is None else np.maximum(self.hi, centre)
        extent = hi - lo + max(self.shape) + 1
        return float(extent[0] * extent[1])

    def accept(self, centre: np.ndarray, dtype: np.dtype) -> None:
        self.lo = centre if self.lo is None else np.minimum(self.lo, centre)
        self.hi = centre if self.hi is None else np.maximum(self.hi, centre)
        self.dtype = dtype
        self.last_seen = time.monotonic()


class Receiver:
    def __init__(self, address: str | None, queue: FrameQueue, metrics: EdgeMetrics,
                 limits: ScanLimits | None = None) -> None:
        self.address = address
        self.limits = limits or ScanLimits()
        self._queue = queue
        self._metrics = metrics
        self._open: dict[str, OpenScan] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # ZeroMQ and pvAccess threads may both submit
        self._log = RateLimitedLog(log)

    # -- checks -------------------------------------------------------------------------
    def _scan_id(self, header: dict[str, Any]) -> str:
        try:
            return safe_component(header.get("scan_id"), source="frame stream", field="scan_id")
        except InputError as exc:
            raise Invalid("scan_id", exc.problem) from None

    def _check_start(self, header: dict[str, Any]) -> OpenScan:
        scan_id = self._scan_id(header)
        try:
            shape = tuple(int(s) for s in header["shape"])
            pixel = float(header["pixel_size_m"])
            dtype = np.dtype(header["dtype"]) if "dtype" in header else None
        except KeyError as exc:
            raise Invalid("fields", f"start of {scan_id}: missing {exc.args[0]}") from None
        except (TypeError, ValueError, OverflowError) as exc:
            raise Invalid("fields", f"start of {scan_id}: a bad field: {exc}") from None
        if len(shape) != 2 or min(shape) < 1 or not (pixel > 0 and math.isfinite(pixel)):
            raise Invalid("fields", f"start of {scan_id}: shape {list(shape)} / pixel_size_m {pixel} unusable")
        if dtype is not None and dtype.kind not in REAL_KINDS:
            raise Invalid("dtype", f"start of {scan_id}: frames of dtype {dtype} are not counts")
        if (shape[0] + 1) * (shape[1] + 1) > self.limits.max_scan_pixels:
            raise Invalid("size", f"start of {scan_id}: {list(shape)} frames exceed the scan memory bound "
                                  f"({self.limits.max_scan_mb:g} MB, edge.max_scan_mb)")
        return OpenScan(header, shape, dtype, pixel)

    def _check_frame(self, message: StreamMessage) -> FrameItem:
        header, frame = message.header, message.frame
        scan_id = self._scan_id(header)
        scan = self._open.get(scan_id)
        if scan is None:
            raise Invalid("unknown_scan", f"frame {printable(header.get('index'))} of scan {scan_id}: "
                                          "no open scan (start missed or scan ended)")
        if frame.dtype.kind not in REAL_KINDS:
            raise Invalid("dtype", f"frame dtype {frame.dtype} is not counts")
        if scan.dtype is not None and frame.dtype != scan.dtype:
            raise Invalid("dtype", f"frame dtype {frame.dtype} differs from the scan's {scan.dtype}")
        if frame.shape != scan.shape:
            raise Invalid("size", f"frame shape {list(frame.shape)} differs from the scan's {list(scan.shape)}")
        try:
            position = np.array([float(header["position"][0]), float(header["position"][1])])
            index = int(header["index"])
        except (TypeError, ValueError, IndexError, KeyError, OverflowError) as exc:
            raise Invalid("fields", f"bad position/index: {exc}") from None
        if len(header["position"]) != 2 or not np.isfinite(position).all():
            raise Invalid("fields", f"position {printable(header['position'])} is not two finite numbers")
        if frame.dtype.kind == "f" and not np.isfinite(frame).all():
            raise Invalid("nonfinite", f"frame {index} of {scan_id} has NaN or infinite counts")
        if frame.dtype.kind != "u" and (frame < 0).any():
            raise Invalid("negative", f"frame {index} of {scan_id} has negative counts")
        with np.errstate(over="ignore", invalid="ignore"):
            centre = np.rint(position / scan.pixel_size_m)
            pixels = scan.mosaic_pixels(centre)
        if not pixels <= self.limits.max_scan_pixels:
            raise Invalid("position_span", f"frame {index} of {scan_id} at {position.tolist()} m would make the "
                                           f"mosaic {pixels:.3g} px (bound {self.limits.max_scan_pixels}, edge.max_scan_mb)")
        scan.accept(centre, frame.dtype)
        return FrameItem(scan_id, index, (float(position[0]), float(position[1])), frame)

    # -- intake -------------------------------------------------------------------------
    def submit(self, message: StreamMessage) -> None:
        """Check one decoded message and queue it; anything wrong is counted, never raised."""
        try:
            with self._lock:
                if message.kind == START:
                    self._start(message.header)
                elif message.kind == END:
                    scan_id = self._scan_id(message.header)
                    if self._open.pop(scan_id, None) is None:
                        raise Invalid("unknown_scan", f"end of scan {scan_id} that is not open")
                    self._queue.put_control(ControlItem(END, message.header))
                else:
                    item = self._check_frame(message)
                    self._metrics.received()
                    if not self._queue.put_frame(item):
                        self._metrics.dropped("queue_full")
                        self._log.warning("dropped", "queue full (%d frames): dropped frame %d of %s",
                                          self._queue.capacity, item.index, item.scan_id)
        except Invalid as exc:
            self._reject(exc.reason, str(exc))
        except Exception as exc:  # a check that trips on input nobody foresaw: counted, never fatal
            self._reject("unexpected", f"{type(exc).__name__}: {exc}")

    def _start(self, header: dict[str, Any]) -> None:
        scan = self._check_start(header)
        scan_id = str(header["scan_id"])
        if scan_id not in self._open and len(self._open) >= self.limits.max_open_scans:
            self._make_room(scan_id)
        if not self._queue.put_control(ControlItem(START, header)):
            raise Invalid("control_overflow", f"start of {scan_id}: control queue full")
        self._open[scan_id] = scan

    def _make_room(self, scan_id: str) -> None:
        """Close the longest-idle open scan; refuse `scan_id` if every open scan is live."""
        idle_for, oldest = max((time.monotonic() - s.last_seen, name) for name, s in self._open.items())
        if idle_for < self.limits.scan_idle_s:
            raise Invalid("too_many_scans", f"start of {scan_id}: {len(self._open)} scans are open and all "
                                            f"received frames in the last {self.limits.scan_idle_s:g} s "
                                            "(edge.max_open_scans)")
        del self._open[oldest]
        self._log.warning("idle", "closed scan %s (no frame for %.0f s) to open %s", oldest, idle_for, scan_id)
        self._queue.put_control(ControlItem(END, {"type": END, "scan_id": oldest, "incomplete": True,
                                                  "reason": f"no frame for {idle_for:.0f} s"}))

    def _reject(self, reason: str, detail: str) -> None:
        self._metrics.malformed(reason)
        self._log.warning(f"malformed:{reason}", "malformed message (%s): %s", reason, printable(detail))

    @property
    def open_scans(self) -> list[str]:
        with self._lock:
            return list(self._open)

    def receive(self, parts: list[Any]) -> None:
        """Decode raw multipart parts (from ZeroMQ) and submit them."""
        from ptychoflow.stream import decode

        try:
            message = decode(parts)
        except MalformedMessage as exc:
            self._reject("decode", str(exc))
            return
        except Exception as exc:  # a decoder bug must not kill the receiver
            self._reject("decode", f"{type(exc).__name__}: {exc}")
            return
        self.submit(message)

    # -- thread -------------------------------------------------------------------------
    def start(self) -> None:
        """Connect here, so a bad address fails the start; the socket then moves to the thread."""
        if self.address is None:
            return
        # No ZMQ_MAXMSGSIZE: libzmq drops the connection of a peer that exceeds it and the SUB
        # socket does not reconnect, so one oversized message would end the stream for good.
        subscriber = FrameSubscriber(self.address)
        self._thread = threading.Thread(target=self._run, args=(subscriber,), name="edge-receiver", daemon=True)
        self._thread.start()

    def _run(self, subscriber: FrameSubscriber) -> None:
        sock = subscriber.socket
        try:
            while not self._stop.is_set():
                if not sock.poll(100, zmq.POLLIN):
                    continue
                started = time.perf_counter()
                while True:  # drain what is there before polling again
                    try:
                        parts = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    self.receive(parts)
                self._metrics.stage("receive", time.perf_counter() - started)
        finally:
            subscriber.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
