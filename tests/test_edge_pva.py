"""The edge's pvAccess path against real pvAccess servers and clients in other processes.

A stand-in areaDetector (pvapy's server stack, the one NDPluginPva uses) publishes NTNDArray
frames with positions as NDAttributes; the edge (p4p) receives, infers and stitches them, and
serves the live phase, which a display process reads back with pvapy's client. Nothing is
skipped: both libraries are test dependencies, and all traffic stays on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from conftest import subprocess_env
from edge_helpers import ResultsCollector, affine_model, publish, running_service, wait_for
from ptychoflow.errors import PtychoflowError
from ptychoflow_edge.pva import PvaFrameSource, ntnd_to_array

HERE = Path(__file__).parent
PIXEL = 1e-8


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _client_env(udp: int) -> dict[str, str]:
    return {"EPICS_PVA_ADDR_LIST": f"127.0.0.1:{udp}", "EPICS_PVA_AUTO_ADDR_LIST": "NO",
            "EPICS_PVA_BROADCAST_PORT": str(udp)}


@pytest.fixture
def frames(tmp_path):
    rng = np.random.default_rng(7)
    images = rng.poisson(40, (24, 64, 64)).astype(np.uint16)
    positions = np.stack([np.repeat(np.arange(4), 6), np.tile(np.arange(6), 4)], axis=1) * 2e-7 + 1e-6
    path = tmp_path / "frames.npz"
    np.savez(path, frames=images, positions=positions)
    return path, images, positions


@pytest.fixture
def areadetector(frames, monkeypatch):
    """Start the IOC process; point this process's pvAccess client at it (as EPICS users do)."""
    path, _, _ = frames
    channel = f"TEST{uuid.uuid4().hex[:8]}:Pva1:Image"
    tcp, udp = _free_port(socket.SOCK_STREAM), _free_port(socket.SOCK_DGRAM)
    env = subprocess_env(EPICS_PVAS_SERVER_PORT=str(tcp), EPICS_PVAS_BROADCAST_PORT=str(udp),
                         EPICS_PVAS_INTF_ADDR_LIST="127.0.0.1", **_client_env(udp))
    ioc = subprocess.Popen([sys.executable, str(HERE / "pva_areadetector.py"), channel, str(path), "--acquisitions", "2"],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert ioc.stdout.readline().strip() == "ready"
        for key, value in _client_env(udp).items():
            monkeypatch.setenv(key, value)
        yield channel, ioc
    finally:
        ioc.stdin.close()
        ioc.wait(timeout=10)


def test_edge_infers_areadetector_frames_and_serves_the_live_phase(tmp_path, frames, areadetector, monkeypatch):
    _, images, positions = frames
    channel, ioc = areadetector
    out_udp = _free_port(socket.SOCK_DGRAM)
    monkeypatch.setenv("EPICS_PVAS_INTF_ADDR_LIST", "127.0.0.1")
    monkeypatch.setenv("EPICS_PVAS_SERVER_PORT", "0")
    monkeypatch.setenv("EPICS_PVAS_BROADCAST_PORT", str(out_udp))
    phase_pv = f"TEST{uuid.uuid4().hex[:8]}:Phase"
    with running_service(tmp_path, pva_channel=channel, pva_pixel_size_m=PIXEL, pva_output=phase_pv,
                         pva_output_interval_s=0.05) as (service, _):
        results = ResultsCollector(service.publisher.address)
        publish(service.config.model_dir, affine_model(64), "v1")
        wait_for(lambda: service.models.current(), what="model")
        wait_for(lambda: service.pva.connected, what="pvAccess connection to the areaDetector")
        ioc.stdin.write("go\n")
        ioc.stdin.flush()
        assert ioc.stdout.readline().strip() == "done"
        wait_for(lambda: service.metrics.counts["inferred"] == 2 * len(images),
                 what=f"both acquisitions inferred ({service.metrics.counts})")
        first, second = [s for s in service.mosaics.summaries()][:2]
        assert service.pva.scans_started == 2  # uniqueId went back to 1: a new acquisition, a new scan
        assert service.metrics.counts.get("dropped", 0) == 0 and service.metrics.counts.get("malformed", 0) == 0
        got = sorted((h["index"], tuple(h["position"])) for h, _ in results.results() if h["scan_id"] == first["scan_id"])
        assert got == [(i + 1, tuple(p)) for i, p in enumerate(positions)]  # every frame, at its NDAttribute position
        results.close()
        scan = service.mosaics.get(first["scan_id"])
        wait_for(lambda: scan.ended, what="first scan ended by the second acquisition")
        live = service.mosaics.get(second["scan_id"])

        def displayed() -> dict:
            display = subprocess.run([sys.executable, str(HERE / "pva_display.py"), phase_pv, str(tmp_path / "shown.npz")],
                                     capture_output=True, text=True, timeout=60, env=subprocess_env(**_client_env(out_udp)))
            assert display.returncode == 0, display.stderr
            shown = json.loads(display.stdout)
            return shown if shown["attributes"]["Frames"] == live.count else {}

        shown = wait_for(displayed, what="the display to show every frame of the live scan")
        assert shown["attributes"]["ScanId"] == second["scan_id"] and shown["attributes"]["PixelSizeM"] == PIXEL
        image = np.nan_to_num(live.image()[0].astype(np.float32), nan=0.0)
        np.testing.assert_allclose(np.load(tmp_path / "shown.npz")["image"], image, rtol=1e-6)


def test_ntndarray_from_either_library_and_gaps(tmp_path):
    image = np.arange(12, dtype=np.uint16).reshape(3, 4)
    p4p_style = {"value": image.ravel(), "dimension": [{"size": 4}, {"size": 3}], "uniqueId": 7,
                 "attribute": [{"name": "PositionY", "value": 1e-6}, {"name": "PositionX", "value": 2e-6}]}
    pvapy_style = {"value": ({"ushortValue": image.ravel()},), "dimension": [{"size": 4}, {"size": 3}]}
    np.testing.assert_array_equal(ntnd_to_array(p4p_style), image)
    np.testing.assert_array_equal(ntnd_to_array(pvapy_style), image)
    assert ntnd_to_array({"value": None, "dimension": []}) is None  # a record's initial, empty value
    with pytest.raises(ValueError, match="codec 'lz4'"):
        ntnd_to_array({**p4p_style, "codec": {"name": "lz4"}})
    messages, gaps = [], []
    source = PvaFrameSource("X:Image", messages.append, pixel_size_m=1e-8, position_scale=1.0, on_gap=gaps.append)
    for unique_id in (7, 8, 11, 2):
        source.on_update({**p4p_style, "uniqueId": unique_id})
    assert [m.kind for m in messages] == ["start", "frame", "frame", "frame", "end", "start", "frame"]
    assert messages[1].header["position"] == [1e-6, 2e-6] and gaps == [2]


def test_pva_input_needs_a_pixel_size_and_p4p(tmp_path, monkeypatch):
    with pytest.raises(PtychoflowError, match="pva_pixel_size_m"):
        with running_service(tmp_path, pva_channel="13SIM1:Pva1:Image"):
            pass
    monkeypatch.setitem(sys.modules, "p4p.client.thread", None)  # as if p4p were not installed
    with pytest.raises(PtychoflowError, match=r"ptychoflow\[pva\]"):
        with running_service(tmp_path, pva_channel="13SIM1:Pva1:Image", pva_pixel_size_m=1e-8):
            pass
