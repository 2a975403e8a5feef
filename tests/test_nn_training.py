"""Fast: a tiny model learns on a small simulated scan (loss falls, beats a constant)."""

import numpy as np
import torch
from nn_helpers import small_pairs

from ptychoflow.nn.checkpoint import load_model
from ptychoflow.nn.infer import predict_torch
from ptychoflow.nn.models import ModelConfig
from ptychoflow.nn.training import TrainConfig, train_model

TINY = ModelConfig("ptychonn2", 64, width=8)


def _sets():
    a, b = small_pairs(0, 10.0), small_pairs(1, 10.0)
    return (a.diffraction, a.phase, a.amplitude), (b.diffraction, b.phase, b.amplitude)


def test_tiny_model_learns(tmp_path):
    """Fitting, not generalisation (that is the slow test's job): scored on its own pairs."""
    train, _ = _sets()
    settings = TrainConfig(epochs=15, batch_size=16, lr_max=3e-3, half_cycle_epochs=2, threads=1, seed=0)
    result = train_model(TINY, train, train, checkpoint_path=tmp_path / "ck.pt", preprocessing={}, settings=settings)
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < 0.85 * losses[0]
    model, config, payload = load_model(tmp_path / "ck.pt")
    assert config == TINY and payload["meta"]["epoch"] == result.best_epoch
    pred = predict_torch(model, train[0])
    constant = np.abs(train[1] - np.median(train[1])).mean()  # the best constant predictor
    assert np.abs(pred - train[1]).mean() < 0.9 * constant
    assert np.std(pred) > 0.1 * np.std(train[1])  # not a constant output


def test_training_is_deterministic_for_a_seed(tmp_path):
    train, val = _sets()
    settings = TrainConfig(epochs=1, batch_size=16, threads=1, seed=7)
    runs = [train_model(TINY, train, val, checkpoint_path=tmp_path / f"{k}.pt", preprocessing={}, settings=settings)
            for k in range(2)]
    assert runs[0].history[0]["val_loss"] == runs[1].history[0]["val_loss"]


def test_time_limit_stops_and_keeps_a_checkpoint(tmp_path):
    train, val = _sets()
    settings = TrainConfig(epochs=1000, batch_size=16, time_limit_s=0.5, threads=1)
    result = train_model(TINY, train, val, checkpoint_path=tmp_path / "ck.pt", preprocessing={}, settings=settings)
    assert result.stopped_by == "time_limit" and result.epochs_run < 1000
    assert (tmp_path / "ck.pt").exists()


def test_warm_start_uses_the_given_weights(tmp_path):
    train, val = _sets()
    settings = TrainConfig(epochs=1, batch_size=16, threads=1, lr_min=1e-12, lr_max=1e-12)
    first = train_model(TINY, train, val, checkpoint_path=tmp_path / "a.pt", preprocessing={}, settings=TrainConfig(epochs=3, batch_size=16, threads=1))
    state = load_model(tmp_path / "a.pt")[2]["state_dict"]
    again = train_model(TINY, train, val, checkpoint_path=tmp_path / "b.pt", preprocessing={}, settings=settings, init_state=state)
    # LR ~0: same weights (only the BatchNorm running statistics move a little)
    assert abs(again.history[0]["val_loss"] - first.best_val_loss) < 2e-3
    torch.set_num_threads(1)


def test_augmentation_is_the_physics_of_a_mirrored_object():
    """With a symmetric probe, a mirrored/transposed object gives the mirrored pattern."""
    from ptychoflow.nn.pairs import cut_patches
    from ptychoflow.nn.training import augment_batch
    from ptychoflow.simulate.forward import expected_intensity
    from ptychoflow.simulate.probe import make_probe

    rng = np.random.default_rng(0)
    obj = (0.8 + 0.2 * rng.random((128, 128))) * np.exp(1j * rng.random((128, 128)))
    probe = make_probe("zoneplate", 64, diameter_px=30)
    centre = np.array([[64.0, 64.0]])
    base = torch.from_numpy(expected_intensity(obj, probe, centre)[:, None])
    patch = torch.from_numpy(np.angle(cut_patches(obj, centre, 64))[:, None])
    mirrored = {1: np.roll(obj[::-1], 1, 0), 2: np.roll(obj[:, ::-1], 1, 1), 4: obj.T}
    for code, other in mirrored.items():
        x, y = augment_batch(base, patch, code)
        np.testing.assert_allclose(x.numpy(), expected_intensity(other, probe, centre)[:, None], rtol=1e-4, atol=1e-3)
        # Row/column 0 wraps onto the patch's far edge, where the probe is dark (not learnable anyway).
        want = np.angle(cut_patches(other, centre, 64))[:, None]
        np.testing.assert_allclose(y.numpy()[..., 1:, 1:], want[..., 1:, 1:], atol=1e-6)


def test_loss_weight_follows_the_probe_and_keeps_the_scale():
    from ptychoflow.nn.training import loss_weight_map

    weight = small_pairs(0).weight
    w = loss_weight_map(weight, 0.5)
    assert w.shape == (1, 1, 64, 64) and abs(float(w.mean()) - 1) < 1e-5
    assert float(w[0, 0, 32, 32]) > float(w[0, 0, 2, 2])
    assert loss_weight_map(weight, 0) is None


def test_mixed_precision_on_gpu(tmp_path):
    if not torch.cuda.is_available():
        import pytest

        pytest.skip("no CUDA device (CPU-only torch here): AMP path runs only on a GPU")
    train, val = _sets()
    settings = TrainConfig(epochs=2, batch_size=16, device="cuda", amp=True)
    result = train_model(TINY, train, val, checkpoint_path=tmp_path / "ck.pt", preprocessing={}, settings=settings)
    assert np.isfinite(result.best_val_loss)
