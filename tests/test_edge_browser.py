"""Headless Chromium loads the live page while frames stream: the mosaic image and the frame
counter update, and the model version is shown."""

from __future__ import annotations

import shutil
import threading

import numpy as np
import pytest

from edge_helpers import affine_model, publish, running_service, stream_frames, wait_for

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PIXEL = 1e-8


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (make browser / apt-get install chromium)")
def test_page_updates_while_streaming(tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright python package not installed")
    rng = np.random.default_rng(0)
    n = 240
    frames = rng.poisson(30.0, (n, 64, 64)).astype(np.uint16)
    positions = np.stack(np.meshgrid(np.arange(16), np.arange(15), indexing="ij"), -1).reshape(-1, 2)[:n] * 6 * PIXEL
    with running_service(tmp_path, http=True) as (service, publisher):
        publish(service.config.model_dir, affine_model(64, scale=0.1), "v-browser")
        wait_for(lambda: service.models.current(), what="model")
        streamer = threading.Thread(target=stream_frames, args=(publisher, "scan_web", frames, positions, PIXEL),
                                    kwargs={"rate_hz": 40.0})
        streamer.start()
        try:
            with playwright.sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": 1100, "height": 640})
                page.goto(service.web.url + "/")
                page.wait_for_function("document.getElementById('mosaic').src.includes('mosaic.png')", timeout=15000)
                first_src = page.get_attribute("#mosaic", "src")
                first_count = int(page.inner_text("#frames-inferred"))
                page.wait_for_function(
                    f"document.getElementById('mosaic').src !== {first_src!r} && "
                    f"+document.getElementById('frames-inferred').textContent > {first_count}", timeout=15000)
                page.wait_for_function("document.getElementById('mosaic').complete"
                                       " && document.getElementById('mosaic').naturalWidth > 0", timeout=15000)
                assert page.inner_text("#model-version") == "v-browser"
                assert page.inner_text("#frames-dropped") == "0"
                page.wait_for_timeout(1500)
                page.screenshot(path=str(tmp_path / "edge-page.png"))  # look at it when changing the page
                browser.close()
        finally:
            streamer.join()


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (make browser / apt-get install chromium)")
def test_the_page_shows_the_polished_image_when_the_scan_ends(tmp_path):
    """A model served with its probe: once the scan ends the page says it was polished and
    loads the polished image (the frame count alone no longer changes)."""
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright python package not installed")
    from ptychoflow.simulate.beamline import SimulationOptions, emit_scan, simulate_scan

    sim = simulate_scan(SimulationOptions(object_size=128, step_px=8), scan_id="scan_polish")
    np.save(tmp_path / "probe.npy", sim.truth_probe.astype(np.complex64))
    with running_service(tmp_path, http=True) as (service, publisher):
        publish(service.config.model_dir, affine_model(64, scale=0.0), "v-probe", probe=tmp_path / "probe.npy")
        wait_for(lambda: service.models.current(), what="model")
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1100, "height": 640})
            page.goto(service.web.url + "/")
            emit_scan(sim.scan, tmp_path / "scan_polish.h5", publisher=publisher, frame_rate=100.0)
            page.wait_for_function("document.getElementById('mosaic').src.includes('polished=1')", timeout=20000)
            page.wait_for_function("document.getElementById('mosaic').complete"
                                   " && document.getElementById('mosaic').naturalWidth > 0", timeout=15000)
            assert "polished across frames: 10 sweeps" in page.inner_text("#scan")
            page.wait_for_timeout(500)
            page.screenshot(path=str(tmp_path / "edge-page-polished.png"))  # look at it when changing the page
            browser.close()
