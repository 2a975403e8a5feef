"""Training figures: samples/s per model, warm start vs scratch, SSIM vs corpus size, ablation.

    PYTHONPATH=src:edge python benchmarks/train.py throughput [--threads 2]
    PYTHONPATH=src:edge python benchmarks/train.py warmstart  [--epochs 8]
    PYTHONPATH=src:edge python benchmarks/train.py curve      [--scans 2,4,8] [--epochs 10] [--seconds 90]
    PYTHONPATH=src:edge python benchmarks/train.py curve --full   # GPU: 50 epochs, up to 32 scans
    PYTHONPATH=src:edge python benchmarks/train.py ablation   [--seconds 90]
    PYTHONPATH=src:edge python benchmarks/train.py pretrain   [--seconds 60]

curve: corpus scans are simulated 256x256 regions (``--step`` 7.2 px: ~750 positions of 64x64
frames); the simulator's truth stands in for rPIE. The test is region 2 of the
astronaut/camera sample, never trained on. Each corpus size trains twice from scratch, the
pipeline's way (``continual_train``, no physics pairs: only the real corpus grows): for a
fixed number of epochs (is the data enough?) and for a fixed time (is the compute?). The
score is the served model's (network + physics refinement, its ONNX as the edge runs it)
and the network's alone.

ablation: the demo's geometry (4 scans of 378 positions, rPIE labels from Pty-chi, 60
iterations). Each arm trains for the same time on scan 1 and is scored on scans 2-4 against
their rPIE (regions it never saw), as the edge serves the model. Arms switch one thing at a
time against the pipeline's choice. The last column adds what the edge does when a scan ends:
the served image polished across frames through the probe staged with the model
(ptychoflow.polish; a guessed probe is refined on the way).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from _common import header
from ptychoflow.nn.checkpoint import load_model
from ptychoflow.nn.continual import continual_train, scan_pairs, validate_best
from ptychoflow.nn.corpus import append_scan, load_corpus
from ptychoflow.nn.evaluate import stitched_ssim
from ptychoflow.nn.infer import predict_torch
from ptychoflow.nn.models import build_model, parameter_count
from ptychoflow.nn.options import PHYSICS_PAIRS, ContinualOptions, ModelConfig, TrainConfig
from ptychoflow.nn.pairs import ReconstructionLike, make_pairs
from ptychoflow.nn.registry import Registry
from ptychoflow.nn.start import start_model
from ptychoflow.nn.split import split_corpus
from ptychoflow.nn.training import train_model
from ptychoflow.preprocess import PreprocessConfig
from ptychoflow.scan.format import write_scan
from ptychoflow.simulate.beamline import SimulationOptions, save_truth, simulate_scan

PRE = PreprocessConfig(crop=64)
TEST = ("astronaut", 2)
IMAGES = ("astronaut", "coffee", "chelsea", "rocket", "brick", "coins", "moon", "grass", "gravel", "camera", "text")
TRAIN_ORDER = [(image, region) for region in range(4) for image in IMAGES if (image, region) != TEST]
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


def _test_scan(directory: Path, phase: str, region: int, step: float) -> Path:
    sim = simulate_scan(SimulationOptions(step_px=step, phase=phase), scan_id=f"test-{phase}-{region}", region=region)
    path = write_scan(directory / f"test-{phase}-{region}.h5", sim.scan)
    save_truth(sim, path)
    return path


def _network_ssim(registry: Path, scan: Path, reconstruction: Path | None = None) -> float:
    """The best version's network alone (no refinement), stitched with |P|^2."""
    best = Registry(registry).best()
    _, pairs, _ = scan_pairs(scan, reconstruction, PreprocessConfig.from_json(best.preprocessing))
    pred = predict_torch(load_model(best.checkpoint_path)[0], pairs.diffraction)
    return stitched_ssim(pred, pairs.positions_px, pairs.weight, pairs.reference_phase, pairs.reference_origin_px)


def _polished_ssim(registry: Path, scan: Path, reconstruction: Path | None = None) -> float | None:
    """The served model's stitched image, polished across the scan's frames through the probe
    staging gives the model (ptychoflow.polish), as the edge serves a finished scan; scored
    like ``validate_best``. None when staging gives the model no probe (no polish)."""
    from ptychoflow.metrics import phase_ssim
    from ptychoflow.nn.continual import stitch_weight_of
    from ptychoflow.nn.evaluate import overlap_with_reference, stitch_phase
    from ptychoflow.nn.export import polish_probe
    from ptychoflow.nn.infer import ort_session, predict_onnx
    from ptychoflow.polish import PolishOptions, polish, probe_step_for

    best = Registry(registry).best()
    probe = polish_probe(best, ModelConfig.from_json(best.model_config))
    if probe is None:
        return None
    pre = PreprocessConfig.from_json(best.preprocessing)
    _, pairs, _ = scan_pairs(scan, reconstruction, pre)
    pred = predict_onnx(ort_session(best.onnx_path, providers=["CPUExecutionProvider"]), pairs.diffraction)
    weight = stitch_weight_of(best)
    mosaic = stitch_phase(pred, pairs.positions_px, pairs.weight if weight is None else weight)
    n = pre.output_size
    amplitudes = np.asarray(pairs.diffraction, np.float64).reshape(-1, n, n) * pre.scale
    options = PolishOptions(probe_step=probe_step_for(probe.measured))
    polished = polish(mosaic.image(), mosaic.origin, amplitudes, pairs.positions_px, probe.probe, options).phase
    image, ref, mask = overlap_with_reference(mosaic, pairs.reference_phase, pairs.reference_origin_px, image=polished)
    return phase_ssim(np.where(mask, image, 0.0), ref, mask)


def curve(args) -> None:
    """SSIM on the unseen region against corpus size, at a fixed number of epochs and at a fixed time."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    counts = [int(c) for c in args.scans.split(",")]
    if args.full:
        counts, args.epochs = [2, 4, 8, 16, 32], 50
    print(f"SSIM on unseen {TEST[0]} region {TEST[1]} vs corpus size, from scratch on {device}; "
          f"fixed {args.epochs} epochs, and fixed {args.seconds:.0f} s" + (" (GPU full size: epochs only)" if args.full else ""))
    print("scans | pairs | budget | epochs | samples | s | val loss | served SSIM | network SSIM")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        test = _test_scan(tmp, *TEST, STEP_PX[0])
        for count in counts:
            corpus = tmp / f"c{count}.h5"
            data = build_corpus(corpus, TRAIN_ORDER[:count])
            budgets = [("epochs", args.epochs, 1e9)] + ([] if args.full else [("time", 10_000, args.seconds)])
            for name, epochs, seconds in budgets:
                registry = tmp / f"r{count}-{name}"
                result = continual_train(ContinualOptions(
                    registry_dir=registry, corpus_path=corpus, epochs=epochs, time_limit_s=seconds, physics_pairs=0,
                    threads=args.threads, progress=False, seed=0))
                served = validate_best(registry_dir=registry, scan_path=test)["ssim"]
                samples = result["train_pairs"] * result["epochs_run"]
                print(f"{count} | {len(data)} | {name} | {result['epochs_run']} | {samples} | {result['seconds']:.0f} | "
                      f"{result['val_loss']:.4f} | {served:.3f} | {_network_ssim(registry, test):.3f}", flush=True)
    if args.full:
        print("APS reference: stitched PtychoNN SSIM > 0.8 with ~1e5 training pairs (GPU).")


@dataclasses.dataclass
class Arm:
    name: str
    changes: dict  # ContinualOptions fields
    note: str = ""


# Each arm names every setting it changes from the pipeline's defaults (TRAIN_WIDTH 16,
# PHYSICS_PAIRS beside the real ones, the 5-step refinement), so the table reads the same
# whichever defaults win.
W32 = {"width": 32}
ARMS = [
    Arm("before issue 19: width 32, real pairs only, no refinement", {**W32, "physics_pairs": 0, "refine_iterations": 0}),
    Arm("+ refinement at the edge", {**W32, "physics_pairs": 0}, "5 probe-constrained projections inside the model"),
    Arm("+ physics pairs", W32, f"{PHYSICS_PAIRS} pairs made through scan 1's rPIE probe"),
    Arm("+ width 16 (the pipeline)", {}, "more epochs in the same time"),
    Arm("physics pairs only, width 32", {**W32, "physics_only": True}, "scan 1 used only for its probe, photon count and contrast"),
    Arm("width 32 + physics, loss on the refined phase", {**W32, "train_through_refinement": True}),
    Arm("width 16, real pairs only", {"physics_pairs": 0}),
    Arm("width 8, real pairs only", {"width": 8, "physics_pairs": 0}),
    Arm("width 32 + physics, plain L1 (no lit-centre weight)", {**W32, "loss_weight_power": 0.0}),
    Arm("width 32 + physics, L1 weighted by |P|^2", {**W32, "loss_weight_power": 1.0}),
    Arm("width 32 + physics, no flips", {**W32, "augment": False}),
    Arm("batch 64", {"batch_size": 64}),
    Arm("constant LR 1e-3", {"lr_min": 1e-3, "lr_max": 1e-3}),
    Arm("width 16 + physics, loss on the refined phase", {"train_through_refinement": True}),
]


def _demo_scans(directory: Path, iterations: int) -> list[tuple[Path, Path]]:
    """The demo's four scans (astronaut/camera regions 0-3, 378 positions) and their rPIE products."""
    from ptychoflow.demo.scenario import DemoOptions
    from ptychoflow.recon.api import reconstruct, write_reconstruction
    from ptychoflow.recon.base import RpieOptions

    options, out = DemoOptions().simulation, []
    for region in range(4):
        sim = simulate_scan(options, scan_id=f"scan_{region + 1:04d}", region=region)
        path = write_scan(directory / f"{sim.scan.scan_id}.h5", sim.scan)
        product = write_reconstruction(reconstruct(path, RpieOptions(iterations=iterations), engine="auto"), directory)
        out.append((path, Path(product.product_path)))
    return out


def ablation(args) -> None:
    torch.set_num_threads(args.threads)
    print(f"live-image ablation: each arm trains {args.seconds:.0f} s ({args.threads} threads) on scan 1 of the demo's "
          "sample, then is scored on scans 2-4 (regions it never saw) against their rPIE, as the edge serves it")
    print("arm | epochs | samples | served SSIM scan 2 / 3 / 4 | mean | network alone (mean) | "
          "+ polish at the edge, scan 2 / 3 / 4 (mean) | note")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        started = time.perf_counter()
        scans = _demo_scans(tmp, args.iterations)
        print(f"# rPIE of the 4 scans: {time.perf_counter() - started:.0f} s", flush=True)
        for k, arm in enumerate(ARMS):
            if args.arms and str(k) not in args.arms.split(","):
                continue
            changes = dict(arm.changes)
            physics_only = changes.pop("physics_only", False)
            registry = tmp / f"arm{k}"
            common = {"epochs": 10_000, "time_limit_s": args.seconds, "threads": args.threads, "progress": False, "seed": 0}
            if physics_only:
                from ptychoflow.nn.beam import Beam

                guess = Beam.from_file(scans[0][1])
                np.save(tmp / f"probe{k}.npy", guess.probe)
                result = start_model(ContinualOptions(registry_dir=registry, probe_guess_path=tmp / f"probe{k}.npy",
                                                          **common, **changes))
            else:
                result = continual_train(ContinualOptions(registry_dir=registry, corpus_path=tmp / f"corpus{k}.h5",
                                                          scan_path=scans[0][0], reconstruction_path=scans[0][1],
                                                          **common, **changes))
            served = [validate_best(registry_dir=registry, scan_path=s, reconstruction_path=p)["ssim"] for s, p in scans[1:]]
            network = [_network_ssim(registry, s, p) for s, p in scans[1:]]
            polished = [_polished_ssim(registry, s, p) for s, p in scans[1:]]
            shown = ("none (no probe staged)" if None in polished
                     else f"{' / '.join(f'{v:.3f}' for v in polished)} ({np.mean(polished):.3f})")
            samples = (result["train_pairs"] + result.get("physics_pairs", 0) * (not physics_only)) * result["epochs_run"]
            print(f"{arm.name} | {result['epochs_run']} | {samples} | {' / '.join(f'{v:.3f}' for v in served)} | "
                  f"{np.mean(served):.3f} | {np.mean(network):.3f} | {shown} | {arm.note}", flush=True)


def pretrain(args) -> None:
    from ptychoflow.demo.scenario import DemoOptions
    from ptychoflow.simulate.beamline import save_truth

    demo = DemoOptions()
    print(f"pretraining {args.seconds:.0f} s ({args.threads} threads) on physics pairs, no scan seen; "
          "SSIM against the truth of the demo's scans 1 / 2")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        scans = []
        for region in (0, 1):
            sim = simulate_scan(demo.simulation, scan_id=f"scan_{region + 1:04d}", region=region)
            scans.append(write_scan(tmp / f"{sim.scan.scan_id}.h5", sim.scan))
            save_truth(sim, scans[-1])
        np.save(tmp / "guess.npy", demo.probe_guess())
        np.save(tmp / "true.npy", (sim.truth_probe).astype(np.complex64))
        for name in ("guess", "true"):
            registry = tmp / f"registry-{name}"
            result = start_model(ContinualOptions(registry_dir=registry, probe_guess_path=tmp / f"{name}.npy", epochs=10_000,
                                                      time_limit_s=args.seconds, threads=args.threads, progress=False))
            scores = [validate_best(registry_dir=registry, scan_path=scan)["ssim"] for scan in scans]
            print(f"{'optics guess (10 % wide)' if name == 'guess' else 'true probe':<24} {result['epochs_run']} epochs: "
                  f"{' / '.join(f'{v:.3f}' for v in scores)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["throughput", "warmstart", "curve", "ablation", "pretrain"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--scans", default="2,4,8")
    parser.add_argument("--full", action="store_true", help="curve at full size (GPU): 2-32 scans, 50 epochs")
    parser.add_argument("--arms", default="", help="ablation: comma-separated arm numbers (default: all)")
    parser.add_argument("--iterations", type=int, default=60, help="ablation: rPIE iterations per scan")
    parser.add_argument("--step", type=float, default=7.2, help="scan step in pixels (10: ~380 positions per scan)")
    args = parser.parse_args()
    STEP_PX[0] = args.step
    if args.seconds is None:
        args.seconds = {"throughput": 5.0, "ablation": 90.0, "pretrain": 60.0}.get(args.what, 90.0)
    if args.epochs is None:
        args.epochs = 8 if args.what == "warmstart" else 10
    header(f"train.py {args.what}")
    {"throughput": throughput, "warmstart": warmstart, "curve": curve, "ablation": ablation, "pretrain": pretrain}[args.what](args)


if __name__ == "__main__":
    main()
