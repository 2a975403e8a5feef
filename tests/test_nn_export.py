import numpy as np
import pytest
import torch
from nn_helpers import small_pairs

from ptychoflow.nn.export import ExportMismatch, check_onnx, export_and_check
from ptychoflow.nn.infer import ort_session, predict_onnx, predict_torch
from ptychoflow.nn.models import ModelConfig, build_model

torch.set_num_threads(1)


@pytest.mark.parametrize("kind", ["ptychonn2", "ptychonn"])
def test_onnx_matches_pytorch_on_random_and_real_inputs(tmp_path, kind):
    torch.manual_seed(0)
    config = ModelConfig(kind, 64)
    model = build_model(config).eval()
    real = small_pairs(0).diffraction
    result = export_and_check(model, config, tmp_path / "m.onnx", real)
    assert result["max_abs_diff"] <= 1e-4
    session = ort_session(result["onnx_path"], providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["diffraction"]
    assert [o.name for o in session.get_outputs()] == config.outputs
    # Dynamic batch: 1, 5 and 17 frames through the same graph.
    for batch in (1, 5, 17):
        got = predict_onnx(session, real[:batch], batch=batch)
        np.testing.assert_allclose(got, predict_torch(model, real[:batch]), atol=1e-4)


def test_batchnorm_variant_exports_too(tmp_path):
    config = ModelConfig("ptychonn2", 64, batchnorm=True)
    model = build_model(config).eval()
    assert export_and_check(model, config, tmp_path / "m.onnx")["max_abs_diff"] <= 1e-4


def test_a_different_model_is_caught(tmp_path):
    config = ModelConfig("ptychonn2", 64)
    torch.manual_seed(0)
    path = export_and_check(build_model(config), config, tmp_path / "m.onnx")["onnx_path"]
    torch.manual_seed(1)
    with pytest.raises(ExportMismatch, match="differs"):
        check_onnx(build_model(config), path, np.ones((1, 1, 64, 64), np.float32))


def test_gpu_execution_providers():
    ort = pytest.importorskip("onnxruntime")
    available = ort.get_available_providers()
    if "CUDAExecutionProvider" not in available and "TensorrtExecutionProvider" not in available:
        pytest.skip(f"no CUDA/TensorRT execution provider in this onnxruntime build (have {available})")
    from ptychoflow.nn.infer import ort_providers

    assert ort_providers()[0] in ("TensorrtExecutionProvider", "CUDAExecutionProvider")
