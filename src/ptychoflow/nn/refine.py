"""Physics refinement of the network's patch: a few probe-constrained projections per frame.

The network gets the low spatial frequencies of a patch right long before it gets the fine
ones (its output is a blurred answer). The measured pattern and the known probe hold the
rest: starting from the network's phase, each iteration forms the exit wave P*O, replaces
its far-field magnitude by the measured one and updates O with the rPIE object step

    O <- O + conj(P) (psi' - psi) / ((1 - alpha) |P|^2 + alpha max |P|^2)

Measured on the demo's scans (network trained on physics pairs only): unseen-region SSIM
against rPIE 0.395 -> 0.63 after 5 iterations, saturating by 10.

Everything is real-valued matrix algebra (the 2-D DFT as two matrix products with the
fftshift folded into the matrices), so the refinement exports to ONNX inside the model:
the edge runs it without knowing it is there. It needs the network input to be a measured
amplitude (the sqrt transform, no binning) and the probe as that input sees it:
``network_probe`` gives it, for the whole frame or a centred crop of it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ptychoflow.nn.models import predict_outputs
from ptychoflow.preprocess import PreprocessConfig

ALPHA = 0.1  # rPIE's regularisation: the step where the probe is weak is bounded by alpha * max |P|^2


def network_probe(probe: np.ndarray, preprocessing: dict) -> np.ndarray | None:
    """The probe on the network's grid: the probe itself when the input is the measured amplitude
    of the whole frame; for a centred crop of c of the frame's n detector pixels (the network's
    pixels are n/c times larger: nn.pairs), the probe band-limited to those c pixels. None when
    the input is not a measured amplitude (binning, another transform, an off-centre crop, a
    crop that does not divide the frame, Tike's zero-frequency-at-corners order)."""
    pre = PreprocessConfig.from_json(preprocessing)
    n = int(np.shape(probe)[-1])
    if (pre.bin_factor != 1 or pre.transform != "sqrt" or pre.center is not None or pre.input_fft_shifted
            or pre.crop > n or n % pre.crop):
        return None
    return np.asarray(probe) if pre.crop == n else _band_limited(np.asarray(probe), pre.crop)


def _band_limited(probe: np.ndarray, size: int) -> np.ndarray:
    """`probe` (n x n) seen through the central `size` detector pixels: its spectrum cropped
    there (the preprocessing's crop window, zero frequency at n/2), sampled at the centres of
    the n/size-pixel blocks nn.pairs averages the object over, and scaled so that
    |fft2(P O, ortho)|^2 still counts the cropped pixels' photons."""
    n = probe.shape[-1]
    low = n // 2 - size // 2
    band = np.fft.fftshift(np.fft.fft2(probe, norm="ortho"))[low : low + size, low : low + size]
    # a block's centre lies (n/size - 1)/2 fine pixels after its first: shift the samples there
    ramp = np.exp(2j * np.pi * (np.arange(size) - size // 2) * ((n // size - 1) / 2) / n)
    band = band * ramp[:, None] * ramp[None, :]
    return np.fft.ifft2(np.fft.ifftshift(band), norm="ortho").astype(np.complex64)


def _dft_matrices(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(F, G): for a patch X in real space, F X F^T is fftshift(fft2(X, ortho)) and
    G Y G^T is ifft2(ifftshift(Y), ortho): the detector's order on both sides."""
    eye = np.eye(n)
    forward = np.fft.fftshift(np.fft.fft(eye, axis=0, norm="ortho"), axes=0)
    inverse = np.fft.ifft(np.fft.ifftshift(eye, axes=0), axis=0, norm="ortho")
    return forward, inverse


class Refinement(nn.Module):
    """(amplitude, phase) -> refined phase, for one probe (n x n complex, ortho convention:
    |fft2(P * O)|^2 are the counts)."""

    def __init__(self, probe: np.ndarray, *, iterations: int, scale: float = 1.0, alpha: float = ALPHA) -> None:
        super().__init__()
        probe = np.asarray(probe, np.complex128)
        forward, inverse = _dft_matrices(probe.shape[-1])
        power = np.abs(probe) ** 2
        step = np.conj(probe) / ((1 - alpha) * power + alpha * power.max())
        for name, value in (("p", probe), ("f", forward), ("g", inverse), ("step", step)):
            self.register_buffer(f"{name}_re", torch.tensor(value.real, dtype=torch.float32), persistent=False)
            self.register_buffer(f"{name}_im", torch.tensor(value.imag, dtype=torch.float32), persistent=False)
        self.register_buffer("weight", torch.tensor(power / power.max(), dtype=torch.float32), persistent=False)
        self.iterations = iterations
        self.scale = float(scale)  # preprocessing divides the amplitude by this
        self.probe_power = float(power.sum())

    def example_inputs(self, count: int, seed: int = 0) -> np.ndarray:
        """(count, 1, n, n) network inputs this probe could produce: far-field amplitudes of
        random smooth objects (phase within +-1 rad, amplitude 0.7-1), preprocessed (/ scale).

        Random numbers with no probe behind them make the projection chaotic (its float32
        rounding then decides the answer), so exports are checked on these instead."""
        from scipy import ndimage

        rng = np.random.default_rng(seed)
        probe = (self.p_re.numpy() + 1j * self.p_im.numpy()).astype(np.complex128)
        n = probe.shape[-1]
        smooth = ndimage.gaussian_filter(rng.standard_normal((count, n, n)), (0, 2, 2))
        smooth /= np.abs(smooth).max(axis=(1, 2), keepdims=True)
        obj = (0.85 + 0.15 * np.roll(smooth, 7, axis=1)) * np.exp(1j * smooth)
        far = np.fft.fftshift(np.fft.fft2(probe * obj, norm="ortho"), axes=(-2, -1))
        return (np.abs(far) / self.scale)[:, None].astype(np.float32)

    @staticmethod
    def _cmul(a_re, a_im, b_re, b_im):
        return a_re * b_re - a_im * b_im, a_re * b_im + a_im * b_re

    def _transform(self, x_re, x_im, m: str):
        """M X M^T for complex X and the complex matrix M named `m` (f: forward, g: inverse)."""
        m_re, m_im = getattr(self, f"{m}_re"), getattr(self, f"{m}_im")
        t_re = torch.matmul(m_re, x_re) - torch.matmul(m_im, x_im)
        t_im = torch.matmul(m_re, x_im) + torch.matmul(m_im, x_re)
        mt_re, mt_im = m_re.transpose(0, 1), m_im.transpose(0, 1)
        return (torch.matmul(t_re, mt_re) - torch.matmul(t_im, mt_im),
                torch.matmul(t_re, mt_im) + torch.matmul(t_im, mt_re))

    def forward(self, amplitude: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
        """`amplitude` (B,1,n,n) network input, `phase` (B,1,n,n) its prediction -> (B,1,n,n)."""
        measured = amplitude.float() * self.scale
        # |O| from the frame's photons over the probe's power (Parseval), one value per frame
        energy = (measured * measured).sum(dim=(-2, -1), keepdim=True)
        level = torch.sqrt(energy / self.probe_power + 1e-12)
        # Where the model's far field is ~0 its direction is rounding noise: a floor of 1 %
        # of the frame's RMS amplitude keeps such pixels from steering the update.
        floor = 0.01 * torch.sqrt(energy / measured[0, 0].numel()) + 1e-12
        o_re, o_im = level * torch.cos(phase.float()), level * torch.sin(phase.float())
        for _ in range(self.iterations):
            psi_re, psi_im = self._cmul(self.p_re, self.p_im, o_re, o_im)
            far_re, far_im = self._transform(psi_re, psi_im, "f")
            norm = measured / (torch.sqrt(far_re * far_re + far_im * far_im) + floor)
            new_re, new_im = self._transform(far_re * norm, far_im * norm, "g")
            d_re, d_im = self._cmul(self.step_re, self.step_im, new_re - psi_re, new_im - psi_im)
            o_re, o_im = o_re + d_re, o_im + d_im
        # de-mean as the training targets are (nn.pairs.demeaned_phase): rotate by the
        # |P|^2-weighted mean phasor, so the phase stays centred on 0 and never wraps there
        m_re = (self.weight * o_re).sum(dim=(-2, -1), keepdim=True)
        m_im = (self.weight * o_im).sum(dim=(-2, -1), keepdim=True)
        return torch.atan2(o_im * m_re - o_re * m_im, o_re * m_re + o_im * m_im)


class RefinedModel(nn.Module):
    """A trained network followed by the refinement: what is exported and scored."""

    def __init__(self, network: nn.Module, refinement: Refinement) -> None:
        super().__init__()
        self.network = network
        self.refinement = refinement

    def forward(self, diffraction: torch.Tensor):
        outputs = predict_outputs(self.network, diffraction)
        phase = self.refinement(diffraction, outputs["phase"])
        if "amplitude" in outputs:
            return phase, outputs["amplitude"]
        return phase


def refinement_for(probe: np.ndarray | None, preprocessing: dict, iterations: int) -> Refinement | None:
    """The refinement for `probe`, or None when there is no probe, no iterations, or
    preprocessing that does not hand the network the measured amplitude."""
    seen = None if probe is None or iterations <= 0 else network_probe(probe, preprocessing)
    if seen is None:
        return None
    return Refinement(seen, iterations=iterations, scale=PreprocessConfig.from_json(preprocessing).scale)


def with_refinement(network: nn.Module, probe: np.ndarray | None, preprocessing: dict, iterations: int) -> nn.Module:
    """`network` followed by its refinement for `probe` (``refinement_for``), or as is."""
    refinement = refinement_for(probe, preprocessing, iterations)
    return network if refinement is None else RefinedModel(network, refinement).eval()
