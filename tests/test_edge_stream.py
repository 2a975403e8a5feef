"""End to end: a simulated scan streamed at a fixed rate into a running service is inferred
frame by frame, nothing is dropped, and the saved mosaic is exactly the stitched image."""

from __future__ import annotations

import dataclasses
import json

import h5py
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from edge_helpers import (ResultsCollector, affine_model, preprocessing, publish, reference_mosaic,
                          running_service, wait_for)
from ptychoflow.preprocess import preprocess
from ptychoflow.simulate.beamline import SimulationOptions, emit_scan, simulate_scan
from ptychoflow.stitch import probe_weight

RATE_HZ = 150.0


@pytest.fixture(scope="module")
def sim():
    return simulate_scan(SimulationOptions(object_size=128, step_px=8), scan_id="scan_0001")


def _stream_through(tmp_path, scan, blob: bytes, config, **publish_options) -> tuple[ResultsCollector, dict]:
    """Serve `blob` (activated as v1, preprocessing `config`) and stream `scan` into it at RATE_HZ
    until its end is published: (the results stream, the service's status then)."""
    with running_service(tmp_path, batch_size=8, max_wait_ms=5) as (service, publisher):
        publish(service.config.model_dir, blob, "v1", config=config, **publish_options)
        wait_for(lambda: service.models.current(), what="model v1 to load")
        results = ResultsCollector(service.publisher.address)
        emit_scan(scan, tmp_path / "scan_0001.h5", publisher=publisher, frame_rate=RATE_HZ)
        wait_for(lambda: results.ended(scan.scan_id), what="end of scan on the results stream")
        results.close()
        return results, service.status()


def test_stream_inferred_and_stitched_exactly(tmp_path, sim):
    scan = sim.scan
    config = preprocessing()
    results, status = _stream_through(tmp_path, scan, affine_model(64, scale=2.0, offset=-1.0), config)

    n = scan.n_frames
    assert status["counters"] == {"received": n, "inferred": n, "dropped": 0, "malformed": 0}
    got = results.results()
    assert sorted(h["index"] for h, _ in got) == list(range(n))
    assert {h["model_version"] for h, _ in got} == {"v1"}

    expected_patches = 2.0 * preprocess(np.asarray(scan.data), config) - 1.0
    for header, patch in got:
        np.testing.assert_allclose(patch, expected_patches[header["index"]], rtol=1e-6)
        np.testing.assert_allclose(header["position_px"], scan.positions_px()[header["index"]], rtol=1e-9)

    end = results.ended(scan.scan_id)
    assert end["inferred"] == n
    expected, origin = reference_mosaic(expected_patches, scan.positions_px(), probe_weight(None, 64))
    with h5py.File(end["files"]["h5"]) as f:
        image = f["phase"][()]
        assert tuple(f.attrs["origin_px"]) == tuple(origin)
        assert f.attrs["complete"] and f.attrs["n_frames"] == n and list(f.attrs["models"]) == ["v1"]
    assert image.shape == expected.shape
    np.testing.assert_array_equal(np.isnan(image), np.isnan(expected))
    np.testing.assert_allclose(image, expected, rtol=1e-5, equal_nan=True)
    png = Image.open(end["files"]["png"])
    assert png.size == (expected.shape[1], expected.shape[0])
    assert not list((tmp_path / "edge" / "mosaics").glob(".*tmp*")), "temporary files left behind"


def test_a_model_on_a_crop_of_the_frame_stitches_on_its_own_larger_pixels(tmp_path, sim):
    """A network fed the central 32 of 64 detector pixels sees object pixels twice as large
    (nn.pairs trains it so): the mosaic is on that grid, and says so in `pixel_size_m`."""
    scan = sim.scan
    config = preprocessing(32)
    results, _ = _stream_through(tmp_path, scan, affine_model(32), config)
    got = results.results()
    for header, _ in got:
        np.testing.assert_allclose(header["position_px"], scan.positions_px()[header["index"]] / 2, rtol=1e-9)
    expected, origin = reference_mosaic(preprocess(np.asarray(scan.data), config), scan.positions_px() / 2,
                                        probe_weight(None, 32))
    with h5py.File(results.ended(scan.scan_id)["files"]["h5"]) as f:
        assert f.attrs["pixel_size_m"] == pytest.approx(2 * scan.pixel_size_m)
        assert tuple(f.attrs["origin_px"]) == tuple(origin)
        np.testing.assert_allclose(f["phase"][()], expected, rtol=1e-5, equal_nan=True)


def test_a_smaller_detector_region_gives_the_same_live_image(tmp_path, sim):
    """A network on the central c detector pixels sees object pixels of lambda z / (c dx),
    whatever the frame size: the scan recorded on 64 pixels, and again on only the central 32
    (the scan's own pixel twice as large), gives the same mosaic, in metres."""
    narrow = dataclasses.replace(sim.scan, data=np.asarray(sim.scan.data)[:, 16:48, 16:48])
    assert narrow.pixel_size_m == pytest.approx(2 * sim.scan.pixel_size_m)
    mosaics = []
    for name, scan in (("wide", sim.scan), ("narrow", narrow)):
        results, _ = _stream_through(tmp_path / name, scan, affine_model(32), preprocessing(32))
        with h5py.File(results.ended(scan.scan_id)["files"]["h5"]) as f:
            mosaics.append((f["phase"][()], tuple(f.attrs["origin_px"]), float(f.attrs["pixel_size_m"])))
    (wide_image, wide_origin, wide_pixel), (narrow_image, narrow_origin, narrow_pixel) = mosaics
    assert wide_pixel == pytest.approx(narrow_pixel) and wide_origin == narrow_origin
    np.testing.assert_allclose(wide_image, narrow_image, rtol=1e-6, equal_nan=True)


def test_stitch_weight_from_manifest_is_used_as_is(tmp_path, sim):
    """A manifest naming a stitching weight stitches with exactly that array (no sqrt, no
    square, no renormalising), not the Gaussian default."""
    weight = probe_weight(sim.truth_probe, 64) ** 1.5  # any valid weight: not a Gaussian, not |P|^2
    weight_file = tmp_path / "trained_weight.npy"
    np.save(weight_file, weight)
    with running_service(tmp_path) as (service, _):
        publish(service.config.model_dir, affine_model(64), "v1", stitch_weight=weight_file)
        model = wait_for(lambda: service.models.current(), what="model with its stitching weight")
    np.testing.assert_array_equal(model.weight, weight)
    assert not np.allclose(model.weight, probe_weight(None, 64))


def _polished_run(tmp_path, sim, probe: np.ndarray, *, measured: bool):
    """Stream the scan through a "network" that knows nothing (phase 0 everywhere), served with
    `probe`: (results, saved served image, saved network image, origin, polish record, status)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    probe_file = tmp_path / "probe.npy"
    np.save(probe_file, probe.astype(np.complex64))
    results, status = _stream_through(tmp_path, sim.scan, affine_model(64, scale=0.0), preprocessing(),
                                      probe=probe_file, probe_measured=measured)
    summary = next(s for s in status["scans"] if s["scan_id"] == sim.scan.scan_id)
    with h5py.File(results.ended(sim.scan.scan_id)["files"]["h5"]) as f:
        served, network = f["phase"][()], f["network_phase"][()]
        origin, record = tuple(int(v) for v in f.attrs["origin_px"]), json.loads(f.attrs["polish"])
    assert summary["polish"] == record
    return results, served, network, origin, record


def _ssim_to_truth(sim, image: np.ndarray, origin: tuple[int, int]) -> float:
    """Phase SSIM against the simulator's truth over the well-overlapped middle of the image."""
    from ptychoflow import metrics

    truth = np.angle(sim.truth_object)[origin[0]:origin[0] + image.shape[0], origin[1]:origin[1] + image.shape[1]]
    inner = ndimage.binary_erosion(np.isfinite(image), iterations=16)
    return metrics.phase_ssim(np.nan_to_num(image), truth, inner)


def test_a_model_with_its_probe_gets_the_finished_scan_polished(tmp_path, sim):
    """While the scan runs the results stream and the network's mosaic are the network's zeros;
    once it ends, the saved and served image is the polish across frames, which finds the object."""
    results, served, network, origin, record = _polished_run(tmp_path, sim, sim.truth_probe, measured=True)
    assert all(not patch.any() for _, patch in results.results())  # per-frame results: the network's own
    assert record["sweeps"] == 10 and record["frames"] == sim.scan.n_frames and record["probe_source"] == "true probe"
    assert record["probe_measured"] and record["probe_change"] < 0.01  # the true probe: nothing to correct
    lit = np.isfinite(network)
    assert np.array_equal(np.isfinite(served), lit) and not network[lit].any()
    score = _ssim_to_truth(sim, served, origin)
    print(f"polished SSIM vs truth {score:.3f} (the network's image is flat)")
    assert score > 0.6


def test_a_guessed_probe_is_refined_as_the_scan_is_polished(tmp_path, sim):
    """The optics' guess, 10 % too wide (as the demo's), with a network that knows nothing:
    served as a guess, the probe is refined at the full step and the object begins to show
    (the network's image is flat: SSIM ~0)."""
    from ptychoflow.simulate.probe import make_probe

    options = SimulationOptions(object_size=128, step_px=8)
    guess = make_probe(options.probe, options.frame_size, diameter_px=1.1 * options.probe_diameter_px)
    _, refined, _, origin, record = _polished_run(tmp_path / "guess", sim, guess, measured=False)
    assert not record["probe_measured"] and record["probe_change"] > 0.05
    score = _ssim_to_truth(sim, refined, origin)
    print(f"guess refined: SSIM vs truth {score:.3f}, probe moved {record['probe_change']:.3f}")
    assert score > 0.25  # measured 0.31


def test_a_model_without_a_probe_is_served_unpolished(tmp_path, sim):
    results, _ = _stream_through(tmp_path, sim.scan, affine_model(64, scale=2.0), preprocessing())
    with h5py.File(results.ended(sim.scan.scan_id)["files"]["h5"]) as f:
        np.testing.assert_array_equal(f["phase"][()], f["network_phase"][()])
        assert json.loads(f.attrs["polish"]) == {}


def test_a_failing_polish_still_saves_the_networks_image(tmp_path, sim, monkeypatch):
    """Nothing is lost: a polish that raises leaves the scan saved, unpolished, saying why."""
    import ptychoflow_edge.mosaics

    def broken(*args, **kwargs):
        raise FloatingPointError("injected")

    monkeypatch.setattr(ptychoflow_edge.mosaics, "polish", broken)
    _, served, network, _, record = _polished_run(tmp_path, sim, sim.truth_probe, measured=True)
    np.testing.assert_array_equal(served, network)
    assert record["skipped"] == "the polish failed: FloatingPointError: injected"
