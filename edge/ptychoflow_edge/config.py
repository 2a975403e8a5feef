"""Edge service settings: the profile's ``[edge]`` table plus the knobs only the service needs."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATUS_FILENAME = "edge-status.json"


def default_threads() -> int:
    """ORT intra-op threads: the cores this process may use, capped (small boxes share cores)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 4))


@dataclass
class EdgeConfig:
    path: Path  # <edge.path>: model/ and mosaics/ live under it
    stream_address: str = "tcp://127.0.0.1:5555"
    results_address: str = "tcp://127.0.0.1:5556"
    http_host: str = "127.0.0.1"
    http_port: int = 8765  # 0 picks a free port (reported in the status file)
    batch_size: int = 16
    max_wait_ms: float = 10.0
    queue_frames: int = 4096
    model_poll_s: float = 0.25
    status_interval_s: float = 0.5
    drain_timeout_s: float = 10.0  # on shutdown, finish queued frames for at most this long
    providers: list[str] | None = None  # None: best available (TensorRT -> CUDA -> CPU)
    intra_op_threads: int = field(default_factory=default_threads)
    pva_channel: str | None = None  # optional pvAccess input: an areaDetector NTNDArray channel (needs p4p)
    pva_pixel_size_m: float | None = None  # object pixel size of frames arriving by pvAccess (no start message there)
    pva_position_attributes: tuple[str, str] = ("PositionY", "PositionX")  # NDAttributes holding (y, x)
    pva_position_scale: float = 1.0  # multiplies the attribute values to give metres (1e-6 for micrometres)
    pva_output: str | None = None  # optional pvAccess output: PV name serving the live phase mosaic
    pva_output_interval_s: float = 0.5
    # Shift each phase patch to agree with the mosaic: the network predicts de-meaned phase
    # (a pattern cannot see a patch's absolute phase), and training scores stitch the same way.
    align_offsets: bool = True
    http: bool = True

    @property
    def model_dir(self) -> Path:
        return self.path / "model"

    @property
    def mosaics_dir(self) -> Path:
        return self.path / "mosaics"

    @property
    def status_file(self) -> Path:
        return self.path / STATUS_FILENAME

    @classmethod
    def from_profile(cls, profile: Any, **overrides: Any) -> "EdgeConfig":
        """Settings from a loaded ``ptychoflow.profile.Profile`` (relative paths resolved)."""
        edge = profile.edge
        values = dict(
            path=profile.resolve(edge.path),
            stream_address=edge.stream_address,
            results_address=edge.results_address,
            http_host=edge.http_host,
            http_port=edge.http_port,
            batch_size=edge.batch_size,
            max_wait_ms=edge.max_wait_ms,
            queue_frames=edge.queue_frames,
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
