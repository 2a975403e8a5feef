"""The rPIE engines by name, and what "auto" picks here and why.

Every engine name the project uses comes from ``ENGINES``: the CLI's ``--engine`` choices,
the profile's ``policy.engine``, the flow schemas' enums (checked by a test) and the
``doctor`` listing. Each ``EngineSpec`` says what the engine is, what it needs, which devices
it runs on, and which module implements it. That module is imported only when asked about,
so this one imports nothing heavy (the profile loads it).

An implementation module provides::

    available() -> (bool, reason)        # can it run here at all (packages, driver)
    ready_devices() -> tuple[str, ...]   # of the spec's devices, those present here, best first
    reconstruct(prepared, options, *, device, progress) -> ReconstructionResult
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Literal, get_args

from ptychoflow.errors import PtychoflowError

if TYPE_CHECKING:
    from ptychoflow.recon.base import PreparedScan, ProgressCallback, ReconstructionResult, RpieOptions

Device = Literal["auto", "cpu", "gpu"]
DEVICES: tuple[str, ...] = get_args(Device)
AUTO = "auto"


@dataclass(frozen=True)
class EngineSpec:
    """One rPIE engine: what it is, what it needs, where it runs, and where its code lives."""

    name: str
    summary: str  # one line for --help and doctor
    needs: str  # what to install for it
    devices: tuple[str, ...]  # the devices it can use, preferred first
    module: str  # the implementation (see the module docstring)

    def implementation(self) -> ModuleType:
        return importlib.import_module(self.module)

    def available(self) -> tuple[bool, str]:
        """(usable, reason); an unusable engine's reason ends with what to install."""
        ok, reason = self.implementation().available()
        return ok, reason if ok else f"{reason}; needs {self.needs}"

    def ready_devices(self) -> tuple[str, ...]:
        return tuple(self.implementation().ready_devices())

    def run(self, prepared: PreparedScan, options: RpieOptions, *, device: str,
            progress: ProgressCallback | None = None) -> ReconstructionResult:
        return self.implementation().reconstruct(prepared, options, device=device, progress=progress)


# In order of preference: "auto" takes the first that can run here.
ENGINES: dict[str, EngineSpec] = {
    spec.name: spec
    for spec in (
        EngineSpec(
            name="tike",
            summary="rPIE with Tike, on a CUDA GPU",
            needs="tike, cupy and a CUDA 12 device: pip install 'ptychoflow[gpu]'",
            devices=("gpu",),
            module="ptychoflow.recon.tike_engine",
        ),
        EngineSpec(
            name="ptychi",
            summary="rPIE with Pty-chi (PyTorch), on a CUDA GPU or the CPU",
            needs="torch and ptychi: pip install 'ptychoflow[cpu]' and pip install --no-deps ptychi",
            devices=("gpu", "cpu"),
            module="ptychoflow.recon.ptychi_engine",
        ),
    )
}
ENGINE_NAMES: tuple[str, ...] = tuple(ENGINES)
ENGINE_CHOICES: tuple[str, ...] = (AUTO, *ENGINE_NAMES)  # what a user may ask for


class EngineUnavailable(PtychoflowError):
    """The engine (or device) asked for cannot run here; the message says why."""

    def __init__(self, engine: str, reason: str) -> None:
        self.engine, self.reason = engine, reason
        super().__init__(f"engine '{engine}' unavailable: {reason}")


@dataclass(frozen=True)
class EngineChoice:
    """Which engine runs on which device, and the human-readable reason (kept in the product)."""

    engine: str
    device: str
    reason: str


def get_engine(name: str) -> EngineSpec:
    """The spec registered as `name`; ValueError naming the choices otherwise."""
    try:
        return ENGINES[name]
    except KeyError:
        raise ValueError(f"unknown engine {name!r}; choose one of {', '.join(ENGINE_CHOICES)}") from None


def _resolve(spec: EngineSpec, device: str, why: str) -> EngineChoice:
    """`spec` on the best of its devices that matches `device`, or EngineUnavailable."""
    if device != AUTO and device not in spec.devices:
        raise EngineUnavailable(spec.name, f"device={device} requested; {spec.name} runs on {'/'.join(spec.devices)} only")
    ok, reason = spec.available()
    if not ok:
        raise EngineUnavailable(spec.name, reason)
    ready = [d for d in spec.ready_devices() if device in (AUTO, d)]
    if not ready:
        raise EngineUnavailable(spec.name, f"device={device} requested but {reason}, with no {device} visible")
    return EngineChoice(spec.name, ready[0], f"{why}; {reason}")


def choose_engine(engine: str = AUTO, device: str = AUTO) -> EngineChoice:
    """Resolve a requested engine and device; "auto" takes the first registered engine that runs here."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if engine != AUTO:
        return _resolve(get_engine(engine), device, "requested")
    skipped: list[str] = []
    for spec in ENGINES.values():
        try:
            return _resolve(spec, device, "auto" + "".join(f" after {s}" for s in skipped))
        except EngineUnavailable as exc:
            skipped.append(f"{spec.name} unusable ({exc.reason})")
    raise EngineUnavailable(AUTO, "no rPIE engine can run here: " + "; ".join(skipped))
