"""Hot model swap mid-stream: a good model is swapped in between batches, bad ones are
refused with the old model still serving, and not one frame is lost."""

from __future__ import annotations

import threading

import numpy as np

from edge_helpers import (ResultsCollector, constant_model, publish, publish_wrong_sha, running_service,
                          stream_frames, wait_for)

N_FRAMES, RATE_HZ, PIXEL = 480, 160.0, 1e-8


def _frames(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    frames = rng.poisson(20.0, (n, 64, 64)).astype(np.uint16)
    grid = np.stack(np.meshgrid(np.arange(24), np.arange(20), indexing="ij"), -1).reshape(-1, 2)[:n]
    return frames, grid * 6 * PIXEL


def _events(service, kind: str) -> list[dict]:
    return [e for e in service.models.events if e["event"] == kind]


def test_swap_mid_stream_without_losing_frames(tmp_path):
    frames, positions = _frames(N_FRAMES)
    sent: list[int] = []
    with running_service(tmp_path, batch_size=8, max_wait_ms=5) as (service, publisher):
        model_dir = service.config.model_dir
        publish(model_dir, constant_model(64, 1.0), "v1")
        wait_for(lambda: service.models.current(), what="v1")
        results = ResultsCollector(service.publisher.address)
        streamer = threading.Thread(target=stream_frames, args=(publisher, "scan_swap", frames, positions, PIXEL),
                                    kwargs={"rate_hz": RATE_HZ, "on_index": sent.append})
        streamer.start()
        wait_for(lambda: len(sent) > N_FRAMES // 4, what="a quarter of the scan")
        publish(model_dir, constant_model(64, 2.0), "v2")
        wait_for(lambda: service.models.serving.version == "v2", what="swap to v2")
        assert len(sent) < N_FRAMES, "the stream ended before the swap: slow the stream down"
        publish(model_dir, b"this is not an onnx file", "v3-corrupt")  # sha256 matches: ORT must refuse it
        wait_for(lambda: _events(service, "refused"), what="v3 refused")
        publish_wrong_sha(model_dir, constant_model(64, 3.0), "v4-badsha")
        wait_for(lambda: len(_events(service, "refused")) == 2, what="v4 refused")
        publish(model_dir, constant_model(64, float("nan")), "v5-nan")
        wait_for(lambda: len(_events(service, "refused")) == 3, what="v5 refused")
        streamer.join()
        wait_for(lambda: results.ended("scan_swap"), what="end of scan")
        results.close()
        status = service.status()

    assert status["counters"] == {"received": N_FRAMES, "inferred": N_FRAMES, "dropped": 0, "malformed": 0}
    assert status["model"]["version"] == "v2"
    got = sorted(results.results(), key=lambda r: r[0]["index"])
    assert [h["index"] for h, _ in got] == list(range(N_FRAMES))
    versions = [h["model_version"] for h, _ in got]
    switch = versions.index("v2")
    assert 0 < switch < N_FRAMES and versions == ["v1"] * switch + ["v2"] * (N_FRAMES - switch)
    for header, patch in got:  # each frame went through exactly the model it is labelled with
        assert np.all(patch == {"v1": 1.0, "v2": 2.0}[header["model_version"]])
    refused = {e["version"]: e["detail"] for e in _events(service, "refused")}
    assert "ONNX Runtime cannot load" in refused["v3-corrupt"]
    assert "sha256" in refused["v4-badsha"]
    assert "non-finite" in refused["v5-nan"]
    assert "ptychoflow_edge_models_refused_total 3.0" in service.metrics.exposition().decode()


def test_shape_mismatch_refused(tmp_path):
    with running_service(tmp_path) as (service, _):
        publish(service.config.model_dir, constant_model(32, 1.0), "small")  # manifest says 64, model takes 32
        wait_for(lambda: _events(service, "refused"), what="refusal")
        assert service.models.current() is None
        assert "model input" in _events(service, "refused")[0]["detail"]
