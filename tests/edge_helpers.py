"""Helpers for the edge tests: tiny real ONNX models with known outputs, model publishing,
a running service wired to real ZeroMQ sockets, and a results-stream collector."""

from __future__ import annotations

import json
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import zmq

from engine_helpers import wait_until

from ptychoflow.artifact import ModelManifest, publish_model, read_manifest
from ptychoflow.fs import sha256_file
from ptychoflow.preprocess import PreprocessConfig
from ptychoflow.stream import FramePublisher
from ptychoflow_edge.config import EdgeConfig
from ptychoflow_edge.service import EdgeService

IR_VERSION = 9  # what every recent ONNX Runtime reads
OPSET = 17


def affine_model(size: int, scale: float = 1.0, offset: float = 0.0) -> bytes:
    """phase = scale * diffraction + offset, batch axis dynamic: an exactly predictable model."""
    from onnx import TensorProto, helper, numpy_helper

    shape = ["N", 1, size, size]
    graph = helper.make_graph(
        [helper.make_node("Mul", ["diffraction", "scale"], ["scaled"]),
         helper.make_node("Add", ["scaled", "offset"], ["phase"])],
        "affine",
        [helper.make_tensor_value_info("diffraction", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("phase", TensorProto.FLOAT, shape)],
        initializer=[numpy_helper.from_array(np.array(scale, np.float32), "scale"),
                     numpy_helper.from_array(np.array(offset, np.float32), "offset")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    return model.SerializeToString()


def constant_model(size: int, value: float) -> bytes:
    """Every output pixel equals `value` (NaN gives a model the finite-output check refuses)."""
    return affine_model(size, 0.0 if np.isfinite(value) else float("nan"), value)


def torch_convnet(size: int, channels: int = 8) -> bytes:
    """A tiny PtychoNN-like conv encoder/decoder exported by torch.onnx (legacy exporter)."""
    import io

    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, channels, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(channels, channels, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Upsample(scale_factor=2), torch.nn.Conv2d(channels, 1, 3, padding=1), torch.nn.Tanh(),
    ).eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # the legacy exporter warns; the dynamo one needs onnxscript
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net, (torch.zeros(1, 1, size, size),), buffer, dynamo=False, input_names=["diffraction"],
                          output_names=["phase"], dynamic_axes={"diffraction": {0: "N"}, "phase": {0: "N"}},
                          opset_version=OPSET)
    return buffer.getvalue()


def preprocessing(size: int = 64, **overrides: Any) -> PreprocessConfig:
    return PreprocessConfig(**{"crop": size, "transform": "sqrt", "scale": 10.0, **overrides})


def publish(model_dir: Path, blob: bytes, version: str, *, config: PreprocessConfig | None = None,
            stitch_weight: Path | None = None, probe: Path | None = None, probe_measured: bool = True) -> ModelManifest:
    """Stage `blob` and activate it in `model_dir` the way the flow does (publish_model)."""
    config = config or preprocessing()
    staged = model_dir.parent / f"staged-{version}.onnx"
    staged.parent.mkdir(parents=True, exist_ok=True)
    staged.write_bytes(blob)
    manifest = ModelManifest(version, sha256_file(staged), [1, config.output_size, config.output_size], config.to_json(),
                             probe_source=("true probe" if probe_measured else "probe guess") if probe else "",
                             probe_measured=probe_measured)
    publish_model(model_dir, staged, manifest, stitch_weight, probe)
    return read_manifest(model_dir)


def publish_wrong_sha(model_dir: Path, blob: bytes, version: str) -> None:
    """A model whose manifest's sha256 does not match the file (a corrupted transfer)."""
    config = preprocessing()
    (model_dir / "model.onnx").write_bytes(blob)
    manifest = ModelManifest(version, "0" * 64, [1, 64, 64], config.to_json())
    tmp = model_dir / ".manifest.tmp"
    tmp.write_text(json.dumps(manifest.to_json()))
    tmp.replace(model_dir / "manifest.json")


def wait_for(predicate: Callable[[], Any], timeout_s: float = 20.0, what: str = "condition") -> Any:
    return wait_until(predicate, timeout_s, what)


@contextmanager
def running_service(root: Path, **overrides: Any) -> Iterator[tuple[EdgeService, FramePublisher]]:
    """A started service subscribed to a fresh frame publisher (all ports picked by the OS)."""
    publisher = FramePublisher("tcp://127.0.0.1:*")
    settings = dict(path=root / "edge", stream_address=publisher.address, results_address="tcp://127.0.0.1:*",
                    http_port=0, http=False, model_poll_s=0.05, status_interval_s=0.2, intra_op_threads=1,
                    align_offsets=False)  # exact-arithmetic tests: plain weighted averaging
    settings.update(overrides)
    service = EdgeService(EdgeConfig(**settings))
    try:
        service.start()
        assert publisher.wait_for_subscribers(1, 10), "service never subscribed to the frame stream"
        yield service, publisher
    finally:
        service.stop()
        publisher.close()


class ResultsCollector:
    """Collects every message of the results stream in a thread."""

    def __init__(self, address: str) -> None:
        self.messages: list[tuple[dict[str, Any], np.ndarray | None]] = []
        self._sock = zmq.Context.instance().socket(zmq.SUB)
        self._sock.setsockopt(zmq.SUBSCRIBE, b"")
        self._sock.setsockopt(zmq.RCVHWM, 0)
        self._sock.connect(address)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        time.sleep(0.3)  # PUB/SUB slow joiner: let the subscription reach the publisher

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._sock.poll(50):
                continue
            parts = self._sock.recv_multipart()
            header = json.loads(parts[0])
            patch = None
            if len(parts) > 1:
                patch = np.frombuffer(parts[1], dtype=header["dtype"]).reshape(header["shape"])
            self.messages.append((header, patch))

    def results(self) -> list[tuple[dict[str, Any], np.ndarray]]:
        return [(h, p) for h, p in self.messages if h["type"] == "result"]

    def ended(self, scan_id: str) -> dict[str, Any] | None:
        return next((h for h, _ in self.messages if h["type"] == "end" and h["scan_id"] == scan_id), None)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()


def reference_mosaic(patches: np.ndarray, centres_px: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Independent weighted stitch on a canvas sized up front: (image, origin)."""
    n = patches.shape[-1]
    corners = np.rint(np.asarray(centres_px) - n / 2).astype(int)
    origin = corners.min(axis=0)
    shape = corners.max(axis=0) + n - origin
    num, den = np.zeros(shape), np.zeros(shape)
    for patch, (r, c) in zip(patches.astype(np.float64), corners - origin):
        num[r:r + n, c:c + n] += weight * patch
        den[r:r + n, c:c + n] += weight
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan), origin


def stream_frames(publisher: FramePublisher, scan_id: str, frames: np.ndarray, positions_m: np.ndarray,
                  pixel_size_m: float, *, rate_hz: float, on_index: Callable[[int], None] | None = None) -> None:
    """Send start, every frame at `rate_hz`, then end (what a detector does)."""
    publisher.send_start(scan_id, n_frames=len(frames), shape=list(frames.shape[1:]), dtype=frames.dtype.str,
                         pixel_size_m=pixel_size_m)
    t0 = time.perf_counter()
    for i, frame in enumerate(frames):
        delay = t0 + i / rate_hz - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        publisher.send_frame(scan_id, i, positions_m[i], frame)
        if on_index is not None:
            on_index(i)
    publisher.send_end(scan_id, len(frames))
