"""Training pairs made from the physics: any texture, the scan's probe, its dose and geometry.

A real scan gives a few hundred (pattern, patch) pairs of one sample; a network trained on
them learns that sample. The far-field model, the scan's probe (rPIE's, or a guess before
any reconstruction) and the measured photon count turn any phase/amplitude texture into
more pairs of exactly the kind the edge will see. The textures come from ``nn.textures``
(dead leaves, power-law noise), never from the generator of the test objects.

The pairs go through ``nn.pairs.make_pairs``, as real pairs do: same preprocessing, same
de-meaned phase target, same probe weight. A virtual scan over each texture (random
positions) keeps the cutting code identical.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ptychoflow.nn.corpus import CorpusData, ScanEntry
from ptychoflow.nn.pairs import Pairs, ReconstructionLike, make_pairs
from ptychoflow.nn.textures import texture
from ptychoflow.preprocess import PreprocessConfig
from ptychoflow.simulate import forward

TEXTURE_PX = 256  # each texture is a 256 x 256 object; a virtual scan visits it at random
PAIRS_PER_TEXTURE = 64
PHASE_SCALE = (0.5, 1.5)  # each texture's phase range is the sample's times a factor from this range


@dataclass(frozen=True)
class SampleStats:
    """What physics pairs borrow from a real scan: its photon count and the sample's contrast,
    never its content. Before any scan, the defaults stand for a typical weak phase object."""

    counts_per_frame: float  # mean detected photons per frame
    phase_range: float = 1.0  # rad: 1-99 percentile spread of the de-meaned phase where the probe is bright
    amplitude_min: float = 0.7  # 1st percentile of the amplitude relative to its 99th there

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def sample_stats(phase: np.ndarray, amplitude: np.ndarray, weight: np.ndarray, counts_per_frame: float) -> SampleStats:
    """Contrast of one scan's target patches where its probe is bright (weight >= 0.5)."""
    lit = weight >= 0.5
    lo, hi = np.percentile(phase[:, lit], [1, 99])
    a_lo, a_hi = np.percentile(amplitude[:, lit], [1, 99])
    return SampleStats(
        counts_per_frame=float(counts_per_frame),
        phase_range=float(np.clip(hi - lo, 0.05, 2 * math.pi)),
        amplitude_min=float(np.clip(a_lo / max(a_hi, 1e-12), 0.05, 1.0)),
    )


def scan_stats(data: CorpusData, scan: ScanEntry) -> SampleStats:
    """``sample_stats`` of one corpus scan (which has a beam)."""
    rows = scan.rows
    assert scan.beam is not None
    return sample_stats(data.phase[rows], data.amplitude[rows], scan.weight, scan.beam.counts_per_frame)


def _object(rng: np.random.Generator, stats: SampleStats) -> np.ndarray:
    """One complex texture object: independent or thickness-coupled phase and amplitude."""
    phase_map = texture(TEXTURE_PX, rng)
    coupled = rng.uniform() < 0.5  # one material: amplitude falls where phase (thickness) rises
    amp_map = 1 - phase_map if coupled else texture(TEXTURE_PX, rng)
    phase = stats.phase_range * rng.uniform(*PHASE_SCALE) * phase_map
    amplitude = stats.amplitude_min + (1 - stats.amplitude_min) * amp_map
    return (amplitude * np.exp(1j * phase)).astype(np.complex64)


def physics_pairs(probe: np.ndarray, stats: SampleStats, preprocessing: PreprocessConfig, count: int, *,
                  seed: int = 0) -> list[Pairs]:
    """About `count` (pattern, patch) pairs, one ``Pairs`` per texture: each texture seen
    through `probe` (n x n complex, the scan's frame size) at `stats.counts_per_frame`
    photons, Poisson noise, then `preprocessing`, as a virtual scan at random whole-pixel
    positions (patches overlap as in a scan, never repeat)."""
    probe = np.asarray(probe, np.complex64)
    n = probe.shape[-1]
    if n > TEXTURE_PX // 2:
        raise ValueError(f"probe of {n} px is too large for {TEXTURE_PX} px textures")
    rng = np.random.default_rng(seed)
    textures = max(1, math.ceil(count / PAIRS_PER_TEXTURE))
    parts = []
    for _ in range(textures):
        obj = _object(rng, stats)
        centres = np.rint(rng.uniform(n / 2, TEXTURE_PX - n / 2, (PAIRS_PER_TEXTURE, 2)))
        intensity = forward.expected_intensity(obj, probe, centres, workers=1)
        intensity *= stats.counts_per_frame / max(float(intensity.sum(axis=(1, 2)).mean()), 1e-30)
        frames = forward.detector_counts(intensity, rng, dtype=np.float32)
        parts.append(make_pairs(frames, ReconstructionLike(obj, probe, centres), preprocessing))
    return parts


def physics_corpus(probe: np.ndarray, stats: SampleStats, preprocessing: PreprocessConfig, count: int, *,
                   seed: int = 0) -> CorpusData:
    """``physics_pairs`` as an in-memory corpus, one "scan" per texture (so a split holds out
    whole textures and the held-out score stitches each against its own phase)."""
    parts = physics_pairs(probe, stats, preprocessing, count, seed=seed)
    scans, start = [], 0
    for k, p in enumerate(parts):
        stop = start + len(p.phase)
        scans.append(ScanEntry(f"physics-{seed}-{k:04d}", start, stop, p.reference_phase, p.reference_origin_px,
                               p.weight, p.probe_symmetry, p.beam))
        start = stop
    return CorpusData(
        diffraction=np.concatenate([p.diffraction for p in parts]),
        phase=np.concatenate([p.phase for p in parts]),
        amplitude=np.concatenate([p.amplitude for p in parts]),
        positions_px=np.concatenate([p.positions_px for p in parts]),
        scan_index=np.concatenate([np.full(len(p.phase), k, np.int32) for k, p in enumerate(parts)]),
        scans=scans,
        preprocessing=preprocessing.to_json(),
    )
