"""The torch inference backend against ONNX Runtime: every supported operator, the real
PtychoNN exports, reduced precision on a trained network, the fallback for what it cannot
run, and the edge service serving through it. On CPU with torch on CPU; the CUDA paths
(float16, CUDA graphs, device arrays) are the `gpu` tests at the end."""

from __future__ import annotations

import io
import logging
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from edge_helpers import ResultsCollector, preprocessing, publish, running_service, stream_frames, torch_convnet, wait_for
from ptychoflow.nn.infer import ort_session
from ptychoflow_edge.inference import best_providers, load_model, open_session
from ptychoflow_edge.onnx_torch import UnsupportedModel, load_onnx_module
from ptychoflow_edge.torch_backend import TOLERANCE, TORCH_CPU, TORCH_CUDA, TorchOptions, TorchSession

OPSET = 17


def export(module: nn.Module, shape: tuple[int, ...] = (1, 3, 16, 16), *, fold: bool = True) -> bytes:
    """`module` as ONNX from torch's own exporter (dynamic batch), the way PtychoNN is exported."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (torch.zeros(shape),), buffer, dynamo=False, input_names=["diffraction"],
                          output_names=["phase"], dynamic_axes={"diffraction": {0: "N"}, "phase": {0: "N"}},
                          opset_version=OPSET, do_constant_folding=fold)
    return buffer.getvalue()


def ort_outputs(blob: bytes, x: np.ndarray) -> list[np.ndarray]:
    return ort_session(blob, providers=["CPUExecutionProvider"]).run(None, {"diffraction": x})


def torch_outputs(blob: bytes, x: np.ndarray, precision: str = "float32") -> list[np.ndarray]:
    return TorchSession(blob, TORCH_CPU, TorchOptions(precision=precision)).run(None, {"diffraction": x})


def max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    assert [x.shape for x in a] == [y.shape for y in b]
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b))


class Skip(nn.Module):
    """A U-Net-style skip: Concat of an upsampled path with the input path."""

    def __init__(self) -> None:
        super().__init__()
        self.down = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(2))
        self.up = nn.ConvTranspose2d(4, 4, 2, stride=2)
        self.out = nn.Conv2d(7, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.cat([self.up(self.down(x)), x], dim=1))


class Arithmetic(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * 1.5 + 0.25 - x / 3.0).clamp(-1.0, 2.0)


OPERATOR_MODULES = {
    "conv-stride-dilation-groups": lambda: nn.Sequential(nn.Conv2d(3, 6, 3, stride=2, padding=2, dilation=2),
                                                         nn.Conv2d(6, 6, 3, padding=1, groups=3)),
    "conv-transpose": lambda: nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1),
    "batchnorm-unfolded": lambda: _with_statistics(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))),
    "maxpool-ceil-padded": lambda: nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
    "avgpool-include-pad": lambda: nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=True),
    "avgpool-exclude-pad": lambda: nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False),
    "upsample-nearest": lambda: nn.Upsample(scale_factor=2, mode="nearest"),
    "upsample-bilinear": lambda: nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
    "upsample-bilinear-corners": lambda: nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
    "activations": lambda: nn.Sequential(nn.LeakyReLU(0.2), nn.Sigmoid(), nn.Tanh(), nn.ReLU6()),
    "arithmetic-clip": Arithmetic,
    "concat-skip": Skip,
}


def _with_statistics(module: nn.Module) -> nn.Module:
    torch.manual_seed(2)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    return module


@pytest.mark.parametrize("case", sorted(OPERATOR_MODULES))
def test_operator_matches_onnx_runtime(case):
    torch.manual_seed(0)
    blob = export(OPERATOR_MODULES[case](), fold=case != "batchnorm-unfolded")
    x = np.random.default_rng(1).normal(0, 2, (3, 3, 16, 16)).astype(np.float32)
    assert max_diff(torch_outputs(blob, x), ort_outputs(blob, x)) <= TOLERANCE["float32"]


def test_batchnorm_really_unfolded():
    """The unfolded case above does exercise BatchNormalization (not a Conv it was folded into)."""
    import onnx

    blob = export(OPERATOR_MODULES["batchnorm-unfolded"](), fold=False)
    assert "BatchNormalization" in {n.op_type for n in onnx.load_from_string(blob).graph.node}


def _handmade(op: str, constants: dict[str, np.ndarray | None] | None = None, **attrs) -> bytes:
    """One-node graph built with onnx.helper: forms torch's exporter never writes. `constants`
    are the node's further inputs in order (None: an omitted optional input)."""
    from onnx import TensorProto, helper, numpy_helper

    constants = constants or {}
    inits = [numpy_helper.from_array(v, k) for k, v in constants.items() if v is not None]
    inputs = ["diffraction"] + [k if v is not None else "" for k, v in constants.items()]
    graph = helper.make_graph([helper.make_node(op, inputs, ["phase"], **attrs)], "one",
                              [helper.make_tensor_value_info("diffraction", TensorProto.FLOAT, ["N", 3, 16, 16])],
                              [helper.make_tensor_value_info("phase", TensorProto.FLOAT, None)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 9
    return model.SerializeToString()


WEIGHT = np.random.default_rng(3).normal(size=(2, 3, 3, 3)).astype(np.float32)
SCALES = np.array([1, 1, 2, 2], np.float32)


@pytest.mark.parametrize("op, constants, attrs", [
    ("Conv", {"w": WEIGHT}, {"kernel_shape": [3, 3], "pads": [0, 1, 2, 1]}),
    ("MaxPool", {}, {"kernel_shape": [3, 3], "pads": [1, 0, 0, 1], "strides": [2, 2]}),
    ("Resize", {"roi": None, "scales": SCALES},
     {"mode": "nearest", "coordinate_transformation_mode": "half_pixel", "nearest_mode": "round_prefer_ceil"}),
    ("Resize", {"roi": None, "scales": None, "sizes": np.array([2, 3, 24, 40], np.int64)},
     {"mode": "linear", "coordinate_transformation_mode": "half_pixel"}),
], ids=["conv-asymmetric-pads", "maxpool-asymmetric-pads", "resize-nearest-half-pixel", "resize-linear-sizes"])
def test_handmade_forms_match_onnx_runtime(op, constants, attrs):
    blob = _handmade(op, constants, **attrs)
    x = np.random.default_rng(4).normal(0, 1, (2, 3, 16, 16)).astype(np.float32)
    assert max_diff(torch_outputs(blob, x), ort_outputs(blob, x)) <= TOLERANCE["float32"]


@pytest.mark.parametrize("kind", ["ptychonn2", "ptychonn"])
def test_ptychonn_exports_match_onnx_runtime(tmp_path, kind):
    """The networks the pipeline trains, exported by ptychoflow.nn.export: every output agrees."""
    from ptychoflow.nn.export import export_onnx
    from ptychoflow.nn.models import ModelConfig, build_model

    config = ModelConfig(kind, 64)
    blob = export_onnx(build_model(config), config, tmp_path / "m.onnx").read_bytes()
    x = np.random.default_rng(5).uniform(0, 4, (5, 1, 64, 64)).astype(np.float32)
    got = TorchSession(blob, TORCH_CPU).run(None, {"diffraction": x})
    assert len(got) == len(config.outputs)
    assert max_diff(got, ort_outputs(blob, x)) <= TOLERANCE["float32"]


@pytest.fixture(scope="module")
def trained():
    """A small PtychoNN 2.0 trained briefly on simulated pairs, and real preprocessed patterns:
    reduced precision is judged on the value ranges a network really has."""
    import tempfile
    from pathlib import Path

    from nn_helpers import small_pairs
    from ptychoflow.nn.checkpoint import load_model as load_checkpoint
    from ptychoflow.nn.export import export_onnx
    from ptychoflow.nn.models import ModelConfig
    from ptychoflow.nn.training import TrainConfig, train_model

    pairs = small_pairs()
    x, phase, amplitude = pairs.diffraction, pairs.phase, pairs.amplitude
    config = ModelConfig("ptychonn2", 64, width=8)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / "best.pt"
        train_model(config, (x, phase, amplitude), (x[:8], phase[:8], amplitude[:8]), checkpoint_path=checkpoint,
                    preprocessing={}, settings=TrainConfig(epochs=6, batch_size=8, threads=1, progress=False))
        model, _, _ = load_checkpoint(checkpoint)
        blob = export_onnx(model, config, Path(tmp) / "m.onnx").read_bytes()
    return blob, x


@pytest.mark.parametrize("precision", ["float32", "float16", "bfloat16"])
def test_trained_network_within_stated_tolerance(trained, precision):
    blob, x = trained
    reference = ort_outputs(blob, x)
    assert float(np.ptp(reference[0])) > 0.3, "the trained network should predict a real phase range"
    session = TorchSession(blob, TORCH_CPU, TorchOptions(precision=precision))
    assert str(session.dtype) == f"torch.{precision}"
    assert max_diff(session.run(["phase"], {"diffraction": x}), reference) <= TOLERANCE[precision]


def test_unsupported_operator_is_named_and_the_edge_falls_back(tmp_path, caplog):
    blob = _handmade("Softmax", axis=1)
    with pytest.raises(UnsupportedModel, match="Softmax.*not supported"):
        load_onnx_module(blob)
    with caplog.at_level(logging.WARNING, logger="ptychoflow.edge.inference"):
        session = open_session(blob, [TORCH_CPU, "CPUExecutionProvider"], 1)
    assert session.get_providers() == ["CPUExecutionProvider"]
    assert "Softmax" in caplog.text and "using CPUExecutionProvider" in caplog.text


def test_provider_choice_on_a_host_without_gpu():
    assert TORCH_CUDA not in best_providers()  # no GPU here: never chosen
    assert best_providers()[0] == "CPUExecutionProvider"
    assert best_providers([TORCH_CPU, "CPUExecutionProvider"]) == [TORCH_CPU, "CPUExecutionProvider"]


def test_load_model_serves_through_torch(tmp_path):
    from ptychoflow.artifact import ModelManifest
    from ptychoflow.fs import sha256_file

    blob = torch_convnet(64)
    (tmp_path / "m.onnx").write_bytes(blob)
    manifest = ModelManifest("t", sha256_file(tmp_path / "m.onnx"), [1, 64, 64], preprocessing().to_json())
    model = load_model(manifest, blob, tmp_path, providers=[TORCH_CPU, "CPUExecutionProvider"], intra_op_threads=1)
    assert model.providers == [TORCH_CPU] and isinstance(model.session, TorchSession)
    frames = np.random.default_rng(6).poisson(30, (3, 80, 80)).astype(np.uint16)
    batch = model.prepare(frames)
    assert max_diff([model.infer(batch)], [ort_outputs(blob, batch)[0][:, 0]]) <= TOLERANCE["float32"]


def test_service_streams_through_the_torch_backend(tmp_path):
    """The real service with TorchCPU asked for: every frame inferred, and each result equals
    what ONNX Runtime computes for that frame."""
    from ptychoflow.preprocess import preprocess

    blob = torch_convnet(64)
    rng = np.random.default_rng(7)
    frames = rng.poisson(25, (40, 64, 64)).astype(np.uint16)
    positions = np.stack([np.arange(40) // 8, np.arange(40) % 8], 1) * 8e-8
    with running_service(tmp_path, providers=[TORCH_CPU, "CPUExecutionProvider"], batch_size=4,
                         max_wait_ms=5) as (service, publisher):
        publish(service.config.model_dir, blob, "v1")
        wait_for(lambda: service.models.current(), what="the model to load")
        results = ResultsCollector(service.publisher.address)
        stream_frames(publisher, "torch_scan", frames, positions, 1e-8, rate_hz=400.0)
        wait_for(lambda: results.ended("torch_scan"), what="end of scan")
        results.close()
        status = service.status()
    assert status["model"]["provider"] == TORCH_CPU
    assert status["counters"] == {"received": 40, "inferred": 40, "dropped": 0, "malformed": 0}
    expected = ort_outputs(blob, preprocess(frames, preprocessing())[:, None])[0][:, 0]
    got = sorted(results.results(), key=lambda r: r[0]["index"])
    assert [h["index"] for h, _ in got] == list(range(40))
    assert max_diff([np.stack([p for _, p in got])], [expected]) <= TOLERANCE["float32"]


# -- CUDA ---------------------------------------------------------------------------------
def _cuda() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device visible to torch (CPU-only host): the TorchCUDA paths need a GPU")


@pytest.mark.gpu
def test_cuda_is_chosen_after_onnxruntime_gpu_providers():
    _cuda()
    import onnxruntime

    providers = best_providers()
    ort_gpu = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider")
               if p in onnxruntime.get_available_providers()]
    assert providers[: len(ort_gpu) + 1] == ort_gpu + [TORCH_CUDA]


@pytest.mark.gpu
def test_cuda_graphs_reduced_precision_every_batch_size(trained):
    """float16 with CUDA graphs: within tolerance of ONNX Runtime at batch sizes that hit,
    fall between and exceed the graph buckets; the same as eager in the same precision."""
    _cuda()
    blob, x = trained
    x = np.concatenate([x] * 2)[:70]
    graphs = TorchSession(blob, TORCH_CUDA)
    eager = TorchSession(blob, TORCH_CUDA, TorchOptions(precision="float16", cuda_graphs=False))
    assert graphs.dtype == torch.float16 and graphs.use_graphs, graphs.description
    for n in (1, 3, 16, 64, 70):
        got = graphs.run(None, {"diffraction": x[:n]})
        assert max_diff(got, ort_outputs(blob, x[:n])) <= TOLERANCE["float16"]
        assert max_diff(got, eager.run(None, {"diffraction": x[:n]})) <= 1e-3


@pytest.mark.gpu
def test_cuda_takes_device_arrays(trained):
    _cuda()
    cupy = pytest.importorskip("cupy", reason="CuPy not installed: device-array input not testable")
    blob, x = trained
    session = TorchSession(blob, TORCH_CUDA)
    from_host = session.run(None, {"diffraction": x[:8]})
    from_device = session.run(None, {"diffraction": cupy.asarray(x[:8])})
    assert max_diff(from_device, from_host) == 0.0
