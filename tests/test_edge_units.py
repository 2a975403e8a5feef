"""Pieces of the edge service on their own: queue, batcher, providers, model checks,
the pvAccess adapter, and the HTTP endpoints."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from edge_helpers import affine_model, preprocessing, publish, running_service, torch_convnet, wait_for
from ptychoflow.artifact import ModelManifest, SideFile
from ptychoflow.fs import sha256_file
from ptychoflow.preprocess import preprocess
from ptychoflow_edge.batcher import Batcher
from ptychoflow_edge.frames import ControlItem, FrameItem, FrameQueue
from ptychoflow_edge.inference import ModelRejected, best_providers, load_model


def _item(scan: str = "s", index: int = 0, shape=(4, 4)) -> FrameItem:
    return FrameItem(scan, index, (0.0, 0.0), np.zeros(shape, np.uint16))


def _manifest(blob: bytes, tmp_path, size: int = 64) -> ModelManifest:
    (tmp_path / "m.onnx").write_bytes(blob)
    return ModelManifest("t", sha256_file(tmp_path / "m.onnx"), [1, size, size], preprocessing(size).to_json())


def _ort_available() -> list[str]:
    import onnxruntime

    return onnxruntime.get_available_providers()


# -- queue and batcher --------------------------------------------------------------------
def test_queue_bounds_frames_not_controls():
    queue = FrameQueue(2)
    assert queue.put_frame(_item()) and queue.put_frame(_item())
    assert not queue.put_frame(_item())
    assert queue.put_control(ControlItem("end", {"scan_id": "s"}))
    assert queue.depth == 2 and len(queue) == 3
    assert queue.get(0) is not None and queue.depth == 1


def test_batcher_size_wait_and_boundaries():
    queue = FrameQueue(100)
    for i in range(5):
        queue.put_frame(_item(index=i))
    queue.put_control(ControlItem("end", {"scan_id": "s"}))
    queue.put_frame(_item("t", 0))
    queue.put_frame(_item("u", 0))
    batcher = Batcher(queue, size=3, max_wait_s=0.05)
    assert [f.index for f in batcher.next(1)] == [0, 1, 2]
    started = time.monotonic()
    assert [f.index for f in batcher.next(1)] == [3, 4]  # the control ends the batch early, no waiting
    assert time.monotonic() - started < 0.04
    assert isinstance(batcher.next(1), ControlItem)
    assert [f.scan_id for f in batcher.next(1)] == ["t"]  # another scan starts a new batch
    started = time.monotonic()
    assert [f.scan_id for f in batcher.next(1)] == ["u"]  # lone frame: waits max_wait, then goes
    assert 0.04 < time.monotonic() - started < 0.5
    assert batcher.next(0.01) is None


# -- providers and model checks -----------------------------------------------------------
def test_provider_preference(monkeypatch):
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"])
    assert best_providers() == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert best_providers(["CUDAExecutionProvider", "CPUExecutionProvider"]) == ["CUDAExecutionProvider",
                                                                                  "CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert best_providers(["TensorrtExecutionProvider"]) == ["CPUExecutionProvider"]


def test_torch_exported_convnet_loads_with_dynamic_batch(tmp_path):
    blob = torch_convnet(64)
    model = load_model(_manifest(blob, tmp_path), blob, tmp_path, providers=["CPUExecutionProvider"],
                       intra_op_threads=1)
    frames = np.random.default_rng(0).poisson(50, (5, 64, 64)).astype(np.uint32)
    phase = model.infer(model.prepare(frames))
    assert phase.shape == (5, 64, 64) and np.all(np.abs(phase) <= 1)
    assert model.providers[0] == "CPUExecutionProvider" and model.preprocess_backend == "numpy"


@pytest.mark.parametrize("case, reason", [
    ("shape", "input_shape"), ("preprocessing", "preprocessing is invalid"),
    ("weight missing", "manifest.json: stitch_weight: .*stitch_weight.npy is missing"),
    ("weight shape", r"stitch_weight.npy: shape: stitching weight is \[32, 32\], the model's patches are \[64, 64\]"),
    ("weight altered", "stitch_weight.npy: sha256"),
    ("weight negative", "stitch_weight.npy: values"),
])
def test_manifest_checks(tmp_path, case, reason):
    blob = affine_model(64)
    manifest = _manifest(blob, tmp_path)
    weight = np.ones((32, 32) if case == "weight shape" else (64, 64), np.float32)
    if case == "weight negative":
        weight[0, 0] = -1
    np.save(tmp_path / "stitch_weight.npy", weight)
    manifest.stitch_weight = SideFile("stitch_weight.npy", sha256_file(tmp_path / "stitch_weight.npy"))
    if case == "shape":
        manifest.input_shape = [1, 32, 32]
    elif case == "preprocessing":
        manifest.preprocessing = {"crop": 64, "no_such_option": 1}
    elif case == "weight missing":
        (tmp_path / "stitch_weight.npy").unlink()
    elif case == "weight altered":
        np.save(tmp_path / "stitch_weight.npy", weight * 2)
    with pytest.raises(ModelRejected, match=reason):
        load_model(manifest, blob, tmp_path, providers=["CPUExecutionProvider"], intra_op_threads=1)


@pytest.mark.gpu
@pytest.mark.parametrize("provider", ["CUDAExecutionProvider", "TensorrtExecutionProvider"])
def test_gpu_provider_serves(tmp_path, provider):
    if provider not in _ort_available():
        pytest.skip(f"{provider} not available in this onnxruntime build (CPU-only host; install onnxruntime-gpu)")
    blob = torch_convnet(64)
    model = load_model(_manifest(blob, tmp_path), blob, tmp_path, providers=best_providers([provider]),
                       intra_op_threads=1)
    assert model.providers[0] == provider


@pytest.mark.gpu
def test_cupy_preprocessing_matches_numpy():
    cupy = pytest.importorskip("cupy", reason="CuPy not installed (no GPU here): GPU preprocessing not testable")
    try:
        cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        pytest.skip(f"CuPy present but no CUDA device: {exc}")
    frames = np.random.default_rng(0).poisson(50, (4, 80, 80)).astype(np.uint32)
    config = preprocessing(64, bin_factor=2)
    np.testing.assert_allclose(preprocess(cupy.asarray(frames), config).get(), preprocess(frames, config), rtol=1e-6)


# -- HTTP -----------------------------------------------------------------------------------
def _get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read(), r.headers.get("content-type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), ""


def test_http_endpoints(tmp_path):
    with running_service(tmp_path, http=True) as (service, publisher):
        url = service.web.url
        assert url.startswith("http://127.0.0.1:")
        code, body, _ = _get(url + "/mosaic.png")
        assert code == 404
        publish(service.config.model_dir, affine_model(64), "v1")
        wait_for(lambda: service.models.current(), what="model")
        publisher.send_start("s1", n_frames=2, shape=[64, 64], dtype="<u2", pixel_size_m=1e-8)
        for i in range(2):
            publisher.send_frame("s1", i, (0.0, i * 1e-7), np.full((64, 64), 9, np.uint16))
        wait_for(lambda: service.metrics.counts["inferred"] == 2, what="2 frames")
        code, body, kind = _get(url + "/mosaic.png?scan=s1")
        assert code == 200 and kind == "image/png" and body[:4] == b"\x89PNG"
        status = json.loads(_get(url + "/status")[1])
        assert status["model"]["version"] == "v1" and status["current_scan"]["inferred"] == 2
        metrics = _get(url + "/metrics")[1].decode()
        for name in ("frames_received_total 2.0", "frames_inferred_total 2.0", "frame_latency_seconds_bucket",
                     'model_info{version="v1"} 1.0', "frames_per_second", "queue_depth"):
            assert name in metrics
        assert b"live phase mosaic" in _get(url + "/")[1]
