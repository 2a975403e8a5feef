"""Make ``torchvision.transforms.GaussianBlur`` importable for Pty-chi on CPU-only torch.

Pty-chi's ``ptychi/utils.py`` does ``from torchvision.transforms import GaussianBlur`` at import
time, but only uses it to smooth a random initial object. The PyPI torchvision wheel is a CUDA
build that fails to import next to the CPU torch wheel ("operator torchvision::nms does not
exist"), and the CPU index is not always reachable. Rather than drop Pty-chi, we provide the one
class it needs, with torchvision's semantics, *only* when a working torchvision is missing and
*only* while Pty-chi is being imported: the stand-in is removed from ``sys.modules`` afterwards,
so other code in the process still sees the truth about torchvision.

Semantics reproduced (torchvision.transforms.GaussianBlur / functional.gaussian_blur):
- ``kernel_size``: int or (kx, ky), odd and positive; kx runs along x (width), ky along y.
- ``sigma``: float, or (min, max) from which one sigma is drawn uniformly per call (the same
  for both axes); must be positive.
- 1-D kernel ``exp(-0.5 (t / sigma)^2)`` on ``t = linspace(-(k-1)/2, (k-1)/2, k)``, normalised;
  applied separably after ``reflect`` padding of k//2 (edge not repeated: scipy ``mirror``).
- input ``(..., H, W)`` float tensor; output has the same shape and dtype.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import random
import sys
import types
from collections.abc import Iterator, Sequence

import torch

log = logging.getLogger(__name__)

#: Which implementation the last ``ensure_ptychi_importable`` call used: "torchvision" or "shim".
SOURCE: str | None = None


def _pair(value: float | Sequence[float], name: str) -> tuple[float, float]:
    if isinstance(value, (int, float)):
        return (value, value)
    values = tuple(value)
    if len(values) == 1:
        return (values[0], values[0])
    if len(values) != 2:
        raise ValueError(f"{name} should be a number or a sequence of two numbers, got {value!r}")
    return values  # type: ignore[return-value]


def gaussian_kernel1d(kernel_size: int, sigma: float, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Normalised 1-D Gaussian sampled at integer offsets about the kernel centre."""
    half = (kernel_size - 1) * 0.5
    t = torch.linspace(-half, half, steps=kernel_size, dtype=dtype)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    return kernel / kernel.sum()


def gaussian_blur(image: torch.Tensor, kernel_size: Sequence[int], sigma: Sequence[float]) -> torch.Tensor:
    """Separable Gaussian blur of a (..., H, W) float tensor with reflect padding."""
    if not torch.is_floating_point(image):
        raise TypeError(f"gaussian_blur needs a floating-point tensor, got {image.dtype}")
    kx, ky = (int(k) for k in kernel_size)
    sx, sy = (float(s) for s in sigma)
    shape = image.shape
    if image.ndim < 2:
        raise ValueError(f"gaussian_blur needs at least 2 dimensions (H, W), got shape {tuple(shape)}")
    flat = image.reshape(-1, 1, shape[-2], shape[-1])
    flat = torch.nn.functional.pad(flat, [kx // 2, kx // 2, ky // 2, ky // 2], mode="reflect")
    wx = gaussian_kernel1d(kx, sx, dtype=image.dtype).to(image.device).view(1, 1, 1, kx)
    wy = gaussian_kernel1d(ky, sy, dtype=image.dtype).to(image.device).view(1, 1, ky, 1)
    flat = torch.nn.functional.conv2d(torch.nn.functional.conv2d(flat, wx), wy)
    return flat.reshape(shape)


class GaussianBlur(torch.nn.Module):
    """Stand-in for ``torchvision.transforms.GaussianBlur`` (tensor inputs only)."""

    def __init__(self, kernel_size: int | Sequence[int], sigma: float | Sequence[float] = (0.1, 2.0)) -> None:
        super().__init__()
        self.kernel_size = tuple(int(k) for k in _pair(kernel_size, "kernel_size"))
        for k in self.kernel_size:
            if k <= 0 or k % 2 == 0:
                raise ValueError("Kernel size value should be an odd and positive number.")
        if isinstance(sigma, (int, float)):
            if sigma <= 0:
                raise ValueError("If sigma is a single number, it must be positive.")
            self.sigma = (float(sigma), float(sigma))
        else:
            low, high = (float(s) for s in _pair(sigma, "sigma"))
            if not 0.0 < low <= high:
                raise ValueError("sigma values should be positive and of the form (min, max).")
            self.sigma = (low, high)

    @staticmethod
    def get_params(sigma_min: float, sigma_max: float) -> float:
        return random.uniform(sigma_min, sigma_max) if sigma_max > sigma_min else sigma_min

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        s = self.get_params(*self.sigma)
        return gaussian_blur(image, self.kernel_size, (s, s))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kernel_size={self.kernel_size}, sigma={self.sigma})"


def real_torchvision_available() -> bool:
    """True when torchvision imports *and* works with this torch (a CUDA wheel next to CPU torch does not)."""
    before = set(sys.modules)
    try:
        importlib.import_module("torchvision.transforms")
        return True
    except Exception as exc:  # ImportError, or RuntimeError from a mismatched wheel's operators
        log.debug("torchvision unusable: %s: %s", type(exc).__name__, exc)
        for name in set(sys.modules) - before:  # drop half-imported torchvision modules
            if name == "torchvision" or name.startswith("torchvision."):
                del sys.modules[name]
        return False


def _shim_modules() -> dict[str, types.ModuleType]:
    package = types.ModuleType("torchvision")
    package.__doc__ = "ptychoflow stand-in: only transforms.GaussianBlur (see ptychoflow.recon.torchvision_compat)"
    package.__path__ = []  # a package, so 'torchvision.transforms' resolves
    package.__ptychoflow_shim__ = True  # type: ignore[attr-defined]
    transforms = types.ModuleType("torchvision.transforms")
    transforms.GaussianBlur = GaussianBlur  # type: ignore[attr-defined]
    transforms.__ptychoflow_shim__ = True  # type: ignore[attr-defined]
    package.transforms = transforms  # type: ignore[attr-defined]
    return {"torchvision": package, "torchvision.transforms": transforms}


@contextlib.contextmanager
def shim_installed() -> Iterator[None]:
    """Temporarily expose the stand-in as ``torchvision``; restores ``sys.modules`` afterwards."""
    shims = _shim_modules()
    saved = {name: sys.modules.get(name) for name in shims}
    sys.modules.update(shims)
    try:
        yield
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous


def ensure_ptychi_importable() -> str:
    """Import ``ptychi.api`` (and its utils) with a usable GaussianBlur; return which one was used.

    Returns "torchvision" when the real package works, "shim" when the stand-in was needed.
    Idempotent: once Pty-chi is imported it keeps the class it bound at import time.
    """
    global SOURCE
    if "ptychi.utils" in sys.modules and SOURCE is not None:
        return SOURCE
    if real_torchvision_available():
        SOURCE = "torchvision"
        importlib.import_module("ptychi.api")
        importlib.import_module("ptychi.utils")
    else:
        SOURCE = "shim"
        with shim_installed():
            importlib.import_module("ptychi.api")
            importlib.import_module("ptychi.api.task")
            importlib.import_module("ptychi.utils")
    log.info("Pty-chi GaussianBlur provided by %s", "torchvision" if SOURCE == "torchvision" else "ptychoflow shim (torchvision unusable)")
    return SOURCE
