"""Training figures on CPU: samples/s per model, warm start vs scratch, SSIM vs corpus size.

    PYTHONPATH=src python benchmarks/train.py throughput [--threads 2]
    PYTHONPATH=src python benchmarks/train.py warmstart  [--epochs 8]
    PYTHONPATH=src python benchmarks/train.py curve      [--scans 2,4,8] [--seconds 120]

Scans are simulated 256x256 regions (~750 positions, 64x64 frames); the simulator's truth
stands in for rPIE. The curve tests on region 2 of the astronaut/camera sample, never trained
on; beyond the 3 other regions of that sample, extra scans come from other samples (the
simulator has 4 distinct 256x256 regions per image).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ptychoflow.nn.corpus import append_scan, load_corpus
from ptychoflow.nn.evaluate import stitched_ssim
from ptychoflow.nn.infer import predict_torch
from ptychoflow.nn.models import build_model, parameter_count
from ptychoflow.nn.options import ModelConfig
from ptychoflow.nn.pairs import ReconstructionLike, make_pairs
from ptychoflow.nn.split import split_corpus
from ptychoflow.nn.options import TrainConfig
from ptychoflow.nn.training import train_model
from ptychoflow.preprocess import PreprocessConfig
from ptychoflow.simulate.beamline import SimulationOptions, simulate_scan

PRE = PreprocessConfig(crop=64)
TEST = ("astronaut", 2)
TRAIN_ORDER = [("astronaut", 0), ("astronaut", 1), ("astronaut", 3), ("coffee", 0), ("chelsea", 0),
               ("rocket", 0), ("brick", 0), ("coins", 0)]


STEP_PX = [7.2]  # scan step; 7.2 px gives ~750 positions per 256x256 region (--step)


def pairs_for(phase: str, region: int):
    sim = simulate_scan(SimulationOptions(step_px=STEP_PX[0], phase=phase), scan_id=f"{phase}-{region}", region=region)
    return sim.scan.scan_id, make_pairs(sim.scan.data, ReconstructionLike.from_simulation(sim), PRE)


def build_corpus(path: Path, scans: list[tuple[str, int]]):
    for phase, region in scans:
        scan_id, pairs = pairs_for(phase, region)
        append_scan(path, scan_id, pairs, PRE.to_json())
    return load_corpus(path)


def sets(data, split):
    rows = lambda idx: (data.diffraction[idx], data.phase[idx], data.amplitude[idx])  # noqa: E731
    return rows(split.train), rows(split.val)


def fit(config, data, path: Path, settings: TrainConfig, init_state=None):
    """Train as the pipeline does (block/scan split, |P|^2-weighted L1)."""
    train, val = sets(data, split_corpus(data))
    weight = np.mean([s.weight for s in data.scans], axis=0)
    return train_model(config, train, val, checkpoint_path=path, preprocessing=PRE.to_json(), settings=settings,
                       init_state=init_state, weight=weight), len(train[0]), len(val[0])


def throughput(args) -> None:
    torch.set_num_threads(args.threads)
    print(f"training samples/s on CPU ({args.threads} threads, batch 32, Adam, L1)")
    for kind in ("ptychonn2", "ptychonn"):
        for size in (64, 128):
            for bn in (False, True):
                config = ModelConfig(kind, size, batchnorm=bn)
                model = build_model(config).to(memory_format=torch.channels_last)
                opt = torch.optim.Adam(model.parameters(), 1e-3)
                x = torch.rand(32, 1, size, size).to(memory_format=torch.channels_last)
                y = torch.rand(32, len(config.outputs), size, size)
                n, start = 0, None
                while start is None or time.perf_counter() - start < args.seconds:
                    out = model(x)
                    out = torch.cat(out, 1) if isinstance(out, tuple) else out
                    opt.zero_grad()
                    torch.nn.functional.l1_loss(out, y).backward()
                    opt.step()
                    if start is None:
                        start = time.perf_counter()  # first step is warm-up
                    else:
                        n += 32
                rate = n / (time.perf_counter() - start)
                print(f"  {kind:<10} {size:>3}x{size:<3} batchnorm={bn!s:<5} {parameter_count(model) / 1e6:.2f} M  {rate:7.1f} samples/s")


def warmstart(args) -> None:
    """Parent: scratch on scan A. Then on corpus A+B: scratch vs warm start from the parent;
    epochs until each reaches the scratch run's best validation loss."""
    torch.set_num_threads(args.threads)
    config = ModelConfig("ptychonn2", 64)
    settings = TrainConfig(epochs=args.epochs, seed=0, time_limit_s=1e9)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        parent, _, _ = fit(config, build_corpus(tmp / "a.h5", TRAIN_ORDER[:1]), tmp / "parent.pt", settings)
        state = torch.load(tmp / "parent.pt", weights_only=True)["state_dict"]
        both = build_corpus(tmp / "a.h5", TRAIN_ORDER[1:2])
        scratch, n_train, n_val = fit(config, both, tmp / "s.pt", settings)
        warm, _, _ = fit(config, both, tmp / "w.pt", settings, init_state=state)
    print(f"parent (scan A only): best val loss {parent.best_val_loss:.4f} after {parent.epochs_run} epochs")
    print(f"corpus A+B ({n_train} train / {n_val} val pairs), {args.epochs} epochs each:")
    for name, r in (("scratch", scratch), ("warm", warm)):
        curve = " ".join(f"{h['val_loss']:.4f}" for h in r.history)
        print(f"  {name:<8} val loss per epoch: {curve}  ({r.seconds:.0f} s)")
    target = scratch.best_val_loss
    print(f"  epochs to reach scratch's best ({target:.4f}): scratch {scratch.epochs_to_reach(target)}, "
          f"warm {warm.epochs_to_reach(target)}")
    for level in (0.10, 0.09, 0.08, 0.07):
        print(f"  epochs to reach {level:.2f}: scratch {scratch.epochs_to_reach(level)}, warm {warm.epochs_to_reach(level)}")


def curve(args) -> None:
    torch.set_num_threads(args.threads)
    config = ModelConfig("ptychonn2", 64)
    _, test = pairs_for(*TEST)
    print(f"SSIM on unseen {TEST[0]} region {TEST[1]} vs corpus size ({args.seconds:.0f} s of training each, scratch)")
    with tempfile.TemporaryDirectory() as tmp:
        for count in (int(c) for c in args.scans.split(",")):
            data = build_corpus(Path(tmp) / f"c{count}.h5", TRAIN_ORDER[:count])
            settings = TrainConfig(epochs=1000, time_limit_s=args.seconds, seed=0)
            r, n_train, _ = fit(config, data, Path(tmp) / f"{count}.pt", settings)
            model = build_model(config)
            model.load_state_dict(torch.load(Path(tmp) / f"{count}.pt", weights_only=True)["state_dict"])
            pred = predict_torch(model, test.diffraction)
            score = stitched_ssim(pred, test.positions_px, test.weight, test.reference_phase)
            print(f"  {count} scans, {n_train:>5} train pairs: {r.epochs_run:>3} epochs, val loss {r.best_val_loss:.4f}, SSIM {score:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["throughput", "warmstart", "curve"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--scans", default="2,4,8")
    parser.add_argument("--step", type=float, default=7.2, help="scan step in pixels (10: ~380 positions per scan)")
    args = parser.parse_args()
    STEP_PX[0] = args.step
    if args.seconds is None:
        args.seconds = 5.0 if args.what == "throughput" else 120.0
    {"throughput": throughput, "warmstart": warmstart, "curve": curve}[args.what](args)


if __name__ == "__main__":
    main()
