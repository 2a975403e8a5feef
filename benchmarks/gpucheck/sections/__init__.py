"""The sections of the GPU check, in the order they run, each with its own time box.

Every section module has ``run(record, context)``. On the GPU machine the boxes add up to
430 s, so with the wheel install the check ends within 8 minutes; the dry run (CPU, tiny
sizes) gives each section DRY_BOX_S.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Section:
    name: str
    title: str
    box_s: float  # time box on the GPU machine
    module: str = ""  # the module with run(record, context); default gpucheck.sections.<name>

    @property
    def module_name(self) -> str:
        return self.module or f"gpucheck.sections.{self.name}"


SECTIONS = (
    Section("machine", "what this machine has", 40),
    Section("rpie", "rPIE: Tike vs Pty-chi, 963 positions at 128²", 160),
    Section("preprocess", "preprocessing: CuPy vs NumPy, 128² crops of 512² frames", 35),
    Section("training", "training: PtychoNN 2.0 at 128², mixed precision vs fp32", 60),
    Section("inference", "inference: torch-CUDA backend, PtychoNN 2.0 at 128²", 60),
    Section("edge", "edge end to end: ZeroMQ in, GPU inference, stitching, results out", 75),
)
DRY_BOX_S = 150.0
MIN_BOX_S = 15.0  # a section is not started with less than this left of the budget


def by_name(name: str) -> Section:
    for section in SECTIONS:
        if section.name == name:
            return section
    raise KeyError(f"no section {name!r}; sections: {', '.join(s.name for s in SECTIONS)}")
