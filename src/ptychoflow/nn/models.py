"""PtychoNN (amplitude + phase) and the light phase-only "PtychoNN 2.0" used at the edge.

Both are fully convolutional (input size 64 or 128 only changes activations, not the
parameter count): a 3-stage conv encoder (32-64-128 channels, max-pool) and mirror
decoders (nearest upsampling). With PyTorch's default init the plain stack collapses to a
constant output (SSIM 0.03 in a reference run). He (Kaiming) init alone did not cure it here
(training loss flat at the constant predictor's for 8 epochs), so every conv is followed by
BatchNorm (default) on top of He init, with the last layer starting near zero. BatchNorm
costs CPU training time (~1.3-1.5x) but folds into the convs in ONNX: free at the edge.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from ptychoflow.nn.options import ModelConfig

ModelKind = Literal["ptychonn", "ptychonn2"]
MODEL_KINDS: tuple[str, ...] = ("ptychonn", "ptychonn2")
SUPPORTED_SIZES = (64, 128)


def _conv(cin: int, cout: int, batchnorm: bool) -> list[nn.Module]:
    if batchnorm:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True)]


def _encoder(width: int, bn: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    cin = 1
    for stage in range(3):
        cout = width * 2**stage
        layers += _conv(cin, cout, bn) + _conv(cout, cout, bn) + [nn.MaxPool2d(2)]
        cin = cout
    return nn.Sequential(*layers)


def _decoder(width: int, bn: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    cin = width * 4
    for stage in (2, 1, 0):
        cout = width * 2**stage
        layers += _conv(cin, cout, bn) + _conv(cout, cout, bn) + [nn.Upsample(scale_factor=2, mode="nearest")]
        cin = cout
    layers.append(nn.Conv2d(cin, 1, 3, padding=1))
    return nn.Sequential(*layers)


class PtychoNN2(nn.Module):
    """Phase-only network: diffraction (B,1,H,W) -> phase (B,1,H,W) in (-pi, pi)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = _encoder(config.width, config.batchnorm)
        self.phase_decoder = _decoder(config.width, config.batchnorm)
        _init(self)

    def forward(self, diffraction: torch.Tensor) -> torch.Tensor:
        return math.pi * torch.tanh(self.phase_decoder(self.encoder(diffraction)))


class PtychoNN(PtychoNN2):
    """Encoder + phase and amplitude decoders: -> (phase, amplitude), amplitude in (0, 1)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.amplitude_decoder = _decoder(config.width, config.batchnorm)
        _init(self.amplitude_decoder)

    def forward(self, diffraction: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        code = self.encoder(diffraction)
        phase = math.pi * torch.tanh(self.phase_decoder(code))
        return phase, torch.sigmoid(self.amplitude_decoder(code))


def _init(module: nn.Module) -> None:
    """He init for ReLU convs; the final 1-channel convs start small so outputs start near 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            if m.out_channels == 1:
                nn.init.normal_(m.weight, std=1e-3)
            else:
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def build_model(config: ModelConfig) -> PtychoNN2:
    if config.kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {config.kind!r}; choose from {', '.join(MODEL_KINDS)}")
    if config.size not in SUPPORTED_SIZES:
        raise ValueError(f"model size {config.size} not supported; choose from {SUPPORTED_SIZES}")
    return PtychoNN(config) if config.kind == "ptychonn" else PtychoNN2(config)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def predict_outputs(model: nn.Module, batch: torch.Tensor) -> dict[str, torch.Tensor]:
    """Model outputs by name (phase, and amplitude for PtychoNN), each (B,1,H,W)."""
    out = model(batch)
    if isinstance(out, tuple):
        return {"phase": out[0], "amplitude": out[1]}
    return {"phase": out}
