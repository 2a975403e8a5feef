"""Edge service settings: the profile's ``[edge]`` table plus the knobs only the service needs."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptychoflow.polish import POLISH_TIME_LIMIT_S, PolishOptions
from ptychoflow.profile import Edge, default_of
from ptychoflow.site import EdgeLayout, SiteLayout
from ptychoflow_edge.receiver import ScanLimits


def default_threads() -> int:
    """ORT intra-op threads: the cores this process may use, capped (small boxes share cores)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 4))


PROFILE_SETTINGS = ("stream_address", "results_address", "http_host", "http_port", "batch_size", "max_wait_ms",
                    "queue_frames", "max_scan_mb", "max_open_scans", "scan_idle_s", "polish_sweeps", "pva_channel", "pva_pixel_size_m",
                    "pva_position_attributes", "pva_position_scale", "pva_output",
                    "pva_output_interval_s")  # EdgeConfig fields the profile's [edge] table sets


@dataclass
class EdgeConfig:
    path: Path  # <edge.path>: the edge site (layout: ptychoflow.site.EdgeLayout)
    # the profile's [edge] settings, with the profile's defaults
    stream_address: str = default_of(Edge, "stream_address")
    results_address: str = default_of(Edge, "results_address")
    http_host: str = default_of(Edge, "http_host")
    http_port: int = default_of(Edge, "http_port")  # 0 picks a free port (reported in the status file)
    batch_size: int = default_of(Edge, "batch_size")
    max_wait_ms: float = default_of(Edge, "max_wait_ms")
    queue_frames: int = default_of(Edge, "queue_frames")
    max_scan_mb: float = default_of(Edge, "max_scan_mb")
    max_open_scans: int = default_of(Edge, "max_open_scans")
    scan_idle_s: float = default_of(Edge, "scan_idle_s")
    polish_sweeps: int = default_of(Edge, "polish_sweeps")  # 0: finished scans are not polished
    pva_channel: str | None = default_of(Edge, "pva_channel")  # pvAccess input (areaDetector NTNDArray; needs p4p)
    pva_pixel_size_m: float | None = default_of(Edge, "pva_pixel_size_m")  # no start message there: the geometry
    pva_position_attributes: tuple[str, str] = default_of(Edge, "pva_position_attributes")  # NDAttributes (y, x)
    pva_position_scale: float = default_of(Edge, "pva_position_scale")  # attribute value x scale = metres
    pva_output: str | None = default_of(Edge, "pva_output")  # pvAccess output: PV serving the live phase
    pva_output_interval_s: float = default_of(Edge, "pva_output_interval_s")
    # knobs only the service has
    model_poll_s: float = 0.25
    status_interval_s: float = 0.5
    drain_timeout_s: float = 10.0  # on shutdown, finish queued frames for at most this long
    providers: list[str] | None = None  # None: best available (TensorRT -> CUDA -> CPU)
    intra_op_threads: int = field(default_factory=default_threads)
    # Shift each phase patch to agree with the mosaic: the network predicts de-meaned phase
    # (a pattern cannot see a patch's absolute phase), and training scores stitch the same way.
    align_offsets: bool = True
    http: bool = True
    # The polish of a finished scan's image (polish_sweeps above): a time limit, and how much
    # of a scan's frames may be kept for it (float32 amplitudes; 378 frames of 64^2 are 6 MiB).
    polish_time_limit_s: float = POLISH_TIME_LIMIT_S
    polish_max_mb: float = 1024.0

    @property
    def polish(self) -> PolishOptions:
        return PolishOptions(sweeps=self.polish_sweeps, time_limit_s=self.polish_time_limit_s)

    @property
    def scan_limits(self) -> ScanLimits:
        return ScanLimits(self.max_open_scans, self.scan_idle_s, self.max_scan_mb)

    @property
    def layout(self) -> EdgeLayout:
        return EdgeLayout(self.path)

    @property
    def model_dir(self) -> Path:
        return self.layout.model_dir

    @property
    def mosaics_dir(self) -> Path:
        return self.layout.mosaics_dir

    @property
    def status_file(self) -> Path:
        return self.layout.status_file

    @classmethod
    def from_profile(cls, profile: Any, **overrides: Any) -> "EdgeConfig":
        """Settings from a loaded ``ptychoflow.profile.Profile`` (relative paths resolved)."""
        values = {name: getattr(profile.edge, name) for name in PROFILE_SETTINGS}
        values["path"] = SiteLayout.from_profile(profile).edge.root
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
