"""Receiver: a thread that subscribes to the frame stream and fills the bounded queue.

It checks every message before it reaches the inference loop, so malformed input is
counted here and never crashes anything downstream. Other inputs (pvAccess) call
`submit()` with the same decoded messages.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from typing import Any

import zmq

from ptychoflow.stream import END, START, FrameSubscriber, MalformedMessage, StreamMessage
from ptychoflow_edge.frames import ControlItem, FrameItem, FrameQueue
from ptychoflow_edge.metrics import EdgeMetrics
from ptychoflow_edge.ratelimit import RateLimitedLog

log = logging.getLogger("ptychoflow.edge.receiver")
REMEMBERED_SCANS = 64


class Invalid(Exception):
    """A decodable message that breaks the protocol; `reason` is a short metrics label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class Receiver:
    def __init__(self, address: str | None, queue: FrameQueue, metrics: EdgeMetrics) -> None:
        self.address = address
        self._queue = queue
        self._metrics = metrics
        self._scans: OrderedDict[str, dict[str, Any]] = OrderedDict()  # start headers of recent scans
        self._closed: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._log = RateLimitedLog(log)

    # -- checks -------------------------------------------------------------------------
    def _check_start(self, header: dict[str, Any]) -> None:
        try:
            shape = [int(s) for s in header["shape"]]
            pixel = float(header["pixel_size_m"])
            str(header["scan_id"])
        except KeyError as exc:
            raise Invalid("fields", f"start message missing {exc.args[0]}") from None
        except (TypeError, ValueError) as exc:
            raise Invalid("fields", f"start message has a bad field: {exc}") from None
        if len(shape) != 2 or not (pixel > 0 and math.isfinite(pixel)):
            raise Invalid("fields", f"start message: shape {shape} / pixel_size_m {pixel} unusable")

    def _check_frame(self, message: StreamMessage) -> FrameItem:
        header, frame = message.header, message.frame
        scan_id = str(header["scan_id"])
        start = self._scans.get(scan_id)
        if start is None or scan_id in self._closed:
            raise Invalid("unknown_scan", f"frame {header.get('index')} of scan {scan_id!r}: no open scan (start missed or scan ended)")
        if frame.dtype.kind not in "uif":
            raise Invalid("dtype", f"frame dtype {frame.dtype} is not numeric")
        if list(frame.shape) != [int(s) for s in start["shape"]]:
            raise Invalid("size", f"frame shape {list(frame.shape)} differs from the scan's {start['shape']}")
        try:
            position = (float(header["position"][0]), float(header["position"][1]))
            index = int(header["index"])
        except (TypeError, ValueError, IndexError, KeyError) as exc:
            raise Invalid("fields", f"bad position/index: {exc}") from None
        if len(header["position"]) != 2 or not all(map(math.isfinite, position)):
            raise Invalid("fields", f"position {header['position']} is not two finite numbers")
        return FrameItem(scan_id, index, position, frame)

    # -- intake -------------------------------------------------------------------------
    def submit(self, message: StreamMessage) -> None:
        """Check one decoded message and queue it; anything wrong is counted, never raised."""
        try:
            if message.kind == START:
                self._check_start(message.header)
                self._remember(message.header)
                if not self._queue.put_control(ControlItem(START, message.header)):
                    self._metrics.malformed("control_overflow")
            elif message.kind == END:
                scan_id = str(message.header.get("scan_id", ""))
                if scan_id not in self._scans:
                    raise Invalid("unknown_scan", f"end of scan {scan_id!r} that never started")
                self._closed.add(scan_id)
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

    def _reject(self, reason: str, detail: str) -> None:
        self._metrics.malformed(reason)
        self._log.warning(f"malformed:{reason}", "malformed message (%s): %s", reason, detail)

    def _remember(self, header: dict[str, Any]) -> None:
        scan_id = str(header["scan_id"])
        with self._lock:
            self._scans[scan_id] = header
            self._scans.move_to_end(scan_id)
            self._closed.discard(scan_id)
            while len(self._scans) > REMEMBERED_SCANS:
                old, _ = self._scans.popitem(last=False)
                self._closed.discard(old)

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
