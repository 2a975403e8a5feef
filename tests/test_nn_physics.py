"""Physics-made training pairs and the physics refinement, checked against plain NumPy physics
and the simulator's frames (not against our own formulas)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from nn_helpers import PRE, small_pairs, small_sim
from scipy import ndimage

from ptychoflow import metrics
from ptychoflow.nn import physics, textures
from ptychoflow.nn.export import export_and_check
from ptychoflow.nn.models import build_model
from ptychoflow.nn.options import ModelConfig
from ptychoflow.nn.refine import Refinement, network_probe, with_refinement
from ptychoflow.preprocess import PreprocessConfig

SRC = Path(__file__).resolve().parents[1] / "src" / "ptychoflow"


def _imports(module: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("module", ["textures.py", "physics.py"])
def test_textures_never_come_from_the_test_object_generator(module):
    imported = _imports(SRC / "nn" / module)
    assert not any("simulate.objects" in name or name.startswith("skimage") for name in imported), imported


def test_textures_span_the_unit_range_with_edges_and_gradients():
    rng = np.random.default_rng(0)
    maps = [textures.texture(128, rng) for _ in range(4)]
    for image in maps:
        assert image.shape == (128, 128) and image.min() >= 0 and image.max() <= 1
        assert np.percentile(image, 99) - np.percentile(image, 1) > 0.5
    assert not np.allclose(maps[0], maps[1])  # a fresh texture every time
    leaves = textures.dead_leaves(128, np.random.default_rng(1))
    assert len(np.unique(leaves)) > 50  # many occluding discs, not a handful


def test_physics_pairs_match_the_far_field_of_their_texture():
    """Each pair is |FFT(P * O)|^2 of its texture patch (plain NumPy here) at the requested mean
    photon count, Poisson noisy, preprocessed as real frames are; its target is the patch's
    de-meaned phase."""
    probe = small_sim(0).truth_probe
    stats = physics.SampleStats(counts_per_frame=1e7, phase_range=0.8, amplitude_min=0.8)
    data = physics.physics_corpus(probe, stats, PRE, 100, seed=3)
    assert len(data) == 2 * physics.PAIRS_PER_TEXTURE and len(data.scans) == 2  # rounded up to whole textures
    assert data.preprocessing == PRE.to_json()
    scan = data.scans[1]
    k = scan.start + 5
    r, c = (data.positions_px[k] - 32).astype(int)
    texture_phase = scan.reference_phase[r:r + 64, c:c + 64]
    exit_wave = probe * data.amplitude[k] * np.exp(1j * texture_phase)
    expected = np.fft.fftshift(np.abs(np.fft.fft2(exit_wave, norm="ortho")) ** 2)
    measured = data.diffraction[k, 0].astype(np.float64) ** 2  # the sqrt transform undone
    assert np.corrcoef(measured.ravel(), expected.ravel())[0, 1] > 0.99
    bright = expected > 0.01 * expected.max()
    scale = measured.sum() / expected.sum()
    assert abs(np.median(measured[bright] / (scale * expected[bright])) - 1) < 0.05
    mean_counts = (data.diffraction.astype(np.float64) ** 2).sum(axis=(1, 2, 3)).mean()
    assert mean_counts == pytest.approx(stats.counts_per_frame, rel=0.02)
    lit = scan.weight >= 0.5
    assert abs(np.angle(np.exp(1j * data.phase[k])[lit].mean())) < 0.05  # de-meaned like real targets
    offset = np.angle(np.mean(np.exp(1j * (texture_phase - data.phase[k]))[lit]))
    assert np.abs(np.angle(np.exp(1j * (texture_phase - data.phase[k] - offset)))[lit]).max() < 1e-3


def test_sample_stats_read_the_contrast_of_real_pairs():
    pairs = small_pairs(0)
    stats = physics.sample_stats(pairs.phase, pairs.amplitude, pairs.weight, pairs.beam.counts_per_frame)
    frames = small_sim(0).scan.data
    assert stats.counts_per_frame == pytest.approx(frames.reshape(len(frames), -1).sum(axis=1).mean())
    assert 0.5 < stats.phase_range < 1.5  # the simulator's phase spans 1 rad
    assert 0.6 < stats.amplitude_min < 0.8  # and its amplitude 0.7 to 1


def _numpy_refine(probe, frames, phase, iterations, alpha=0.1):
    """rPIE's object step for one frame at a time, written directly with np.fft (the modulus
    replaced where the far field is above 1 % of the frame's RMS amplitude)."""
    power = np.abs(probe) ** 2
    amplitude = np.sqrt(np.fft.ifftshift(frames, axes=(-2, -1)))
    level = np.sqrt(frames.sum(axis=(1, 2)) / power.sum())[:, None, None]
    floor = 0.01 * np.sqrt(frames.mean(axis=(1, 2)))[:, None, None]
    obj = level * np.exp(1j * phase)
    for _ in range(iterations):
        psi = probe * obj
        far = np.fft.fft2(psi, norm="ortho")
        update = np.fft.ifft2(amplitude * far / (np.abs(far) + floor), norm="ortho") - psi
        obj = obj + np.conj(probe) * update / ((1 - alpha) * power + alpha * power.max())
    return obj


def test_refinement_is_rpie_s_object_step_and_sharpens_a_blurred_start():
    sim = small_sim(1, 10.0)
    pairs = small_pairs(1, 10.0)
    frames = np.asarray(sim.scan.data[:48], np.float64)
    blurred = ndimage.gaussian_filter(pairs.phase[:48], (0, 3, 3))
    refine = Refinement(sim.truth_probe, iterations=5)
    with torch.no_grad():
        got = refine(torch.from_numpy(np.sqrt(frames)[:, None].astype(np.float32)),
                     torch.from_numpy(blurred[:, None])).numpy()[:, 0]
    reference = _numpy_refine(sim.truth_probe.astype(np.complex128), frames, blurred.astype(np.float64), 5)
    lit = pairs.weight >= 0.1
    difference = np.angle(np.exp(1j * (got - np.angle(reference))))
    difference -= np.angle(np.exp(1j * difference[:, lit]).mean(axis=1))[:, None, None]  # refine() de-means
    assert np.abs(difference[:, lit]).max() < 1e-3
    # physics: the refined patches are closer to the truth than the blurred start
    before = np.mean([metrics.phase_rmse(b, t, lit) for b, t in zip(blurred, pairs.phase[:48])])
    after = np.mean([metrics.phase_rmse(g, t, lit) for g, t in zip(got, pairs.phase[:48])])
    assert after < 0.7 * before


def test_refined_model_exports_to_onnx_and_agrees_on_real_patterns(tmp_path):
    torch.manual_seed(0)
    config = ModelConfig("ptychonn2", 64, width=4)
    sim = small_sim(0)
    served = with_refinement(build_model(config).eval(), sim.truth_probe, PRE.to_json(), 3)
    assert type(served).__name__ == "RefinedModel"
    result = export_and_check(served, config, tmp_path / "model.onnx", small_pairs(0).diffraction[:16])
    assert result["max_abs_diff"] <= 1e-4


def test_refinement_only_where_the_input_is_a_measured_amplitude():
    probe = small_sim(0).truth_probe  # 64 x 64
    np.testing.assert_array_equal(network_probe(probe, PreprocessConfig(crop=64).to_json()), probe)
    assert network_probe(probe, PreprocessConfig(crop=32).to_json()).shape == (32, 32)  # a centred crop
    for pre in (PreprocessConfig(crop=48), PreprocessConfig(crop=64, transform="log1p"),
                PreprocessConfig(crop=64, bin_factor=2), PreprocessConfig(crop=32, center=(30.0, 34.0)),
                PreprocessConfig(crop=64, input_fft_shifted=True)):
        assert network_probe(probe, pre.to_json()) is None, pre
    network = build_model(ModelConfig("ptychonn2", 64, width=4))
    assert with_refinement(network, probe, PreprocessConfig(crop=64, bin_factor=2).to_json(), 5) is network
    assert with_refinement(network, None, PRE.to_json(), 5) is network
    wide_frame_probe = np.pad(probe, 32)  # 128 x 128: a network on the central 64 pixels is refined too
    assert type(with_refinement(network, wide_frame_probe, PRE.to_json(), 5)).__name__ == "RefinedModel"