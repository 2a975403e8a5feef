"""Acceptance (PtychoNN and edge): train on the rPIE reconstructions of 2 simulated scans for at
most 5 minutes, then stream an unseen 3rd region of the same sample through a running edge
service. Every frame is inferred, none dropped, and the live image the edge serves once the
scan ends (the network's stitched image polished across frames, ptychoflow.polish) agrees
with that region's rPIE reconstruction over everything the probe lights: SSIM >= GOAL, issue
19's bar. The network's image alone (and `validate`) keep a regression floor, NETWORK_FLOOR.

Measured (2026-11-30, quiet): validate 0.447, the network's mosaic 0.464, the served image
0.805 (10 sweeps in 3.2 s from scan 2's rPIE probe at a quarter probe step, which moved 0.16;
0.776 with the object regularisation at 0.1). Replayed offline on an earlier run's data, 0.595
with that probe held fixed: it correlates 0.85 with scan 3's own. The polish barely depends on
its start here: replayed from a flat image it reached 0.835, from the network's blurred by 3 px
0.79, from the network's 0.788 (regularisation 0.1).
Before the polish: live 0.464 after 12 epochs at width 16 (the default); 0.375 and 0.375
after 4 epochs at width 32. Before them, with the robust probe start (issue 18): validate 0.246,
live 0.242-0.244 after 13-14 epochs (2 runs). The former bar, 0.40,
was met only because rPIE then recovered a wrong, cross-shaped probe about half the true
width: the lit region it was scored on was the central 2,485 pixels, not the 32,731 the
true probe lights. On the same pixels the new labels train the better network (live against
the simulator's truth: 0.39 against 0.35 over the whole field, 0.71 against 0.67 in the centre).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil

import numpy as np
import pytest

from edge_helpers import running_service, wait_for
from ptychoflow import metrics
from ptychoflow.demo.collect import OVERLAP_FRACTION, mosaic_on_product
from ptychoflow.recon.api import reconstruct, write_reconstruction
from ptychoflow.recon.base import RpieOptions
from ptychoflow.function_registry import bundled_functions
from ptychoflow.nn.continual import continual_train, scan_pairs, validate_best
from ptychoflow.nn.corpus import append_scan
from ptychoflow.nn.options import ContinualOptions
from ptychoflow.preprocess import PreprocessConfig
from ptychoflow.product import read_product
from ptychoflow.scan.format import write_scan
from ptychoflow.simulate.beamline import SimulationOptions, emit_scan, simulate_scan

OPTIONS = SimulationOptions(object_size=256, frame_size=64, step_px=7.2)  # ~750 positions, as the reference
TRAIN_SECONDS = float(os.environ.get("PTYCHOFLOW_SLOW_TRAIN_S", 180))  # the issue allows up to 5 minutes
THREADS = int(os.environ.get("PTYCHOFLOW_SLOW_THREADS", 2))  # calibrated on 2 idle cores
NETWORK_FLOOR = 0.35  # measured 0.46 (docstring)
GOAL = 0.75  # issue 19's bar for the live image; measured 0.805


def _activate():
    spec = importlib.util.spec_from_file_location("activate", bundled_functions()["activate"])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.activate


@pytest.mark.slow
def test_trained_model_serves_an_unseen_region_live(tmp_path):
    scans, products = [], []
    for region in range(3):
        sim = simulate_scan(OPTIONS, scan_id=f"scan_{region + 1:04d}", region=region)
        scans.append(write_scan(tmp_path / f"{sim.scan.scan_id}.h5", sim.scan))
        result = reconstruct(scans[-1], RpieOptions(iterations=60), engine="ptychi")
        summary = write_reconstruction(result, tmp_path / "products")
        products.append(summary.product_path)
    registry = tmp_path / "models"
    preprocessing = PreprocessConfig(crop=64)
    scan_id, pairs, reference = scan_pairs(scans[0], products[0], preprocessing)
    assert reference != "simulator-truth"
    corpus = tmp_path / "corpus.h5"
    append_scan(corpus, scan_id, pairs, preprocessing.to_json())
    trained = continual_train(ContinualOptions(registry_dir=registry, corpus_path=corpus, scan_path=scans[1],
                                               reconstruction_path=products[1], epochs=50, time_limit_s=TRAIN_SECONDS,
                                               threads=THREADS, seed=0))
    assert trained["promoted"] and trained["corpus_pairs"] > 1400
    validated = validate_best(registry_dir=registry, scan_path=scans[2], reconstruction_path=products[2])

    unseen = simulate_scan(OPTIONS, scan_id="scan_0003", region=2).scan
    with running_service(tmp_path, align_offsets=True, batch_size=16) as (service, publisher):
        layout = service.config.layout
        shutil.copytree(trained["model_dir"], layout.staged_model_dir(trained["version"]))  # TransferModel's job
        activated = _activate()(str(layout.root), trained["version"], wait_s=60)
        assert activated["verdict"] == "serving" and service.models.current().version == trained["version"]
        (tmp_path / "live").mkdir()
        emit_scan(unseen, tmp_path / "live" / "scan_0003.h5", publisher=publisher, frame_rate=200.0)
        wait_for(lambda: service.status()["counters"]["inferred"] == unseen.n_frames, what="every frame", timeout_s=120)
        status = service.status()
    assert status["counters"]["dropped"] == 0 and status["counters"]["malformed"] == 0

    mosaic_path = wait_for(lambda: next((tmp_path / "edge" / "mosaics").glob("scan_0003.h5"), None), what="mosaic")
    product = read_product(products[2])
    live, attrs = mosaic_on_product(mosaic_path, product)
    network, _ = mosaic_on_product(mosaic_path, product, "network_phase")
    polish = json.loads(attrs["polish"])
    # The overlap region: illumination at least half its maximum (OVERLAP_FRACTION), as the demo report.
    covered = product.lit_mask(OVERLAP_FRACTION) & np.isfinite(live)
    live_ssim, network_ssim = (metrics.phase_ssim(np.nan_to_num(image), product.phase, covered) for image in (live, network))
    print(f"\ntrain: {trained['epochs_run']} epochs, val loss {trained['val_loss']:.4f}, "
          f"{trained['samples_per_s']:.0f} samples/s; unseen region SSIM vs rPIE: validate {validated['ssim']:.3f}, "
          f"live edge mosaic {live_ssim:.3f} (the network's alone {network_ssim:.3f}); polish {polish}")
    assert polish["probe_measured"] and polish["sweeps"] == 10 and polish["frames"] == unseen.n_frames
    assert validated["ssim"] >= NETWORK_FLOOR and network_ssim >= NETWORK_FLOOR
    assert live_ssim >= GOAL
