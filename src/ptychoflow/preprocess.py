"""Diffraction preprocessing shared by HPC training and edge inference.

One implementation for NumPy (CPU) and CuPy (GPU): pass the array module as `xp`. The
config is plain JSON so it travels in the edge model's manifest, guaranteeing the edge
prepares frames exactly as the training corpus was prepared.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np


@dataclass(frozen=True)
class PreprocessConfig:
    crop: int = 64  # square crop about the optical axis, in detector pixels
    bin_factor: int = 1  # sum bin_factor x bin_factor pixels; output is crop // bin_factor
    center: tuple[float, float] | None = None  # optical axis (row, col); default: frame centre
    input_fft_shifted: bool = False  # True for Tike-convention input (zero frequency at corners)
    transform: Literal["none", "sqrt", "log1p"] = "sqrt"  # amplitude-like scaling for the network
    scale: float = 1.0  # divide after the transform

    @property
    def output_size(self) -> int:
        return self.crop // self.bin_factor

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "PreprocessConfig":
        center = data.get("center")
        return cls(**{**data, "center": tuple(center) if center is not None else None})

    def validate(self, frame_shape: tuple[int, int]) -> None:
        if self.crop % self.bin_factor:
            raise ValueError(f"crop {self.crop} is not a multiple of bin_factor {self.bin_factor}")
        if self.crop > min(frame_shape):
            raise ValueError(f"crop {self.crop} exceeds frame shape {tuple(frame_shape)}")


def array_module(array: Any) -> Any:
    """numpy or cupy, whichever owns `array` (cupy is optional)."""
    module = type(array).__module__.split(".")[0]
    if module == "cupy":
        import cupy

        return cupy
    return np


def crop_window(frame_shape: tuple[int, int], config: PreprocessConfig) -> tuple[slice, slice]:
    centre_r, centre_c = config.center if config.center is not None else (frame_shape[0] / 2, frame_shape[1] / 2)
    top = int(round(centre_r - config.crop / 2))
    left = int(round(centre_c - config.crop / 2))
    if top < 0 or left < 0 or top + config.crop > frame_shape[0] or left + config.crop > frame_shape[1]:
        raise ValueError(f"crop {config.crop} about {(centre_r, centre_c)} falls outside frame {tuple(frame_shape)}")
    return slice(top, top + config.crop), slice(left, left + config.crop)


def preprocess(
    frames: Any,
    config: PreprocessConfig,
    *,
    dark: Any | None = None,
    bad_pixels: Any | None = None,
    xp: Any | None = None,
) -> Any:
    """(B, H, W) raw counts -> (B, h, w) float32 network input; also accepts a single frame."""
    xp = xp or array_module(frames)
    frames = xp.asarray(frames, dtype=xp.float32)
    single = frames.ndim == 2
    if single:
        frames = frames[None]
    if config.input_fft_shifted:
        frames = xp.fft.fftshift(frames, axes=(-2, -1))
    if dark is not None:
        frames = xp.maximum(frames - xp.asarray(dark, dtype=xp.float32), 0)
    if bad_pixels is not None:
        frames = xp.where(xp.asarray(bad_pixels, dtype=bool), xp.float32(0), frames)
    rows, cols = crop_window(frames.shape[-2:], config)
    frames = frames[:, rows, cols]
    if config.bin_factor > 1:
        b, n = config.bin_factor, config.output_size
        frames = frames.reshape(frames.shape[0], n, b, n, b).sum(axis=(2, 4))
    if config.transform == "sqrt":
        frames = xp.sqrt(frames)
    elif config.transform == "log1p":
        frames = xp.log1p(frames)
    if config.scale != 1.0:
        frames = frames / xp.float32(config.scale)
    frames = xp.ascontiguousarray(frames, dtype=xp.float32)
    return frames[0] if single else frames


def bad_pixel_mask(frames: np.ndarray, *, hot_factor: float = 50.0) -> np.ndarray:
    """Dead pixels (never count while the detector sees light) and hot ones (far above all
    their neighbours in every frame). Needs a few dozen frames to be reliable."""
    frames = np.asarray(frames, dtype=np.float32)
    total = frames.sum(axis=0)
    dead = (total == 0) & (total.mean() > 0)
    low = np.percentile(frames, 50, axis=0)  # median per pixel over frames
    from scipy import ndimage

    local = ndimage.median_filter(low, size=5)
    hot = low > hot_factor * np.maximum(local, 1.0)
    return dead | hot
