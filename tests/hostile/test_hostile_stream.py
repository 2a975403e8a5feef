"""The frame stream: anyone who can publish on the edge's ZeroMQ port sends these. Each is
counted under its reason and refused, the service stays up, and nothing is written outside
the edge site (the mosaics are named by scan id)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest

from edge_helpers import affine_model, constant_model, publish, running_service, wait_for
from hostile_support import Tree, counted, not_half_written
from ptychoflow.preprocess import preprocess
from ptychoflow_edge.mosaics import read_mosaic

PIXEL = 1e-8
SHAPE = [64, 64]
GOOD = np.full(SHAPE, 3, np.uint16)


def frame_header(scan_id: str = "live", **changes: object) -> dict:
    return {"type": "frame", "scan_id": scan_id, "index": 0, "position": [0.0, 0.0], "shape": SHAPE,
            "dtype": "<u2", **changes}


def start_header(scan_id: str, **changes: object) -> dict:
    return {"type": "start", "scan_id": scan_id, "n_frames": 10, "shape": SHAPE, "dtype": "<u2",
            "pixel_size_m": PIXEL, **changes}


def as_parts(header: object, payload: bytes | None = None) -> list[bytes]:
    parts = [json.dumps(header).encode()]
    return parts if payload is None else parts + [payload]


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    """One running service for every case: scan "live" open, a model serving."""
    root = tmp_path_factory.mktemp("stream")
    with running_service(root, max_open_scans=4, scan_idle_s=3600, max_scan_mb=4) as (service, publisher):
        publish(service.config.model_dir, constant_model(64, 1.0), "v1")
        wait_for(lambda: service.models.current(), what="model v1")
        publisher.send_start("live", n_frames=1000, shape=SHAPE, dtype="<u2", pixel_size_m=PIXEL)
        yield service, publisher, root


def send_and_count(edge, parts: list[bytes], reason: str) -> None:
    service, publisher, root = edge
    tree = Tree(root)
    before = dict(service.metrics.malformed_by_reason)
    total = service.metrics.counts["malformed"]
    publisher.send_raw(parts)
    wait_for(lambda: service.metrics.counts["malformed"] > total, timeout_s=10, what=f"a refusal ({reason})")
    received = service.metrics.counts["received"]
    publisher.send_frame("live", 1, (0.0, 0.0), GOOD)  # the service still takes good frames
    alive = bool(wait_for(lambda: service.metrics.counts["received"] > received, timeout_s=10, what="a good frame"))
    counted(before, dict(service.metrics.malformed_by_reason), reason, alive=alive)
    tree.contained(service.config.path)


RAW_CASES = {
    # undecodable
    "header not JSON": ([b"{not json", GOOD.tobytes()], "decode"),
    "empty header": ([b""], "decode"),
    "header is a list": ([b"[1, 2]"], "decode"),
    "unknown type": (as_parts({"type": "exec", "scan_id": "live"}), "decode"),
    "frame missing fields": (as_parts({"type": "frame", "scan_id": "live"}, GOOD.tobytes()), "decode"),
    "payload too short": (as_parts(frame_header(), GOOD.tobytes()[:-2]), "decode"),
    "payload too long": (as_parts(frame_header(), GOOD.tobytes() + b"xx"), "decode"),
    "three parts": (as_parts(frame_header(), GOOD.tobytes()) + [b"extra"], "decode"),
    "negative shape": (as_parts(frame_header(shape=[-64, -64]), GOOD.tobytes()), "decode"),
    "object dtype": (as_parts(frame_header(dtype="|O"), GOOD.tobytes()), "decode"),
    "unknown dtype": (as_parts(frame_header(dtype="zz9"), GOOD.tobytes()), "decode"),
    # start messages
    "start without shape": (as_parts({"type": "start", "scan_id": "s2", "pixel_size_m": PIXEL}), "fields"),
    "start without pixel size": (as_parts({"type": "start", "scan_id": "s2", "shape": SHAPE}), "fields"),
    "start pixel size 0": (as_parts(start_header("s2", pixel_size_m=0)), "fields"),
    "start pixel size NaN": ([json.dumps(start_header("s2", pixel_size_m=math.nan)).encode()], "fields"),
    "start pixel size negative": (as_parts(start_header("s2", pixel_size_m=-1e-8)), "fields"),
    "start shape 3-D": (as_parts(start_header("s2", shape=[4, 64, 64])), "fields"),
    "start shape text": (as_parts(start_header("s2", shape=["a", "b"])), "fields"),
    "start shape zero": (as_parts(start_header("s2", shape=[0, 64])), "fields"),
    "start frames bigger than the scan bound": (as_parts(start_header("s2", shape=[4096, 4096])), "size"),
    "start complex dtype": (as_parts(start_header("s2", dtype="<c8")), "dtype"),
    "start bool dtype": (as_parts(start_header("s2", dtype="|b1")), "dtype"),
    # scan ids that would choose a path or forge a log line
    "scan_id ../": (as_parts(start_header("../../acquisition/scan_0001")), "scan_id"),
    "scan_id absolute": (as_parts(start_header("/etc/cron.d/x")), "scan_id"),
    "scan_id newline": (as_parts(start_header("s\n2026-01-01 ERROR forged")), "scan_id"),
    "scan_id ANSI escape": (as_parts(start_header("\x1b[2J\x1b[31mred")), "scan_id"),
    "scan_id empty": (as_parts(start_header("")), "scan_id"),
    "scan_id number": (as_parts(start_header(7)), "scan_id"),
    "scan_id null": (as_parts(start_header(None)), "scan_id"),
    "scan_id hidden file": (as_parts(start_header(".bashrc")), "scan_id"),
    "scan_id too long": (as_parts(start_header("s" * 300)), "scan_id"),
    "frame scan_id ../": (as_parts(frame_header("../live"), GOOD.tobytes()), "scan_id"),
    "end scan_id ../": (as_parts({"type": "end", "scan_id": "../live"}), "scan_id"),
    # frames
    "frame of a scan never started": (as_parts(frame_header("ghost"), GOOD.tobytes()), "unknown_scan"),
    "end of a scan never started": (as_parts({"type": "end", "scan_id": "ghost"}), "unknown_scan"),
    "frame shape differs from the start": (as_parts(frame_header(shape=[32, 128]), GOOD.tobytes()), "size"),
    "frame larger than the scan memory bound": (as_parts(frame_header(shape=[1600, 1600]),
                                                         np.zeros((1600, 1600), np.uint16).tobytes()), "size"),
    "frame dtype differs from the start": (as_parts(frame_header(dtype="<i2"), GOOD.tobytes()), "dtype"),
    "complex frame": (as_parts(frame_header(dtype="<c8", shape=[16, 64]), GOOD.tobytes()), "dtype"),
    "bool frame": (as_parts(frame_header(dtype="|b1", shape=[64, 128]), GOOD.tobytes()), "dtype"),
    "position text": (as_parts(frame_header(position=["a", 1]), GOOD.tobytes()), "fields"),
    "position three numbers": (as_parts(frame_header(position=[0, 0, 0]), GOOD.tobytes()), "fields"),
    "position NaN": ([json.dumps(frame_header(position=[math.nan, 0])).encode(), GOOD.tobytes()], "fields"),
    "position infinite": ([json.dumps(frame_header(position=[0, math.inf])).encode(), GOOD.tobytes()], "fields"),
    "index text": (as_parts(frame_header(index="first"), GOOD.tobytes()), "fields"),
    "position 1 m away (span)": (as_parts(frame_header(position=[1.0, 0.0]), GOOD.tobytes()), "position_span"),
    "position 10,000 px away (span)": (as_parts(frame_header(position=[0.0, 1e4 * PIXEL]), GOOD.tobytes()),
                                        "position_span"),
}


@pytest.mark.parametrize("parts, reason", RAW_CASES.values(), ids=RAW_CASES.keys())
def test_malformed_message_is_counted_and_refused(edge, parts, reason):
    send_and_count(edge, parts, reason)


def _frame_parts(frame: np.ndarray) -> list[bytes]:
    return as_parts(frame_header(dtype=frame.dtype.str, shape=list(frame.shape)), frame.tobytes())


BAD_COUNTS = {
    "one NaN pixel": (np.float32, lambda f: f.__setitem__((10, 10), np.nan), "nonfinite"),
    "one +inf pixel": (np.float32, lambda f: f.__setitem__((0, 0), np.inf), "nonfinite"),
    "one -inf pixel": (np.float64, lambda f: f.__setitem__((5, 5), -np.inf), "nonfinite"),
    "negative float counts": (np.float32, lambda f: f.__setitem__((1, 1), -3.0), "negative"),
    "negative integer counts": (np.int16, lambda f: f.__setitem__((2, 2), -1), "negative"),
}


@pytest.fixture(scope="module")
def float_scan(edge):
    """A float32 scan (detectors that send corrected frames), open beside "live"."""
    service, publisher, _ = edge
    for dtype in (np.float32, np.float64, np.int16):
        name = f"typed-{np.dtype(dtype).name}"
        publisher.send_start(name, n_frames=10, shape=SHAPE, dtype=np.dtype(dtype).str, pixel_size_m=PIXEL)
    wait_for(lambda: len(service.receiver.open_scans) >= 4, what="typed scans open")


@pytest.mark.parametrize("dtype, spoil, reason", BAD_COUNTS.values(), ids=BAD_COUNTS.keys())
def test_bad_counts_are_counted_and_never_reach_a_mosaic(edge, float_scan, dtype, spoil, reason):
    frame = np.full(SHAPE, 3, dtype)
    spoil(frame)
    parts = as_parts(frame_header(f"typed-{np.dtype(dtype).name}", dtype=frame.dtype.str), frame.tobytes())
    send_and_count(edge, parts, reason)


def test_a_nan_frame_leaves_the_mosaic_finite(tmp_path):
    """The reported case: one NaN pixel used to turn most of a mosaic into NaN."""
    frames = np.full((9, 64, 64), 5.0, np.float32)
    frames[4, 30, 30] = np.nan
    positions = [(y * 8 * PIXEL, x * 8 * PIXEL) for y in range(3) for x in range(3)]
    with running_service(tmp_path) as (service, publisher):
        publish(service.config.model_dir, affine_model(64, 0.1), "v1")
        wait_for(lambda: service.models.current(), what="model")
        publisher.send_start("nan-scan", n_frames=9, shape=SHAPE, dtype="<f4", pixel_size_m=PIXEL)
        for i, (frame, position) in enumerate(zip(frames, positions)):
            publisher.send_frame("nan-scan", i, position, frame)
        publisher.send_end("nan-scan", 9)
        wait_for(lambda: (s := service.mosaics.get("nan-scan")) and s.ended, what="end of scan")
        assert service.metrics.malformed_by_reason == {"nonfinite": 1}
    image, attrs = read_mosaic(tmp_path / "edge" / "mosaics" / "nan-scan.h5")
    assert attrs["n_frames"] == 8
    lit = ~np.isnan(image)
    assert lit.sum() > 0.9 * image.size  # NaN only where no patch fell, not spread by the bad frame
    assert np.isfinite(image[lit]).all()


def nan_for_bright_frames(size: int) -> bytes:
    """phase = sqrt(4.5 - x): finite for the load check's inputs (0..4), NaN for brighter ones."""
    from onnx import TensorProto, helper, numpy_helper

    shape = ["N", 1, size, size]
    graph = helper.make_graph(
        [helper.make_node("Sub", ["limit", "diffraction"], ["room"]), helper.make_node("Sqrt", ["room"], ["phase"])],
        "nan_when_bright", [helper.make_tensor_value_info("diffraction", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("phase", TensorProto.FLOAT, shape)],
        initializer=[numpy_helper.from_array(np.array(4.5, np.float32), "limit")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model.SerializeToString()


def test_a_model_that_answers_nan_is_counted_and_never_stitched(tmp_path):
    from edge_helpers import preprocessing

    config = preprocessing()
    bright = np.full(SHAPE, 4000, np.uint16)
    assert preprocess(bright[None], config).min() > 4.5  # this frame makes the model answer NaN
    with running_service(tmp_path) as (service, publisher):
        publish(service.config.model_dir, nan_for_bright_frames(64), "v1")
        wait_for(lambda: service.models.current(), what="model")
        publisher.send_start("s", n_frames=4, shape=SHAPE, dtype="<u2", pixel_size_m=PIXEL)
        for i in range(4):
            publisher.send_frame("s", i, (0.0, i * 4 * PIXEL), bright if i == 2 else GOOD)
        publisher.send_end("s", 4)
        wait_for(lambda: (s := service.mosaics.get("s")) and s.ended, what="end of scan")
        assert service.metrics.dropped_by_reason == {"nonfinite_output": 1}
        assert service.mosaics.get("s").count == 3
    image, _ = read_mosaic(tmp_path / "edge" / "mosaics" / "s.h5")
    assert np.isfinite(image[~np.isnan(image)]).all() and (~np.isnan(image)).any()


def test_start_burst_never_evicts_a_live_scan(tmp_path):
    """The reported case: 70 start messages evicted a scan that was receiving frames."""
    with running_service(tmp_path) as (service, publisher):  # default bounds: 8 open scans, 30 s idle
        publish(service.config.model_dir, constant_model(64, 1.0), "v1")
        wait_for(lambda: service.models.current(), what="model")
        publisher.send_start("live", n_frames=80, shape=SHAPE, dtype="<u2", pixel_size_m=PIXEL)
        for i in range(70):
            publisher.send_frame("live", i, (0.0, i * PIXEL), GOOD)
            publisher.send_start(f"burst{i:02d}", n_frames=1, shape=SHAPE, dtype="<u2", pixel_size_m=PIXEL)
        publisher.send_end("live", 70)
        wait_for(lambda: (s := service.mosaics.get("live")) and s.ended, what="end of the live scan")
        refused = service.metrics.malformed_by_reason.get("too_many_scans", 0)
        assert service.mosaics.get("live").count == 70
        assert refused == 70 - 7  # 7 burst scans fit beside the live one; the rest are counted
        assert len(service.receiver.open_scans) == 7
    _, attrs = read_mosaic(tmp_path / "edge" / "mosaics" / "live.h5")
    assert attrs["complete"] and attrs["n_frames"] == 70


def test_an_idle_scan_makes_room_and_is_saved_incomplete(tmp_path):
    with running_service(tmp_path, max_open_scans=2, scan_idle_s=0.3) as (service, publisher):
        publish(service.config.model_dir, constant_model(64, 1.0), "v1")
        wait_for(lambda: service.models.current(), what="model")
        publisher.send_start("stale", n_frames=10, shape=SHAPE, dtype="<u2", pixel_size_m=PIXEL)
        publisher.send_frame("stale", 0, (0.0, 0.0), GOOD)
        publisher.send_start("other", n_frames=10, shape=SHAPE, dtype="<u2", pixel_size_m=PIXEL)
        time.sleep(0.5)
        publisher.send_frame("other", 0, (0.0, 0.0), GOOD)  # "other" is live again
        publisher.send_start("next", n_frames=10, shape=SHAPE, dtype="<u2", pixel_size_m=PIXEL)
        wait_for(lambda: (s := service.mosaics.get("stale")) and s.ended, what="the idle scan closed")
        assert sorted(service.receiver.open_scans) == ["next", "other"]
    _, attrs = read_mosaic(tmp_path / "edge" / "mosaics" / "stale.h5")
    not_half_written(not attrs["complete"], "an evicted scan must be saved marked incomplete")


def test_a_wide_position_span_is_refused_and_memory_stays_bounded(tmp_path):
    """The reported case: a 10,000 px span took 1.5 GB; the bound is edge.max_scan_mb."""
    with running_service(tmp_path, max_scan_mb=8) as (service, publisher):
        publish(service.config.model_dir, constant_model(64, 1.0), "v1")
        wait_for(lambda: service.models.current(), what="model")
        publisher.send_start("wide", n_frames=3, shape=SHAPE, dtype="<u2", pixel_size_m=PIXEL)
        publisher.send_frame("wide", 0, (0.0, 0.0), GOOD)
        publisher.send_frame("wide", 1, (0.0, 10_000 * PIXEL), GOOD)
        publisher.send_frame("wide", 2, (0.0, 100 * PIXEL), GOOD)
        publisher.send_end("wide", 3)
        wait_for(lambda: (s := service.mosaics.get("wide")) and s.ended, what="end of scan")
        assert service.metrics.malformed_by_reason == {"position_span": 1}
        image, _ = service.mosaics.get("wide").image()
    assert image.size * 16 <= 8 * 2**20 and image.shape[1] < 300


def test_mosaic_files_stay_in_the_mosaics_dir(tmp_path):
    """The reported case: a start with scan_id ../acquisition/scan_0001 overwrote a raw scan."""
    victim = tmp_path / "acquisition" / "scan_0001.h5"
    victim.parent.mkdir()
    victim.write_bytes(b"raw scan")
    tree = Tree(tmp_path)
    with running_service(tmp_path) as (service, publisher):
        publish(service.config.model_dir, constant_model(64, 1.0), "v1")
        wait_for(lambda: service.models.current(), what="model")
        for name in ("../../acquisition/scan_0001", str(victim.with_suffix("")), "ok"):
            publisher.send_start(name, n_frames=1, shape=SHAPE, dtype="<u2", pixel_size_m=PIXEL)
            publisher.send_frame(name, 0, (0.0, 0.0), GOOD)
            publisher.send_end(name, 1)
        wait_for(lambda: (s := service.mosaics.get("ok")) and s.ended, what="end of the good scan")
    assert victim.read_bytes() == b"raw scan"
    written = tree.contained(tmp_path / "edge")
    assert {p.name for p in written if p.parent.name == "mosaics"} == {"ok.h5", "ok.png"}
