"""Supervised training: Adam, cyclic LR (triangular2), L1 loss, keep the best validation.

Deterministic for a seed on CPU (seeded init, seeded shuffles). Mixed precision is used
only on CUDA; on CPU it would be slower and is skipped. The best checkpoint is written
atomically each time the validation loss improves, so stopping at any moment (time limit,
Ctrl-C, a killed process) leaves the best-so-far checkpoint whole.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ptychoflow.nn.checkpoint import save_checkpoint
from ptychoflow.nn.models import build_model, predict_outputs
from ptychoflow.nn.options import ModelConfig, TrainConfig


@dataclass
class TrainResult:
    best_val_loss: float
    best_epoch: int
    epochs_run: int
    seconds: float
    samples_per_s: float
    stopped_by: str  # "epochs" | "time_limit"
    history: list[dict] = field(default_factory=list)  # per epoch: train_loss, val_loss, lr, seconds

    def epochs_to_reach(self, val_loss: float) -> int | None:
        """First epoch (1-based) whose validation loss is at or below `val_loss`."""
        for row in self.history:
            if row["val_loss"] <= val_loss:
                return int(row["epoch"])
        return None


def augment_batch(x: torch.Tensor, y: torch.Tensor, code: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply one of the 8 symmetries of the square to patterns and targets together.

    Mirroring the object about the probe centre (patch pixel n/2) mirrors the far-field
    pattern about zero frequency (also pixel n/2 in detector order) if, and only if, the probe
    is symmetric too: P(-r) = P(r), true for the simulator's zone plate and for most focused
    probes to a good approximation. Index i -> n - i (mod n) is flip then roll by one.
    """
    for bit, dim in ((1, -2), (2, -1)):
        if code & bit:
            x = torch.roll(torch.flip(x, [dim]), 1, dim)
            y = torch.roll(torch.flip(y, [dim]), 1, dim)
    if code & 4:
        x, y = x.transpose(-2, -1), y.transpose(-2, -1)
    return x, y


def _targets(config: ModelConfig, phase: np.ndarray, amplitude: np.ndarray) -> torch.Tensor:
    t = [phase[:, None]] + ([amplitude[:, None]] if config.kind == "ptychonn" else [])
    return torch.from_numpy(np.concatenate(t, axis=1).astype(np.float32))


def loss_weight_map(weight: np.ndarray | None, power: float) -> torch.Tensor | None:
    """Per-pixel L1 weights, mean 1: only the lit centre of a patch is predictable from its
    pattern (DESIGN.md), so the dark rim, which stitching ignores anyway, should not soak up
    the network's capacity. power 0.5 keeps the half-lit overlap zone in play."""
    if weight is None or power == 0:
        return None
    w = np.asarray(weight, np.float64) ** power
    return torch.from_numpy((w / w.mean()).astype(np.float32))[None, None]


def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    outputs = predict_outputs(model, x)
    pred = torch.cat([outputs["phase"]] + ([outputs["amplitude"]] if "amplitude" in outputs else []), dim=1)
    if weight is None:
        return nn.functional.l1_loss(pred.float(), y)
    return ((pred.float() - y).abs() * weight).mean()


@torch.no_grad()
def evaluate_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch: int = 128, device: str = "cpu",
                  weight: torch.Tensor | None = None) -> float:
    """Mean (weighted) L1 over a set (eval mode: BatchNorm uses its running statistics)."""
    model.eval()
    total = 0.0
    for start in range(0, len(x), batch):
        xb, yb = x[start : start + batch].to(device), y[start : start + batch].to(device)
        total += float(_loss(model, xb, yb, weight)) * len(xb)
    return total / max(len(x), 1)


def train_model(
    config: ModelConfig,
    train: tuple[np.ndarray, np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    checkpoint_path: str | Path,
    preprocessing: dict,
    settings: TrainConfig | None = None,
    init_state: dict | None = None,
    meta: dict | None = None,
    weight: np.ndarray | None = None,
) -> TrainResult:
    """Train on (diffraction, phase, amplitude) arrays; best-val checkpoint at `checkpoint_path`.

    `weight` is the patches' probe intensity |P|^2 (h, w); the L1 is weighted by it to
    `settings.loss_weight_power`.
    """
    s = settings or TrainConfig()
    if s.threads:
        torch.set_num_threads(s.threads)
    torch.manual_seed(s.seed)
    rng = np.random.default_rng(s.seed)
    device = s.device or ("cuda" if torch.cuda.is_available() else "cpu")
    use_amp = (device == "cuda") if s.amp is None else (s.amp and device == "cuda")
    model = build_model(config)
    if init_state is not None:
        model.load_state_dict(init_state)
    model.to(device, memory_format=torch.channels_last)  # ~1.3x faster convs on CPU
    loss_w = loss_weight_map(weight, s.loss_weight_power)
    loss_w = None if loss_w is None else loss_w.to(device)
    x_train, y_train = torch.from_numpy(train[0]), _targets(config, train[1], train[2])
    x_val, y_val = torch.from_numpy(val[0]), _targets(config, val[1], val[2])
    batches_per_epoch = max(1, math.ceil(len(x_train) / s.batch_size))
    optimizer = torch.optim.Adam(model.parameters(), lr=s.lr_min)
    scheduler = torch.optim.lr_scheduler.CyclicLR(
        optimizer, base_lr=s.lr_min, max_lr=s.lr_max, mode="triangular2", cycle_momentum=False,
        step_size_up=max(1, int(s.half_cycle_epochs * batches_per_epoch)),
    )
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    show = sys.stderr.isatty() if s.progress is None else s.progress
    best, best_epoch, history, seen = math.inf, 0, [], 0
    stopped_by = "epochs"
    start = time.perf_counter()
    for epoch in range(1, s.epochs + 1):
        model.train()
        order = torch.from_numpy(rng.permutation(len(x_train)))
        running, count = 0.0, 0
        bar = _progress(batches_per_epoch, f"epoch {epoch}/{s.epochs}", show)
        for b in range(batches_per_epoch):
            idx = order[b * s.batch_size : (b + 1) * s.batch_size]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            xb, yb = x_train[idx], y_train[idx]
            if s.augment:
                xb, yb = augment_batch(xb, yb, int(rng.integers(8)))
            xb, yb = xb.to(device, memory_format=torch.channels_last), yb.contiguous().to(device)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=use_amp):
                loss = _loss(model, xb, yb, loss_w)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            running += float(loss.detach()) * len(idx)
            count += len(idx)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{running / count:.4f}")
            if time.perf_counter() - start > s.time_limit_s:
                stopped_by = "time_limit"
                break
        seen += count
        if bar is not None:
            bar.close()
        val_loss = evaluate_loss(model, x_val, y_val, device=device, weight=loss_w) if len(x_val) else running / max(count, 1)
        history.append({
            "epoch": epoch, "train_loss": running / max(count, 1), "val_loss": val_loss,
            "lr": scheduler.get_last_lr()[0], "seconds": time.perf_counter() - start,
        })
        if val_loss < best:
            best, best_epoch = val_loss, epoch
            save_checkpoint(checkpoint_path, model, config, preprocessing, val_loss=val_loss, epoch=epoch, **(meta or {}))
        if stopped_by == "time_limit":
            break
    seconds = time.perf_counter() - start
    return TrainResult(best, best_epoch, len(history), seconds, seen / max(seconds, 1e-9), stopped_by, history)


def _progress(total: int, desc: str, show: bool):
    if not show:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, leave=False, file=sys.stderr)
