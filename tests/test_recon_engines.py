"""The engine registry and "auto", the Tike path (GPU only) and the Pty-chi conventions."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from _recon_helpers import tiny_scan, write_tiny
from conftest import REPO, run_cli
from ptychoflow.errors import PtychoflowError
from ptychoflow.recon import ptychi_engine, tike_engine
from ptychoflow.recon.api import reconstruct
from ptychoflow.recon.base import RpieOptions, prepare_scan
from ptychoflow.recon.registry import (
    AUTO, ENGINE_CHOICES, ENGINE_NAMES, ENGINES, EngineUnavailable, choose_engine, get_engine,
)

TIKE_OK, TIKE_REASON = tike_engine.available()


def test_registry_names_each_engine_once_with_its_implementation():
    assert ENGINE_NAMES == ("tike", "ptychi") and ENGINE_CHOICES == (AUTO, *ENGINE_NAMES)
    for name, spec in ENGINES.items():
        assert spec.name == name and spec.devices and spec.summary and spec.needs
        module = spec.implementation()
        assert callable(module.available) and callable(module.ready_devices) and callable(module.reconstruct)
        assert set(spec.ready_devices()) <= set(spec.devices)
    with pytest.raises(ValueError, match="unknown engine 'epie'; choose one of auto, tike, ptychi"):
        get_engine("epie")


def _engine_enums(node: object) -> list[dict]:
    """Every JSON-schema property called "engine", anywhere in `node`."""
    if isinstance(node, list):
        return [found for item in node for found in _engine_enums(item)]
    if not isinstance(node, dict):
        return []
    here = [node["properties"]["engine"]] if isinstance(node.get("properties"), dict) and "engine" in node["properties"] else []
    return here + [found for value in node.values() for found in _engine_enums(value)]


def test_flow_schemas_offer_exactly_the_registered_engines():
    checked = {}
    for path in sorted((REPO / "flows").glob("*.schema.json")):
        for prop in _engine_enums(json.loads(path.read_text())):
            assert prop["enum"] == list(ENGINE_CHOICES), path.name
            assert prop.get("default", AUTO) == AUTO, path.name
            checked[path.name] = True
    assert {"reconstruct.schema.json", "reconstruct_and_train.schema.json"} <= set(checked)


def test_profile_and_cli_take_their_engine_names_from_the_registry():
    from ptychoflow.cli.reconstruct import reconstruct as command
    from ptychoflow.profile import Policy

    engine_option = next(p for p in command.params if p.name == "engine")
    assert tuple(engine_option.type.choices) == ENGINE_CHOICES
    for name in ENGINE_CHOICES:
        assert Policy(engine=name).engine == name
    with pytest.raises(ValueError, match="'auto', 'tike' or 'ptychi'"):
        Policy(engine="epie")


def test_auto_picks_tike_only_with_gpu_and_tike():
    choice = choose_engine("auto", "auto")
    if TIKE_OK:
        assert choice.engine == "tike" and choice.device == "gpu"
    else:
        assert choice.engine == "ptychi" and TIKE_REASON in choice.reason
        assert choice.device == ("gpu" if ptychi_engine.gpu_available() else "cpu")


def test_cpu_request_never_picks_tike():
    choice = choose_engine("auto", "cpu")
    assert (choice.engine, choice.device) == ("ptychi", "cpu") and "device=cpu" in choice.reason


def test_unknown_engine_is_rejected():
    with pytest.raises(ValueError, match="unknown engine"):
        choose_engine("epie")
    with pytest.raises(ValueError, match="device must be one of auto, cpu, gpu"):
        choose_engine("ptychi", "tpu")


def test_a_device_the_engine_does_not_run_on_is_refused():
    with pytest.raises(EngineUnavailable, match="device=cpu requested; tike runs on gpu only"):
        choose_engine("tike", "cpu")


@pytest.mark.skipif(TIKE_OK, reason="tike is usable here; the unavailable path is not reachable")
def test_tike_request_without_gpu_says_why():
    with pytest.raises(EngineUnavailable, match="tike") as info:
        choose_engine("tike")
    assert isinstance(info.value, PtychoflowError) and ENGINES["tike"].needs in str(info.value)


@pytest.mark.skipif(TIKE_OK, reason="tike is usable here; the unavailable path is not reachable")
def test_cli_refuses_an_unusable_engine_in_one_line_before_any_work(tmp_path):
    scan = write_tiny(tmp_path)
    result = run_cli("reconstruct", str(scan), "--engine", "tike", "--out", str(tmp_path / "out"), check=False)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == f"error: engine 'tike' unavailable: {TIKE_REASON}; needs {ENGINES['tike'].needs}"
    assert not (tmp_path / "out").exists()


def test_auto_takes_the_first_engine_that_runs_and_says_why(monkeypatch):
    """A stand-in registry: the preferred engine cannot run, so auto falls through to the next."""
    import types

    from ptychoflow.recon import registry
    from ptychoflow.recon.registry import EngineSpec

    broken = types.ModuleType("broken_engine")
    broken.available = lambda: (False, "its driver is missing")
    broken.ready_devices = lambda: ()
    monkeypatch.setitem(sys.modules, "broken_engine", broken)
    specs = {"fast": EngineSpec("fast", "a stand-in", "a driver", ("gpu",), "broken_engine"), "ptychi": ENGINES["ptychi"]}
    monkeypatch.setattr(registry, "ENGINES", specs)
    choice = choose_engine(AUTO, "cpu")
    assert (choice.engine, choice.device) == ("ptychi", "cpu")
    assert choice.reason.startswith("auto after fast unusable (device=cpu requested; fast runs on gpu only)")
    choice = choose_engine(AUTO, "auto")
    assert "fast unusable (its driver is missing; needs a driver)" in choice.reason


def test_options_are_validated():
    with pytest.raises(ValueError, match="alpha"):
        RpieOptions(alpha=0)
    with pytest.raises(ValueError, match="iterations"):
        RpieOptions(iterations=0)
    with pytest.raises(ValueError, match="momentum"):
        RpieOptions(momentum=1.0)


def test_momentum_reaches_ptychis_object_optimiser():
    """--momentum is Pty-chi's SGD momentum on the object's rPIE step, and plain rPIE without it:
    the same start and seed give the same object at 0 and a different one with momentum."""
    import torch

    prepared = prepare_scan(tiny_scan().scan)

    def object_after(momentum: float) -> np.ndarray:
        task = ptychi_engine.build_task(prepared, RpieOptions(iterations=3, momentum=momentum), "cpu")
        assert task.object.optimizer.param_groups[0].get("momentum", 0) == momentum
        torch.manual_seed(0)
        task.run(n_epochs=3)
        return task.get_data_to_cpu("object", as_numpy=True)[0]

    plain = object_after(0.0)
    np.testing.assert_array_equal(object_after(0.0), plain)
    assert np.abs(object_after(0.5) - plain).max() > 1e-3


def test_object_frame_covers_every_patch_with_margin():
    prepared = prepare_scan(tiny_scan().scan)
    n = prepared.frame_size
    corners = np.rint(prepared.positions_in_object() - n / 2)
    assert corners.min() >= 1 and (corners.max(axis=0) + n <= np.array(prepared.object_shape) - 1).all()
    # the probe's power is the mean frame count (ortho FFT, |O| ~ 1)
    power = float(np.sum(np.abs(prepared.probe) ** 2))
    assert power == pytest.approx(prepared.intensities.sum(axis=(1, 2)).mean(), rel=1e-4)


def test_ptychi_forward_model_matches_ours_with_the_true_object():
    """With the truth as object and probe, Pty-chi predicts our simulated intensities (conventions)."""
    import torch

    sim = tiny_scan()
    prepared = prepare_scan(sim.scan)
    prepared.probe = sim.truth_probe
    task = ptychi_engine.build_task(prepared, RpieOptions(iterations=1), "cpu")
    oy, ox = prepared.object_origin_px.astype(int)
    truth = np.ones(prepared.object_shape, np.complex64)
    h, w = sim.truth_object.shape
    truth[-oy : -oy + h, -ox : -ox + w] = sim.truth_object  # origin is negative: truth sits inside
    with torch.no_grad():
        task.object.set_data(torch.as_tensor(truth)[None])
        indices = torch.arange(5)
        fm = task.reconstructor.forward_model
        predicted = fm.forward(indices).cpu().numpy()  # intensities, zero frequency at the corner
    from ptychoflow.simulate.forward import expected_intensity

    expected = np.fft.ifftshift(expected_intensity(sim.truth_object, sim.truth_probe, sim.positions_px[:5]), axes=(-2, -1))
    np.testing.assert_allclose(predicted, expected, rtol=2e-3, atol=1e-2 * expected.max())


@pytest.mark.gpu
@pytest.mark.skipif(not TIKE_OK, reason=f"Tike path needs a GPU: {TIKE_REASON}")
def test_tike_reconstructs_a_tiny_scan():
    result = reconstruct(tiny_scan().scan, RpieOptions(iterations=20, batch_size=16), engine="tike")
    assert result.engine == "tike" and result.iterations_run == 20
    assert np.isfinite(result.loss_history).all() and result.loss_history[-1] < result.loss_history[0]
    np.testing.assert_allclose(result.positions_px, tiny_scan().positions_px, atol=1e-4)


def test_cpu_threads_default_and_override(monkeypatch):
    monkeypatch.delenv(ptychi_engine.THREADS_ENV, raising=False)
    assert ptychi_engine.cpu_threads() == ptychi_engine.DEFAULT_THREADS
    monkeypatch.setenv(ptychi_engine.THREADS_ENV, "4")
    assert ptychi_engine.cpu_threads() == 4
    monkeypatch.setenv(ptychi_engine.THREADS_ENV, "many")
    with pytest.raises(ValueError, match=ptychi_engine.THREADS_ENV):
        ptychi_engine.cpu_threads()


def test_tike_glue_conventions_with_a_stand_in_tike(monkeypatch):
    """Without a GPU, check what the Tike engine hands to Tike and how it maps results back."""
    import sys
    import types
    from dataclasses import dataclass, field

    seen: dict = {}

    @dataclass
    class PtychoParameters:
        psi: np.ndarray
        probe: np.ndarray
        scan: np.ndarray
        algorithm_options: object = None
        object_options: object = None
        probe_options: object = None
        position_options: object = None

    @dataclass
    class Options:
        kwargs: dict = field(default_factory=dict)

    class Reconstruction:
        def __init__(self, data, parameters, num_gpu):
            seen["data"], seen["parameters"], self.costs = data, parameters, []

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def iterate(self, n):
            self.costs.append([1.0 / (len(self.costs) + 1)] * 2)

        def get_convergence(self):
            return self.costs, []

        def get_result(self):
            return seen["parameters"]

    fake = types.ModuleType("tike.ptycho")
    fake.PtychoParameters, fake.Reconstruction = PtychoParameters, Reconstruction
    for name in ("RpieOptions", "ObjectOptions", "ProbeOptions", "PositionOptions"):
        setattr(fake, name, lambda *args, **kwargs: Options(kwargs))
    package = types.ModuleType("tike")
    package.ptycho = fake
    monkeypatch.setitem(sys.modules, "tike", package)
    monkeypatch.setitem(sys.modules, "tike.ptycho", fake)
    monkeypatch.setattr(tike_engine, "available", lambda: (True, "stand-in"))

    sim = tiny_scan()
    prepared = prepare_scan(sim.scan)
    result = tike_engine.reconstruct(prepared, RpieOptions(iterations=3, batch_size=8, probe_refinement=False))
    n = prepared.frame_size
    np.testing.assert_array_equal(seen["data"], np.fft.ifftshift(prepared.intensities, axes=(-2, -1)))
    params = seen["parameters"]
    np.testing.assert_allclose(params.scan, sim.positions_px - n / 2 - prepared.object_origin_px)
    assert params.probe.shape == (1, 1, 1, n, n) and params.psi.shape == (1, *prepared.object_shape)
    assert params.probe_options.kwargs["update_start"] == 4  # fixed probe: never updated
    np.testing.assert_allclose(result.positions_px, sim.positions_px, atol=1e-4)
    np.testing.assert_allclose(result.loss_history, [1.0, 0.5, 1 / 3])
    assert result.engine == "tike" and result.object.shape == prepared.object_shape


def test_the_shared_iteration_loop_reports_stops_and_refuses_divergence():
    import time

    from ptychoflow.recon.iterations import run_iterations

    losses = iter([4.0, 2.0, 1.0])
    seen = []
    run = run_iterations(lambda: next(losses), RpieOptions(iterations=3), engine="stand-in", started=time.perf_counter(),
                         progress=seen.append)
    assert run.losses == [4.0, 2.0, 1.0] and run.stop_reason == "completed"
    assert [(i.iteration, i.total, i.loss) for i in seen] == [(1, 3, 4.0), (2, 3, 2.0), (3, 3, 1.0)]

    limited = run_iterations(lambda: 1.0, RpieOptions(iterations=50, time_limit_s=1e-9), engine="stand-in",
                             started=time.perf_counter())
    assert limited.losses == [1.0] and limited.stop_reason.startswith("time limit 1e-09 s reached after 1 iterations")

    diverging = iter([1.0, float("nan")])
    with pytest.raises(FloatingPointError, match="diverged at iteration 2"):
        run_iterations(lambda: next(diverging), RpieOptions(iterations=5), engine="stand-in", started=time.perf_counter())
