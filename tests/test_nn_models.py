import pytest
import torch

from ptychoflow.nn.models import ModelConfig, build_model, parameter_count, predict_outputs

torch.set_num_threads(1)


@pytest.mark.parametrize("kind,expected", [("ptychonn", 1.16e6), ("ptychonn2", 0.72e6)])
@pytest.mark.parametrize("size", [64, 128])
def test_sizes_and_parameter_counts(kind, expected, size):
    model = build_model(ModelConfig(kind, size))
    assert abs(parameter_count(model) - expected) / expected < 0.03
    out = predict_outputs(model.eval(), torch.rand(2, 1, size, size))
    assert set(out) == ({"phase", "amplitude"} if kind == "ptychonn" else {"phase"})
    assert all(v.shape == (2, 1, size, size) for v in out.values())


def test_output_is_not_constant_at_init():
    """Default PyTorch init gave a constant output in a reference run; ours must not."""
    torch.manual_seed(0)
    model = build_model(ModelConfig("ptychonn2", 64)).eval()
    phase = model(torch.rand(2, 1, 64, 64) * 5)
    assert phase.std() > 0


def test_unknown_size_or_kind_is_refused():
    with pytest.raises(ValueError, match="size"):
        build_model(ModelConfig("ptychonn2", 96))
    with pytest.raises(ValueError, match="kind"):
        build_model(ModelConfig("unet", 64))
