"""The frame stream (ZeroMQ, as at COSMIC): multipart messages, header JSON + raw bytes.

Messages, in order, per scan::

    [{"type": "start", "scan_id", "n_frames", "shape", "dtype", "pixel_size_m", ...}]
    [{"type": "frame", "scan_id", "index", "position": [y, x] metres, "shape", "dtype"}, <bytes>]
    [{"type": "end", "scan_id", "n_frames"}]

The publisher binds an XPUB socket so it can see subscriptions arrive and wait for them:
PUB/SUB otherwise drops everything sent before a subscriber has joined ("slow joiner").
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import zmq

from ptychoflow.errors import PtychoflowError

START, FRAME, END = "start", "frame", "end"
REQUIRED_FRAME_FIELDS = ("scan_id", "index", "position", "shape", "dtype")


class MalformedMessage(ValueError):
    """A message on the stream that cannot be decoded into a frame."""


class StreamAddressError(PtychoflowError):
    """The stream cannot be bound (port in use, bad address): one line, not a ZMQError traceback."""


@dataclass
class StreamMessage:
    header: dict[str, Any]
    frame: np.ndarray | None = None

    @property
    def kind(self) -> str:
        return self.header.get("type", "")


def encode_frame(scan_id: str, index: int, position_m: tuple[float, float], frame: np.ndarray) -> list:
    header = {
        "type": FRAME,
        "scan_id": scan_id,
        "index": int(index),
        "position": [float(position_m[0]), float(position_m[1])],
        "shape": list(frame.shape),
        "dtype": frame.dtype.str,
    }
    return [json.dumps(header).encode(), np.ascontiguousarray(frame)]


def decode(parts: list[bytes | zmq.Frame]) -> StreamMessage:
    """Parse one multipart message; anything malformed raises MalformedMessage (never crashes)."""
    if not parts:
        raise MalformedMessage("empty message")
    try:
        header = json.loads(bytes(parts[0]))
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedMessage(f"header is not JSON: {exc}") from None
    if not isinstance(header, dict) or header.get("type") not in (START, FRAME, END):
        raise MalformedMessage(f"unknown message type: {header.get('type') if isinstance(header, dict) else header!r}")
    if header["type"] != FRAME:
        return StreamMessage(header)
    missing = [key for key in REQUIRED_FRAME_FIELDS if key not in header]
    if missing:
        raise MalformedMessage(f"frame header missing {', '.join(missing)}")
    if len(parts) != 2:
        raise MalformedMessage(f"frame message has {len(parts)} parts, expected 2")
    try:
        dtype = np.dtype(header["dtype"])
        shape = tuple(int(s) for s in header["shape"])
    except (TypeError, ValueError) as exc:
        raise MalformedMessage(f"bad shape/dtype: {exc}") from None
    payload = memoryview(parts[1].buffer if isinstance(parts[1], zmq.Frame) else parts[1])
    if len(shape) != 2 or payload.nbytes != dtype.itemsize * shape[0] * shape[1]:
        raise MalformedMessage(f"payload of {payload.nbytes} bytes does not match shape {shape} dtype {dtype}")
    frame = np.frombuffer(payload, dtype=dtype).reshape(shape)
    return StreamMessage(header, frame)


class FramePublisher:
    """Publishes frames; high-water mark large enough that a live subscriber loses nothing."""

    def __init__(self, address: str, *, hwm: int = 200_000, context: zmq.Context | None = None) -> None:
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.XPUB)
        self._sock.setsockopt(zmq.SNDHWM, hwm)
        self._sock.setsockopt(zmq.LINGER, 2000)
        self._sock.setsockopt(zmq.XPUB_VERBOSE, 1)
        try:
            self._sock.bind(address)
        except zmq.ZMQError as exc:
            self._sock.close()
            hint = "; is another beamline or demo publishing there?" if exc.errno == zmq.EADDRINUSE else ""
            raise StreamAddressError(f"{address}: cannot publish the frame stream: {exc}{hint}") from None
        self.address = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.subscribers = 0

    def _drain_subscriptions(self, timeout_ms: int) -> None:
        if self._sock.poll(timeout_ms, zmq.POLLIN):
            while True:
                try:
                    event = self._sock.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                if event and event[0] == 1:
                    self.subscribers += 1
                elif event and event[0] == 0:
                    self.subscribers = max(0, self.subscribers - 1)

    def wait_for_subscribers(self, count: int, timeout_s: float) -> bool:
        """Block until `count` subscribers have joined (or timeout); True if they did."""
        deadline = time.monotonic() + timeout_s
        while self.subscribers < count and time.monotonic() < deadline:
            self._drain_subscriptions(50)
        return self.subscribers >= count

    def send_start(self, scan_id: str, **meta: Any) -> None:
        self._sock.send_json({"type": START, "scan_id": scan_id, **meta})

    def send_frame(self, scan_id: str, index: int, position_m: tuple[float, float], frame: np.ndarray) -> None:
        self._sock.send_multipart(encode_frame(scan_id, index, position_m, frame), copy=False)

    def send_end(self, scan_id: str, n_frames: int) -> None:
        self._sock.send_json({"type": END, "scan_id": scan_id, "n_frames": int(n_frames)})

    def send_raw(self, parts: list[bytes]) -> None:
        """Send arbitrary parts (tests of malformed input)."""
        self._sock.send_multipart(parts)

    def close(self) -> None:
        self._sock.close()


class FrameSubscriber:
    """Receives stream messages; malformed ones raise MalformedMessage for the caller to count."""

    def __init__(self, address: str, *, hwm: int = 200_000, context: zmq.Context | None = None) -> None:
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.SUB)
        self._sock.setsockopt(zmq.RCVHWM, hwm)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.SUBSCRIBE, b"")
        self._sock.connect(address)

    def recv(self, timeout_s: float | None = None) -> StreamMessage | None:
        """Next message, or None on timeout."""
        if timeout_s is not None and not self._sock.poll(int(timeout_s * 1000), zmq.POLLIN):
            return None
        return decode(self._sock.recv_multipart(copy=False))

    @property
    def socket(self) -> zmq.Socket:
        return self._sock

    def close(self) -> None:
        self._sock.close()
