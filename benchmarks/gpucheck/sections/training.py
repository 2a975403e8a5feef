"""Training: PtychoNN 2.0 at 128² through the pipeline's own ``train_model``, samples/s with
mixed precision (float16 autocast with gradient scaling, what it uses on CUDA) against fp32.

4096 random training pairs (throughput does not depend on their content), batch 64, up to 4
epochs each; samples/s over the epochs after the first, which pays for cuDNN's autotuning.
The dry run trains a narrow 64² model for 2 epochs on the CPU, fp32 only.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from gpucheck.record import Context, Record, Skip, figure


def steady_rate(result: Any, samples: int) -> float:
    """Samples/s over whole epochs after the first (an epoch cut by the time limit is left out)."""
    history = result.history[:-1] if result.stopped_by == "time_limit" else result.history
    if len(history) < 2:
        return result.samples_per_s
    return samples * (len(history) - 1) / (history[-1]["seconds"] - history[0]["seconds"])


def run(record: Record, context: Context) -> None:
    import torch

    from ptychoflow.nn.models import ModelConfig
    from ptychoflow.nn.training import TrainConfig, train_model

    cuda = torch.cuda.is_available()
    if context.dry:
        config, samples, batch, epochs, device = ModelConfig("ptychonn2", 64, width=8), 64, 16, 2, "cpu"
    elif not cuda:
        raise Skip(f"torch {torch.__version__} sees no CUDA device")
    else:
        config, samples, batch, epochs, device = ModelConfig("ptychonn2", 128), 4096, 64, 4, "cuda"
    size = config.size
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 4, (samples, 1, size, size)).astype(np.float32)
    phase = rng.uniform(-1, 1, (samples, size, size)).astype(np.float32)
    amplitude = np.ones_like(phase)
    validation = max(batch, samples // 16)
    setting = f"{samples} pairs, batch {batch}, {size}², on {device}"
    record.set("setting", {"samples": samples, "validation": validation, "batch": batch, "size": size,
                           "epochs": epochs, "device": device})
    variants = [("fp32", False)] + ([("mixed precision", True)] if device == "cuda" else [])
    rates: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for index, (label, amp) in enumerate(variants):
            limit = max(5.0, (context.remaining() - 10) / (len(variants) - index))
            settings = TrainConfig(epochs=epochs, batch_size=batch, amp=amp, device=device, progress=False,
                                   time_limit_s=limit)
            result = train_model(config, (x, phase, amplitude), (x[:validation], phase[:validation],
                                 amplitude[:validation]), checkpoint_path=Path(tmp) / f"{label}.pt",
                                 preprocessing={}, settings=settings)
            rates[label] = steady_rate(result, samples)
            record.set(label, {"samples_per_s": rates[label], "overall_samples_per_s": result.samples_per_s,
                               "epochs": result.epochs_run, "stopped_by": result.stopped_by,
                               "train_loss": [h["train_loss"] for h in result.history]})
            ratio = f" ({rates[label] / rates['fp32']:.2f}× fp32)" if label != "fp32" else ""
            record.row(f"{label} ({result.epochs_run} epochs)", f"{figure(rates[label])} samples/s{ratio}",
                       value=rates[label], unit="samples/s", reference=setting if label == "fp32" else "fp32, same run")
    if device != "cuda":
        record.skip("mixed precision", "needs CUDA (ptychoflow trains in fp32 on the CPU)")
