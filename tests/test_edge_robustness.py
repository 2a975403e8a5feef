"""Malformed input is counted and logged, never fatal; backpressure drops are counted;
frames that arrive before any model wait in the bounded queue."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from edge_helpers import constant_model, publish, running_service, wait_for
from ptychoflow.errors import PtychoflowError
from ptychoflow_edge.mosaics import read_mosaic

PIXEL = 1e-8


def _start(publisher, scan_id: str, shape=(64, 64)) -> None:
    publisher.send_start(scan_id, n_frames=10, shape=list(shape), dtype="<u2", pixel_size_m=PIXEL)


def _frame(i: int) -> np.ndarray:
    return np.full((64, 64), i + 1, np.uint16)


def test_malformed_counted_service_keeps_going(tmp_path, caplog):
    good = _frame(0)
    header = {"type": "frame", "scan_id": "s1", "index": 0, "position": [0.0, 0.0], "shape": [64, 64], "dtype": "<u2"}
    bad_messages = [
        [b"{not json", good.tobytes()],                                                # bad JSON
        [json.dumps({"type": "frame", "scan_id": "s1"}).encode(), good.tobytes()],     # missing fields
        [json.dumps(header).encode(), good.tobytes()[:-2]],                            # wrong payload size
        [json.dumps({**header, "shape": [32, 128]}).encode(), good.tobytes()],         # size differs from scan
        [json.dumps({**header, "dtype": "<c8", "shape": [16, 64]}).encode(), good.tobytes()],  # complex dtype
        [json.dumps({**header, "dtype": "|O"}).encode(), good.tobytes()],              # object dtype
        [json.dumps({**header, "position": ["a", 1]}).encode(), good.tobytes()],      # bad position
        [json.dumps({**header, "scan_id": "never-started"}).encode(), good.tobytes()],  # no start message
        [json.dumps({"type": "bogus"}).encode()],                                     # unknown type
        [json.dumps({"type": "start", "scan_id": "s2"}).encode()],                    # start without shape
        [b""],                                                                         # empty header
    ]
    caplog.set_level(logging.WARNING, logger="ptychoflow.edge")
    with running_service(tmp_path) as (service, publisher):
        publish(service.config.model_dir, constant_model(64, 1.0), "v1")
        wait_for(lambda: service.models.current(), what="v1")
        _start(publisher, "s1")
        for i, bad in enumerate(bad_messages):
            publisher.send_frame("s1", i, (0.0, i * PIXEL), _frame(i))
            publisher.send_raw(bad)
        publisher.send_end("s1", len(bad_messages))
        wait_for(lambda: service.mosaics.get("s1") and service.mosaics.get("s1").ended, what="end of s1")
        status = service.status()
    counters = status["counters"]
    assert counters["malformed"] == len(bad_messages)
    assert counters["received"] == counters["inferred"] == len(bad_messages)
    assert counters["dropped"] == 0
    assert set(status["malformed_by_reason"]) >= {"decode", "size", "dtype", "fields", "unknown_scan"}
    assert "malformed message" in caplog.text
    assert len([r for r in caplog.records if "malformed message (decode)" in r.getMessage()]) <= 2  # rate-limited


def test_no_model_frames_wait_then_overflow_is_counted(tmp_path):
    """Before a model exists frames queue (bounded); beyond the bound they are dropped, counted."""
    with running_service(tmp_path, queue_frames=8, batch_size=4) as (service, publisher):
        _start(publisher, "s1")
        for i in range(20):
            publisher.send_frame("s1", i, (0.0, i * PIXEL), _frame(i))
        publisher.send_end("s1", 20)
        wait_for(lambda: service.metrics.counts["received"] == 20, what="20 frames received")
        assert service.status()["counters"] == {"received": 20, "inferred": 0, "dropped": 12, "malformed": 0}
        assert service.status()["queue"]["depth"] == 8
        publish(service.config.model_dir, constant_model(64, 1.0), "v1")
        wait_for(lambda: service.mosaics.get("s1") and service.mosaics.get("s1").ended, what="end of s1")
        status = service.status()
        exposition = service.metrics.exposition().decode()
    assert status["counters"]["inferred"] == 8 and status["dropped_by_reason"] == {"queue_full": 12}
    assert 'ptychoflow_edge_frames_dropped_total{reason="queue_full"} 12.0' in exposition


def test_frames_too_small_for_the_model_are_dropped_and_counted(tmp_path):
    with running_service(tmp_path) as (service, publisher):
        publish(service.config.model_dir, constant_model(64, 1.0), "v1")  # crops 64x64
        wait_for(lambda: service.models.current(), what="v1")
        publisher.send_start("small", n_frames=3, shape=[32, 32], dtype="<u2", pixel_size_m=PIXEL)
        for i in range(3):
            publisher.send_frame("small", i, (0.0, 0.0), np.ones((32, 32), np.uint16))
        _start(publisher, "s1")
        publisher.send_frame("s1", 0, (0.0, 0.0), _frame(0))
        wait_for(lambda: service.metrics.counts["inferred"] == 1, what="the good frame after the bad ones")
        assert service.status()["dropped_by_reason"] == {"incompatible": 3}


def test_address_in_use_is_one_line_error(tmp_path):
    with running_service(tmp_path / "a", http=True) as (first, _):
        with pytest.raises(PtychoflowError, match="cannot start"):
            with running_service(tmp_path / "b", results_address=first.publisher.address):
                pass
        with pytest.raises(PtychoflowError, match="port in use"):
            with running_service(tmp_path / "c", http=True, http_port=first.web.port):
                pass


def test_shutdown_saves_open_scan_as_incomplete(tmp_path):
    with running_service(tmp_path) as (service, publisher):
        publish(service.config.model_dir, constant_model(64, 1.0), "v1")
        wait_for(lambda: service.models.current(), what="v1")
        _start(publisher, "open")
        for i in range(5):
            publisher.send_frame("open", i, (0.0, i * 4 * PIXEL), _frame(i))
        wait_for(lambda: service.metrics.counts["received"] == 5, what="5 frames received")
    image, attrs = read_mosaic(tmp_path / "edge" / "mosaics" / "open.h5")
    assert not attrs["complete"] and attrs["n_frames"] == 5 and np.nanmax(image) == 1.0
