"""Pictures of a reconstruction that people read at a glance (PNG, matplotlib's Agg canvas).

One figure, four panels: the object's phase and amplitude (each with a colour bar and a
scale bar in nm or µm; pixels no probe position lit are greyed out, since the data do not
constrain them), the probe (amplitude as brightness, phase as hue, with its colour wheel),
and the loss curve on a log scale. ``ptychoflow show``, the product writer and the report
all draw with ``render_preview``.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import hsv_to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

if TYPE_CHECKING:  # the product module calls this one to draw its preview
    from ptychoflow.product import ReconstructionProduct

DPI = 110
SCALE_BAR_FRACTION = 0.2  # of the image width
UNLIT = "#4a6a8a"  # steel blue: distinct from every colour map used


def nice_length(length_m: float) -> float:
    """The largest 1, 2 or 5 x 10^k metres not above `length_m`."""
    exponent = math.floor(math.log10(length_m))
    for mantissa in (5, 2, 1):
        if mantissa * 10**exponent <= length_m:
            return mantissa * 10**exponent
    return 10 ** (exponent - 1) * 5


def length_label(length_m: float) -> str:
    """`length_m` in µm or nm, three significant figures."""
    if length_m >= 1e-6:
        return f"{length_m * 1e6:.3g} µm"
    return f"{length_m * 1e9:.3g} nm"


def add_scale_bar(ax: Axes, width_px: int, height_px: int, pixel_size_m: float) -> None:
    """A white bar with a dark outline, bottom left, labelled in nm or µm."""
    length_m = nice_length(SCALE_BAR_FRACTION * width_px * pixel_size_m)
    length_px = length_m / pixel_size_m
    x0, y0, thickness = 0.05 * width_px, 0.92 * height_px, max(1.5, 0.015 * height_px)
    ax.add_patch(Rectangle((x0, y0), length_px, thickness, facecolor="white", edgecolor="black", linewidth=0.8))
    ax.text(x0 + length_px / 2, y0 - 0.02 * height_px, length_label(length_m), color="white", ha="center", va="bottom",
            fontsize=9, fontweight="bold", path_effects=_outline())


def _outline() -> list:
    from matplotlib import patheffects

    return [patheffects.withStroke(linewidth=2, foreground="black")]


def complex_to_rgb(field: np.ndarray) -> np.ndarray:
    """Hue = phase, brightness = amplitude (normalised to the maximum)."""
    amplitude = np.abs(field)
    value = amplitude / max(float(amplitude.max()), 1e-30)
    hue = (np.angle(field) + np.pi) / (2 * np.pi)
    return hsv_to_rgb(np.stack([hue, np.ones_like(hue), value], axis=-1))


def _colour_wheel(ax: Axes) -> None:
    """The legend of complex_to_rgb: phase around, amplitude outwards."""
    n = 101
    y, x = np.mgrid[-1 : 1 : n * 1j, -1 : 1 : n * 1j]
    r = np.hypot(x, y)
    wheel = complex_to_rgb(np.where(r <= 1, r * np.exp(1j * np.arctan2(y, x)), 0))
    rgba = np.concatenate([wheel, (r <= 1)[..., None].astype(float)], axis=-1)
    ax.imshow(rgba, origin="lower")
    ax.set_axis_off()


def _image_panel(fig: Figure, ax: Axes, image: np.ndarray, lit: np.ndarray, title: str, label: str, cmap: str,
                 pixel_size_m: float) -> None:
    values = image[lit] if lit.any() else image.ravel()
    low, high = np.percentile(values, [1, 99])
    shown = np.where(lit, image, np.nan)
    colours = fig.colorbar(ax.imshow(shown, cmap=_with_grey(cmap), vmin=low, vmax=high, interpolation="nearest"),
                           ax=ax, fraction=0.046, pad=0.03)
    colours.set_label(label)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    add_scale_bar(ax, image.shape[1], image.shape[0], pixel_size_m)


def _with_grey(name: str):
    from matplotlib import colormaps

    return colormaps[name].with_extremes(bad=UNLIT)  # not lit by any probe position: unconstrained by the data


def _figure(product: ReconstructionProduct) -> Figure:
    fig = Figure(figsize=(13.5, 3.9), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(1, 4, width_ratios=[1.15, 1.15, 0.95, 1.05])
    lit = product.lit_mask()
    phase = product.phase - (np.median(product.phase[lit]) if lit.any() else 0.0)
    _image_panel(fig, fig.add_subplot(grid[0]), phase, lit, "object phase", "phase (rad)", "gray", product.pixel_size_m)
    _image_panel(fig, fig.add_subplot(grid[1]), product.amplitude, lit, "object amplitude", "amplitude", "magma",
                 product.pixel_size_m)
    probe_ax = fig.add_subplot(grid[2])
    probe = np.asarray(product.probe)
    probe_ax.imshow(complex_to_rgb(probe), interpolation="nearest")
    probe_ax.set_title("probe: brightness |P|, hue phase")
    probe_ax.set_xticks([])
    probe_ax.set_yticks([])
    add_scale_bar(probe_ax, probe.shape[-1], probe.shape[-2], product.pixel_size_m)
    _colour_wheel(probe_ax.inset_axes([0.76, 0.02, 0.23, 0.23]))
    loss_ax = fig.add_subplot(grid[3])
    loss = np.asarray(product.loss_history, float)
    if loss.size:
        loss_ax.plot(np.arange(1, loss.size + 1), loss, color="tab:blue", marker="o" if loss.size < 30 else None, ms=3)
        if (loss > 0).all():
            loss_ax.set_yscale("log")
    loss_ax.set_xlabel("iteration")
    loss_ax.set_ylabel("loss")
    loss_ax.grid(True, which="both", alpha=0.3)
    stop = "" if not product.stopped_early else f", stopped: {product.stop_reason}"
    loss_ax.set_title(f"{product.engine or 'rPIE'}: {product.iterations_run} iterations{stop}")
    nominal = product.parameters.get("scan_attrs", {}).get("nominal_geometry")
    fig.suptitle(f"{product.scan_id}   pixel {length_label(product.pixel_size_m)}"
                 f"{' (nominal: the scan file has no geometry)' if nominal else ''}   object "
                 f"{product.object.shape[1]}×{product.object.shape[0]} px", fontsize=11)
    return fig


def render_preview(product: ReconstructionProduct, path: str | Path | None = None) -> bytes:
    """The preview as PNG bytes; also written to `path` if given (the caller makes it atomic)."""
    buffer = io.BytesIO()
    _figure(product).savefig(buffer, format="png", dpi=DPI)
    data = buffer.getvalue()
    if path is not None:
        Path(path).write_bytes(data)
    return data
