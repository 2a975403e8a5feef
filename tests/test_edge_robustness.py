"""Malformed input is counted and logged, never fatal; backpressure drops are counted;
frames that arrive before any model wait in the bounded queue."""

from __future__ import annotations

import json
import logging

import numpy as np

from edge_helpers import constant_model, publish, running_service, wait_for

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
