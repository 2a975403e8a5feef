"""Options of PtychoNN training, one dataclass per job (as Pty-chi's ``api.options``).

- ``ModelConfig``: which network (kind, patch size, width).
- ``TrainConfig``: how one training runs (epochs, time limit, batch, learning rate, seed).
- ``ContinualOptions``: one continual-learning step (paths, model, training, promotion), the
  keyword arguments of the ``train`` remote function.

Defaults live once: the policy knobs come from the profile's ``Policy`` (``policy_default``),
and ``ContinualOptions`` takes the rest from ``ModelConfig`` and ``TrainConfig``. No torch
here: the flow functions import this without paying for torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ptychoflow.names import safe_component
from ptychoflow.profile import policy_default
from ptychoflow.site import HpcLayout, staged_dir


PHYSICS_PAIRS = 2048  # beside the real pairs; `benchmarks/train.py ablation` (docs/benchmarks.md, "The live image")
# The network continual training makes: half PtychoNN 2.0's width. On 2 CPU cores a narrower
# network runs more epochs in the same time; with physics pairs it served 0.617-0.628 on
# unseen scans against 0.497-0.517 at width 32 (the ablation). On a GPU, pass width=32.
TRAIN_WIDTH = 16
REFINE_ITERATIONS = 5  # nn.refine: the gain saturates by 5 to 10
TRAIN_THROUGH_REFINEMENT = False  # the ablation at width 32: 0.527 with, 0.497 without; not yet measured at TRAIN_WIDTH
REUSE_MAX_DISTANCE = 0.15  # probe mismatch + relative energy and pixel-size differences (nn.beam)


@dataclass(frozen=True)
class ModelConfig:
    kind: str = policy_default("model")
    size: int = policy_default("patch_size")  # input and output patch size (H = W)
    width: int = 32  # channels of the first stage; doubles per stage
    batchnorm: bool = True  # without it the stack collapsed to a constant even with He init
    refine_iterations: int = REFINE_ITERATIONS  # physics refinement of the phase inside the model (nn.refine); 0: none

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelConfig:
        known = {k: data[k] for k in ("kind", "size", "width", "batchnorm") if k in data}
        return cls(**known, refine_iterations=int(data.get("refine_iterations", 0)))  # absent: trained before refinement

    def same_network(self, config: dict[str, Any]) -> bool:
        """True when `config` (a registry's JSON) builds this network, whatever its refinement:
        its weights can start this one."""
        other = ModelConfig.from_json(config)
        return (self.kind, self.size, self.width, self.batchnorm) == (other.kind, other.size, other.width, other.batchnorm)

    @property
    def outputs(self) -> list[str]:
        return ["phase", "amplitude"] if self.kind == "ptychonn" else ["phase"]


@dataclass
class TrainConfig:
    epochs: int = policy_default("train_epochs")
    time_limit_s: float = policy_default("train_time_limit_s")
    batch_size: int = 32
    lr_min: float = 1e-4
    lr_max: float = 1e-3
    half_cycle_epochs: float = 2.0  # triangular2: LR climbs for this many epochs, then falls
    seed: int = 0
    threads: int | None = None  # torch CPU threads (None: leave torch's default)
    amp: bool | None = None  # None: on CUDA only
    progress: bool | None = None  # None: only when stderr is a terminal
    device: str | None = None  # None: cuda if available, else cpu
    loss_weight_power: float = 0.5  # L1 weighted by (|P|^2)^power; 0: plain L1 (see _loss)
    augment: bool = False  # random flips/transposes; valid only for a centro-symmetric probe (see augment_batch)


@dataclass
class ContinualOptions:
    """One continual-learning step: append a scan, train a candidate, promote it if better.

    Field names are the ``train`` function's keyword arguments (the flow's TrainModel state).
    """

    registry_dir: Path
    scan_path: Path | None = None  # a new scan whose pairs are appended to the corpus first
    reconstruction_path: Path | None = None  # its rPIE product; None: the simulator's truth beside the scan
    corpus_path: Path | None = None  # None: the site layout's corpus beside the registry
    stage_dir: Path | None = None  # where versions are staged for the edge; None: <registry>/staged
    model_kind: str = ModelConfig.kind
    patch_size: int = ModelConfig.size
    width: int = TRAIN_WIDTH
    refine_iterations: int = ModelConfig.refine_iterations
    preprocessing: dict | None = None  # None: the corpus's, else the best model's, else a centred crop
    epochs: int = TrainConfig.epochs
    time_limit_s: float = TrainConfig.time_limit_s
    batch_size: int = TrainConfig.batch_size
    lr_min: float = TrainConfig.lr_min
    lr_max: float = TrainConfig.lr_max
    seed: int = TrainConfig.seed
    threads: int | None = None
    progress: bool | None = None
    augment: bool | None = None  # None: flips only when every scan's probe is symmetric
    loss_weight_power: float = TrainConfig.loss_weight_power
    train_through_refinement: bool = TRAIN_THROUGH_REFINEMENT  # the loss on the refined phase (nn.refine)
    warm_start: bool = True
    val_fraction: float = 0.1
    promote_margin: float = policy_default("promote_margin")
    physics_pairs: int = PHYSICS_PAIRS  # pairs made from the newest scan's probe, trained on beside the real ones (nn.physics)
    # Before the first scan (no scan_path): start from the closest model, else pretrain (nn.start).
    probe_guess_path: Path | None = None  # .npy, scan or reconstruction product holding the expected probe
    reuse_from_dirs: list[Path] = field(default_factory=list)  # other registries (earlier experiments) to reuse a model from
    reuse_max_distance: float = REUSE_MAX_DISTANCE  # nn.beam.beam_distance up to which a model is reused
    counts_per_frame: float | None = None  # photons per frame expected (pretraining); None: the probe guess's power

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name.endswith(("_dir", "_path")) and getattr(self, f.name) is not None:
                setattr(self, f.name, Path(getattr(self, f.name)))
        self.reuse_from_dirs = [Path(p) for p in self.reuse_from_dirs]

    @property
    def model(self) -> ModelConfig:
        return ModelConfig(kind=self.model_kind, size=self.patch_size, width=self.width,
                           refine_iterations=self.refine_iterations)

    def training(self, *, augment: bool) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, time_limit_s=self.time_limit_s, batch_size=self.batch_size,
                           lr_min=self.lr_min, lr_max=self.lr_max, seed=self.seed, threads=self.threads,
                           progress=self.progress, augment=augment, loss_weight_power=self.loss_weight_power)

    @property
    def corpus(self) -> Path:
        """The corpus file: given, or the layout's corpus of the HPC site holding the registry."""
        return self.corpus_path or HpcLayout(self.registry_dir.parent).corpus_path

    def staged(self, version: str) -> Path:
        """Where `version` is staged for the edge."""
        if self.stage_dir is None:
            return staged_dir(self.registry_dir, version)
        return self.stage_dir / safe_component(version, source=self.registry_dir, field="version")
