"""A model before the first scan: pretrained from a probe guess, or reused from the registry of an
earlier experiment whose beam is closest; the choice is recorded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from nn_helpers import small_sim

from conftest import subprocess_env
from ptychoflow.artifact import verified_model_bytes
from ptychoflow.errors import InputError
from ptychoflow.fs import sha256_file
from ptychoflow.nn.beam import Beam, beam_distance, fwhm_px, version_beam
from ptychoflow.nn.continual import SIMULATOR_TRUTH, validate_best
from ptychoflow.nn.options import ContinualOptions
from ptychoflow.nn.registry import Registry
from ptychoflow.nn.start import start_model
from ptychoflow.scan.format import write_scan
from ptychoflow.simulate.beamline import save_truth
from ptychoflow.simulate.probe import gaussian_probe, make_probe

TINY = {"width": 4, "epochs": 1, "batch_size": 16, "threads": 1, "time_limit_s": 30, "physics_pairs": 128}
CONSOLE_SCRIPT = Path(sys.executable).parent / "ptychoflow"


def _guess(path: Path, probe: np.ndarray) -> Path:
    np.save(path, probe.astype(np.complex64))
    return path


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("first")
    sim = small_sim(0, 10.0)
    guess = _guess(root / "guess.npy", sim.truth_probe)
    result = start_model(ContinualOptions(registry_dir=root / "registry", probe_guess_path=guess, **TINY))
    return root, result


def test_pretrained_from_a_probe_guess_before_any_scan(pretrained, tmp_path):
    root, result = pretrained
    assert result["promoted"] and result["best_version"] == "v0001" and result["origin"] == "pretrained"
    assert result["corpus_pairs"] == 128 and result["scan_id"] is None
    version = Registry(root / "registry").get("v0001")
    assert version.scans_seen == [] and version.origin.startswith("pretrained on 128 physics pairs")
    # no physics refinement through a guess: it projects onto the wrong probe (nn.start)
    assert version.model_config["refine_iterations"] == 0 and not version.extra["refined"]
    beam = version_beam(version)
    np.testing.assert_array_equal(beam.probe, np.load(root / "guess.npy"))
    manifest, _ = verified_model_bytes(Path(result["manifest_path"]).parent)
    assert manifest.version == "v0001"
    # the guess goes to the edge, which refines it as it polishes (ptychoflow.polish)
    assert manifest.probe is not None and not manifest.probe_measured and manifest.probe_source == beam.source
    # the pretrained model scores a real scan (its ONNX, as the edge runs it) before any training on it
    sim = small_sim(1, 10.0)
    scan = write_scan(tmp_path / "scan_0002.h5", sim.scan)
    save_truth(sim, scan)
    checked = validate_best(registry_dir=root / "registry", scan_path=scan)
    assert checked["best_version"] == "v0001" and checked["n_frames"] == sim.scan.n_frames
    assert np.isfinite(checked["ssim"]) and checked["reference"] == SIMULATOR_TRUTH


def test_a_new_experiment_reuses_the_closest_model_and_records_why(pretrained, tmp_path):
    root, _ = pretrained
    sim = small_sim(0, 10.0)
    shifted = np.roll(sim.truth_probe, 2, axis=1)  # the same beam, a little off centre
    result = start_model(ContinualOptions(registry_dir=tmp_path / "registry", probe_guess_path=_guess(tmp_path / "g.npy", shifted),
                                              reuse_from_dirs=[root / "registry", tmp_path / "missing"], **TINY))
    assert result["origin"] == "reused" and result["best_version"] == "v0001"
    assert result["closest"]["registry"] == str(root / "registry") and result["closest"]["distance"] < 0.01
    registry = Registry(tmp_path / "registry")
    adopted, source = registry.get("v0001"), Registry(root / "registry").get("v0001")
    assert sha256_file(adopted.onnx_path) == source.onnx_sha256 == adopted.onnx_sha256
    assert adopted.origin.startswith(f"reused v0001 of {root / 'registry'}")
    assert [e["kind"] for e in registry.events()] == ["register", "promote"]
    assert "closest beam" in registry.events()[-1]["detail"]["reason"]
    staged, _ = verified_model_bytes(Path(result["model_dir"]))  # staged for the edge, with a probe only close to this beam
    assert staged.probe is not None and not staged.probe_measured


def test_a_different_beam_is_pretrained_for_not_reused(pretrained, tmp_path):
    root, _ = pretrained
    other = gaussian_probe(64, diameter_px=12) * 300
    result = start_model(ContinualOptions(registry_dir=tmp_path / "registry", probe_guess_path=_guess(tmp_path / "g.npy", other),
                                              reuse_from_dirs=[root / "registry"], **TINY))
    assert result["origin"] == "pretrained" and result["closest"]["distance"] > ContinualOptions.reuse_max_distance


def test_beam_distance_and_width():
    zone = make_probe("zoneplate", 64, diameter_px=36)
    beam = Beam(zone, 8.8, 1e-8)
    assert beam_distance(beam, Beam(np.roll(zone, 3, axis=0), 8.8, 1e-8)) < 1e-6
    assert beam_distance(beam, Beam(zone, 9.68, 1e-8)) == pytest.approx(0.0909, abs=1e-3)  # 10 % in energy
    assert beam_distance(beam, Beam(make_probe("zoneplate", 64, diameter_px=48), 8.8, 1e-8)) > 0.05
    assert beam_distance(beam, Beam(make_probe("zoneplate", 32, diameter_px=18))) == np.inf
    gauss = gaussian_probe(64, diameter_px=20, curvature=0)  # FWHM 20 of the amplitude: 20 / sqrt(2) of the intensity
    assert fwhm_px(gauss) == pytest.approx(20 / np.sqrt(2), abs=0.5)


def test_probe_guess_files_are_checked(tmp_path):
    sim = small_sim(0, 10.0)
    scan = write_scan(tmp_path / "scan.h5", sim.scan)  # no /entry/data/probe_guess
    with pytest.raises(InputError, match=r"scan\.h5: /entry/data/probe_guess: missing dataset"):
        Beam.from_file(scan)
    np.save(tmp_path / "cube.npy", np.ones((2, 4, 4), np.complex64))
    with pytest.raises(InputError, match=r"cube\.npy: \(array\): expected a square 2-D probe"):
        Beam.from_file(tmp_path / "cube.npy")
    sim.scan.probe_guess = sim.truth_probe
    beam = Beam.from_file(write_scan(tmp_path / "guessed.h5", sim.scan))
    assert beam.energy_keV == sim.scan.instrument.energy_keV and beam.pixel_size_m == pytest.approx(sim.scan.pixel_size_m)


def test_train_cli_starts_an_experiment_from_a_probe_guess(tmp_path):
    script = [str(CONSOLE_SCRIPT)] if CONSOLE_SCRIPT.exists() else [sys.executable, "-m", "ptychoflow"]
    guess = _guess(tmp_path / "guess.npy", small_sim(0, 10.0).truth_probe)
    base = [*script, "train", "--registry", str(tmp_path / "registry"), "--probe-guess", str(guess), "--physics-pairs", "64",
            "--epochs", "1", "--time-limit", "20", "--threads", "1"]
    done = subprocess.run([*base, "--json"], capture_output=True, text=True, timeout=300, env=subprocess_env())
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["origin"] == "pretrained"
    refused = subprocess.run([*base, "--scan", str(guess)], capture_output=True, text=True, timeout=60, env=subprocess_env())
    assert refused.returncode == 2 and "--probe-guess is for before the first scan" in refused.stderr


def test_continual_train_sends_a_probe_guess_without_a_scan_to_start(tmp_path):
    from ptychoflow.nn.continual import continual_train

    guess = _guess(tmp_path / "guess.npy", small_sim(0, 10.0).truth_probe)
    with pytest.raises(ValueError, match="start_or_train"):
        continual_train(ContinualOptions(registry_dir=tmp_path / "registry", probe_guess_path=guess, **TINY))
    assert not (tmp_path / "registry").exists()
