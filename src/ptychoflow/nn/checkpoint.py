"""Checkpoints: written to a temporary name, fsynced and renamed, so a crash or an
interrupted training never leaves a half-written file under a real checkpoint name; read
back with one clear error naming the file and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ptychoflow.errors import InputError
from ptychoflow.fs import atomic_write
from ptychoflow.nn.models import PtychoNN2, build_model
from ptychoflow.nn.options import ModelConfig

CHECKPOINT_FORMAT = 1
REQUIRED = ("format", "model_config", "preprocessing", "state_dict")


def save_checkpoint(path: str | Path, model: torch.nn.Module, config: ModelConfig, preprocessing: dict, **meta: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model_config": config.to_json(),
        "preprocessing": preprocessing,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "meta": meta,
    }
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint dict, validated field by field."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "(file)", "no such checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged zip/pickle
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(path, "(file)", f"not a readable checkpoint (truncated or corrupt?): {first}") from None
    if not isinstance(payload, dict):
        raise InputError(path, "(root)", f"expected a dict, got {type(payload).__name__}")
    for key in REQUIRED:
        if key not in payload:
            raise InputError(path, key, "missing field")
    if payload["format"] != CHECKPOINT_FORMAT:
        raise InputError(path, "format", f"unsupported checkpoint format {payload['format']!r}")
    return payload


def load_model(path: str | Path) -> tuple[PtychoNN2, ModelConfig, dict[str, Any]]:
    """(model in eval mode, its config, the checkpoint dict)."""
    payload = read_checkpoint(path)
    try:
        config = ModelConfig.from_json(payload["model_config"])
        model = build_model(config)
    except (TypeError, ValueError, KeyError) as exc:
        raise InputError(path, "model_config", str(exc)) from None
    try:
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, TypeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise InputError(path, "state_dict", f"does not fit a {config.kind} model: {first}") from None
    model.eval()
    return model, config, payload
