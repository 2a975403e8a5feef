"""The real Siemens star (APS Velociprobe data, ../shared/data) through the whole local
pipeline, driven as a user would, with the installed console script:

  replay -> watcher -> flow (transfer, rPIE, validate, train, promote, activate) -> edge

The edge holds the replayed frames until the flow activates the first model, then infers
them all. Asserted: the flow run succeeded; every frame was inferred; the product
round-trips through the ptychodus export (ptychodus's own reader); rPIE's image is the
30-spoke star. A second test asks that the network's image and the live image have the same
spoke harmonic as rPIE's (an independent reference the network never saw as a picture: it was
trained on patches).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tomli_w
from scipy import ndimage

from console_script import CONSOLE_SCRIPT, console_env

RUN_TIMEOUT_S = 1500


def _ptychoflow(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    done = subprocess.run([str(CONSOLE_SCRIPT), *args], capture_output=True, text=True, timeout=timeout, env=console_env())
    assert done.returncode == 0, f"ptychoflow {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done


def _service(log: Path, *args: str) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen([str(CONSOLE_SCRIPT), *args], stdout=out, stderr=subprocess.STDOUT, env=console_env(),
                                start_new_session=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _poll(predicate, timeout_s: float, what: str, interval: float = 2.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def angular_spectrum(image: np.ndarray, centre: np.ndarray, radii: np.ndarray, n_angles: int = 720) -> np.ndarray:
    """Power of each angular harmonic of `image` on circles about `centre` (NaN filled with the mean)."""
    filled = np.where(np.isfinite(image), image, np.nanmean(image))
    theta = np.linspace(0, 2 * np.pi, n_angles, endpoint=False)
    power = np.zeros(n_angles // 2 + 1)
    for radius in radii:
        ring = ndimage.map_coordinates(filled, [centre[0] + radius * np.sin(theta), centre[1] + radius * np.cos(theta)],
                                       order=1)
        power += np.abs(np.fft.rfft(ring - ring.mean())) ** 2
    return power


LOWEST_SPOKE_HARMONIC = 4  # below: a phase ramp or offset (1, 2) across the image, not spokes


def harmonic_share(power: np.ndarray) -> tuple[int, float]:
    """(dominant angular harmonic from LOWEST_SPOKE_HARMONIC up, its share of that power)."""
    spokes = power[LOWEST_SPOKE_HARMONIC:]
    return int(np.argmax(spokes)) + LOWEST_SPOKE_HARMONIC, float(spokes.max() / spokes.sum())


def star_centre(image: np.ndarray, radii: np.ndarray, search_px: int = 40, step_px: int = 4) -> np.ndarray:
    """The star's centre: the point near the image centre with the sharpest angular periodicity."""
    middle = np.array(image.shape) / 2
    candidates = [middle + (dy, dx) for dy in range(-search_px, search_px + 1, step_px)
                  for dx in range(-search_px, search_px + 1, step_px)]
    return max(candidates, key=lambda centre: harmonic_share(angular_spectrum(image, centre, radii))[1])


@dataclass
class PipelineRun:
    site: Path
    run: dict
    mosaic: Path
    status: dict


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, real_scan_path) -> PipelineRun:
    """The real star through the whole pipeline, once for this module's tests."""
    from ptychoflow_edge.statusfile import wait_until_ready

    tmp_path = tmp_path_factory.mktemp("real-star")

    site = tmp_path / "site"
    _ptychoflow("init", str(site))
    profile_path = site / "ptychoflow.toml"
    profile = tomllib.loads(profile_path.read_text())
    stream = f"tcp://127.0.0.1:{_free_port()}"
    profile["edge"].update(stream_address=stream, results_address=f"tcp://127.0.0.1:{_free_port()}", http_port=0)
    profile["policy"].update(iterations=40, train_epochs=40, train_time_limit_s=180, export_formats=["ptychodus"])
    profile["watcher"].update(settle_seconds=0.5)
    profile_path.write_text(tomli_w.dumps(profile))
    logs = tmp_path / "logs"
    logs.mkdir()
    edge = _service(logs / "edge.log", "edge", "serve", "--profile", str(site))
    watcher = None
    try:
        wait_until_ready(site / "edge" / "edge-status.json", pid=edge.pid, timeout_s=120)
        watcher = _service(logs / "watcher.log", "watch", "--profile", str(site))
        _ptychoflow("beamline", "replay", str(real_scan_path), "--out", str(site / "acquisition"), "--rate", "500",
                    "--stream", stream, "--wait-subscribers", "1")

        def finished_run():
            runs = json.loads(_ptychoflow("runs", "list", "--json", "--profile", str(site)).stdout)
            return next((r for r in runs if r["status"] in ("SUCCEEDED", "FAILED")), None)

        run = _poll(finished_run, RUN_TIMEOUT_S, "the flow run")
        assert run["status"] == "SUCCEEDED", (run["error"], [(s["name"], s["status"], s["error"]) for s in run["timeline"]])
        mosaic = _poll(lambda: next((site / "edge" / "mosaics").glob("*.h5"), None), 300, "the live mosaic")
        # The mosaic is saved at end-of-scan, after its frames; the status file is refreshed
        # every half second, so wait for it to catch up rather than read it once.
        status_file = site / "edge" / "edge-status.json"
        _poll(lambda: json.loads(status_file.read_text())["counters"]["inferred"] >= 516 or None, 30,
              "the edge status to count every frame")
        status = json.loads(status_file.read_text())
    finally:
        for service in (watcher, edge):
            if service is not None and service.poll() is None:
                os.killpg(service.pid, signal.SIGTERM)
                service.wait(timeout=60)
        subprocess.run([str(CONSOLE_SCRIPT), "engine", "stop", "--profile", str(site)], env=console_env(), timeout=60,
                       capture_output=True)
    return PipelineRun(site, run, mosaic, status)


@pytest.mark.slow
def test_real_siemens_star_through_the_whole_local_pipeline(pipeline: PipelineRun) -> None:
    """The run succeeds, the model reaches the edge, every frame is inferred, and the product
    round-trips through ptychodus's own reader; rPIE's image is the star."""
    from ptychodus.plugins.h5_product_file import H5ProductFileIO

    from ptychoflow.product import read_product

    assert pipeline.run["output"]["outcome"]["outcome"] == "model promoted and activated on the edge"
    status = pipeline.status
    assert status["counters"]["inferred"] == 516 and status["counters"]["dropped"] == 0

    products = pipeline.site / "hpc" / "products"
    product_path = next(products.glob("*/*.recon.h5"))
    ours = read_product(product_path)
    theirs = H5ProductFileIO().read(next(products.glob("*/*.ptychodus.h5")))
    np.testing.assert_array_equal(theirs.object_.get_layer(0), ours.object)
    np.testing.assert_array_equal(theirs.probes.get_array()[0, 0], ours.probe)
    np.testing.assert_allclose(theirs.probe_positions.get_coordinates_y_m(), ours.positions_m[:, 0])
    assert theirs.object_.get_pixel_geometry().width_m == pytest.approx(ours.pixel_size_m, rel=1e-12)

    radii = np.arange(40, 140, 10)
    rpie = np.where(ours.lit_mask(0.5), ours.phase, np.nan)
    rpie_spokes, rpie_share = harmonic_share(angular_spectrum(rpie, star_centre(rpie, radii), radii))
    print(f"\nrPIE: spoke harmonic {rpie_spokes} ({rpie_share:.2f} of the angular power)")
    assert rpie_spokes == 30 and rpie_share > 0.3  # the reference really is the 30-spoke star


@pytest.mark.slow
def test_the_live_image_shows_the_stars_spokes(pipeline: PipelineRun) -> None:
    """The network's image (trained on patches, never shown the whole picture) and the live image
    polished from it have the star's spoke count, read about the centre found on the registered
    rPIE image. The network takes the central 64 of the 128 detector pixels, so its pixels are
    twice rPIE's: stitched on rPIE's grid, as the edge once did, its image showed ~60 thin lines
    instead of 30 spokes."""
    from ptychoflow.demo.collect import mosaic_on_product
    from ptychoflow.product import read_product

    ours = read_product(next((pipeline.site / "hpc" / "products").glob("*/*.recon.h5")))
    radii = np.arange(40, 140, 10)
    lit = ours.lit_mask(0.5)
    rpie = np.where(lit, ours.phase, np.nan)
    centre = star_centre(rpie, radii)
    rpie_spokes, rpie_share = harmonic_share(angular_spectrum(rpie, centre, radii))
    assert rpie_share > 0.3  # the reference really is a star
    network, attrs = mosaic_on_product(pipeline.mosaic, ours, "network_phase")
    assert attrs["pixel_size_m"] == pytest.approx(2 * ours.pixel_size_m)
    assert json.loads(attrs["polish"]).get("sweeps"), attrs["polish"]  # the model's probe came with it
    live, _ = mosaic_on_product(pipeline.mosaic, ours)
    # The images are registered (one object frame): each is read about the reference's centre.
    found = {name: harmonic_share(angular_spectrum(np.where(lit, image, np.nan), centre, radii))
             for name, image in (("network", network), ("live", live))}
    print(f"\nspokes about {centre}: rPIE harmonic {rpie_spokes} ({rpie_share:.2f} of the power), "
          + ", ".join(f"{name} {spokes} ({share:.2f})" for name, (spokes, share) in found.items()))
    for spokes, share in found.values():  # measured: network 30 (0.76), live 30 (0.72); rPIE 0.71
        assert spokes == rpie_spokes and share > 0.3
