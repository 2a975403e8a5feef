"""The check's pictures, for where people would rather look than read (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

ENGINE_NAMES = {"tike": "Tike", "ptychi": "Pty-chi"}


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, plt.figure(figsize=(width, height), dpi=110, layout="constrained")


def _box(mask: np.ndarray) -> tuple[slice, slice]:
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def rpie(path: Path, truth: np.ndarray, mask: np.ndarray, phases: dict[str, np.ndarray],
         losses: dict[str, list[float]], scores: dict[str, tuple[float, float]], setting: str) -> Path:
    """Truth and each engine's phase on one colour scale over the compared region, and the losses."""
    plt, fig = _figure(4.0 * (len(phases) + 2), 4.2)
    box = _box(mask)
    shown = np.where(mask, truth, np.nan)[box]
    low, high = np.nanpercentile(shown, [1, 99])
    panels = [("truth", shown)] + [
        (f"{ENGINE_NAMES[e]}: SSIM {scores[e][0]:.3f}, RMSE {scores[e][1]:.3f} rad",
         np.where(mask, p - np.angle(np.nanmean(np.exp(1j * (p - truth))[mask])), np.nan)[box])
        for e, p in phases.items()
    ]
    image_axes = []
    for index, (title, image) in enumerate(panels, 1):
        ax = fig.add_subplot(1, len(panels) + 1, index)
        im = ax.imshow(image, cmap="viridis", vmin=low, vmax=high)
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
        image_axes.append(ax)
    fig.colorbar(im, ax=image_axes, shrink=0.7, label="phase (rad)")
    ax = fig.add_subplot(1, len(panels) + 1, len(panels) + 1)
    for engine, loss in losses.items():
        ax.semilogy(np.arange(1, len(loss) + 1), np.asarray(loss) / loss[0], label=ENGINE_NAMES[engine])
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss / first loss")
    ax.legend()
    ax.set_title("convergence", fontsize=9)
    fig.suptitle(f"rPIE, {setting}: phase where the scan overlaps well (offset removed)", fontsize=10)
    fig.savefig(path)
    plt.close(fig)
    return path


def inference(path: Path, curves: dict[str, dict[int, float]], reference: dict[int, float], title: str) -> Path:
    """µs per frame against batch size for each variant, with the paper's Table 1 beside them."""
    plt, fig = _figure(7.5, 4.8)
    ax = fig.add_subplot(1, 1, 1)
    for label, points in curves.items():
        batches = sorted(points)
        ax.loglog(batches, [points[b] for b in batches], marker="o", label=label)
    if reference:
        batches = sorted(reference)
        ax.loglog(batches, [reference[b] for b in batches], "k--", marker="s", label="APS Table 1 (RTX A6000)")
    ax.set_xlabel("batch size (frames)")
    ax.set_ylabel("µs per frame")
    ax.set_xticks(sorted({b for points in curves.values() for b in points} | set(reference)))
    ax.get_xaxis().set_major_formatter(plt.matplotlib.ticker.ScalarFormatter())
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.savefig(path)
    plt.close(fig)
    return path
