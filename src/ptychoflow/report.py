"""The demo's final report: one self-contained HTML file (images inlined as base64 PNG).

Per scan: ground truth vs rPIE vs the stitched live PtychoNN image, their SSIM/RMSE (the
live image against both rPIE and the truth), which model made the live image and where
that model came from (pretrained, reused, trained on which scans), the flow run's per-state
timeline, and the user wait time (scan end -> image available) for both the live edge image
and the rPIE reconstruction. A sparse scan (demo --sparse) gets a one-line verdict.
"""

from __future__ import annotations

import base64
import html
import io
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ptychoflow.backends.base import RunInfo
from ptychoflow.fs import atomic_write_text

SECTIONS = ("Summary", "Scans", "Flow runs", "Edge", "Models")


@dataclass
class ScanSection:
    scan_id: str
    truth_phase: np.ndarray | None = None
    rpie_phase: np.ndarray | None = None
    edge_phase: np.ndarray | None = None  # the live image as served (polished across frames once the scan ended)
    rpie_ssim: float | None = None  # rPIE vs ground truth
    rpie_rmse: float | None = None
    edge_ssim: float | None = None  # the live image vs rPIE
    edge_model_version: str | None = None
    decision: str = ""  # e.g. "retrained: SSIM 0.21 < 0.35" / "skipped: SSIM 0.52 >= 0.35"
    run: RunInfo | None = None
    wait_edge_s: float | None = None
    wait_rpie_s: float | None = None
    edge_truth_ssim: float | None = None  # the live image vs ground truth
    edge_model_origin: str | None = None  # each version behind the live image and where it came from
    sparse: bool = False  # a low-overlap scan (demo --sparse)
    rpie_preview_png: bytes | None = None  # the product's picture (ptychoflow.preview): phase, amplitude, probe, loss
    network_phase: np.ndarray | None = None  # the network's stitched image alone
    network_ssim: float | None = None  # the network's stitched image alone vs rPIE
    edge_polish: str = ""  # what the edge's polish did, or why it did not run


@dataclass
class EdgeSection:
    frames_inferred: int = 0
    frames_dropped: int = 0
    fps: float | None = None
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    provider: str = ""


@dataclass
class DemoReport:
    title: str
    scans: list[ScanSection]
    edge: EdgeSection = field(default_factory=EdgeSection)
    models: list[dict] = field(default_factory=list)  # registry rows: version, parent, val_loss, ssim, best
    wall_time_s: float | None = None
    notes: list[str] = field(default_factory=list)


def _png(image: np.ndarray | None, title: str) -> str:
    if image is None:
        return f'<div class="missing">{html.escape(title)}<br>not available</div>'
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2.6, 2.6), dpi=90)
    finite = np.asarray(image, float)
    lo, hi = np.nanpercentile(finite, [1, 99]) if np.isfinite(finite).any() else (0, 1)
    ax.imshow(finite, cmap="gray", vmin=lo, vmax=hi)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="{html.escape(title)}" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _sparse_comparison(s: ScanSection) -> str:
    """One sentence: on the sparse scan, which of rPIE and the live image is closer to the truth."""
    if s.rpie_ssim is None or s.edge_truth_ssim is None:
        return f"<p>Sparse scan {html.escape(s.scan_id)}: no comparison (missing reconstruction or live image).</p>"
    better = "the live PtychoNN image" if s.edge_truth_ssim > s.rpie_ssim else "rPIE"
    return (f'<p class="sparse">Sparse scan {html.escape(s.scan_id)}: against the ground truth, rPIE scores SSIM '
            f"{s.rpie_ssim:.3f} and the live PtychoNN image {s.edge_truth_ssim:.3f}; {better} is closer.</p>")


def _fmt(value: float | None, spec: str = ".3f", unit: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{unit}"


def timeline_svg(run: RunInfo, width: int = 640) -> str:
    """Per-state bars on a shared time axis (an inline SVG plot; no script needed)."""
    states = [s for s in run.timeline if s.started is not None]
    if not states:
        return "<p>no state timings</p>"
    t0 = min(s.started for s in states)
    t1 = max((s.finished or s.started) for s in states)
    span = max(t1 - t0, 1e-3)
    label_w, bar_h = 170, 16
    height = bar_h * len(states) + 24
    parts = [f'<svg class="timeline" width="{width}" height="{height}" role="img" aria-label="state timeline">']
    colours = {"SUCCEEDED": "#2e7d32", "FAILED": "#c62828", "ACTIVE": "#f9a825"}
    for i, state in enumerate(states):
        y = i * bar_h
        x = label_w + (state.started - t0) / span * (width - label_w - 60)
        w = max(2.0, ((state.finished or t1) - state.started) / span * (width - label_w - 60))
        parts.append(f'<text x="0" y="{y + 12}" font-size="11">{html.escape(state.name)}</text>')
        parts.append(f'<rect x="{x:.1f}" y="{y + 2}" width="{w:.1f}" height="{bar_h - 4}" fill="{colours.get(state.status, "#555")}"/>')
        parts.append(f'<text x="{x + w + 4:.1f}" y="{y + 12}" font-size="10">{_fmt(state.duration, ".2f", " s")}</text>')
    parts.append(f'<text x="{label_w}" y="{height - 4}" font-size="10">0 s</text>')
    parts.append(f'<text x="{width - 60}" y="{height - 4}" font-size="10">{span:.1f} s</text></svg>')
    return "".join(parts)


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
h1{margin-bottom:0} table{border-collapse:collapse;margin:1em 0} td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px}
.images{display:flex;gap:8px} .preview{max-width:100%;margin-top:6px} .missing{width:230px;height:230px;border:1px dashed #aaa;display:flex;align-items:center;justify-content:center;text-align:center;color:#888}
section{margin-top:2em} .scan{border-top:1px solid #ddd;padding-top:1em}
"""


def render_report(report: DemoReport, path: str | Path) -> Path:
    """Write the report atomically and return its path."""
    path = Path(path)
    out: list[str] = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(report.title)}</title>",
                      f"<style>{_CSS}</style></head><body>", f"<h1>{html.escape(report.title)}</h1>",
                      f"<p>generated {time.strftime('%Y-%m-%d %H:%M:%S')}; wall time {_fmt(report.wall_time_s, '.0f', ' s')}</p>"]
    out.append('<section id="summary"><h2>Summary</h2><table><tr><th>scan</th><th>rPIE SSIM vs truth</th>'
               '<th>rPIE RMSE (rad)</th><th>live SSIM vs truth</th><th>live SSIM vs rPIE</th>'
               '<th>network alone vs rPIE</th><th>live image made by</th>'
               '<th>decision</th><th>wait: live image</th><th>wait: rPIE</th><th>run</th></tr>')
    for s in report.scans:
        status = s.run.status.value if s.run else "—"
        name = s.scan_id + (" (sparse)" if s.sparse else "")
        out.append(f"<tr><td>{html.escape(name)}</td><td>{_fmt(s.rpie_ssim)}</td><td>{_fmt(s.rpie_rmse)}</td>"
                   f"<td>{_fmt(s.edge_truth_ssim)}</td><td>{_fmt(s.edge_ssim)}</td><td>{_fmt(s.network_ssim)}</td>"
                   f"<td>{html.escape(s.edge_model_origin or s.edge_model_version or '—')}</td>"
                   f"<td>{html.escape(s.decision)}</td><td>{_fmt(s.wait_edge_s, '.2f', ' s')}</td>"
                   f"<td>{_fmt(s.wait_rpie_s, '.1f', ' s')}</td><td>{status}</td></tr>")
    out.append("</table>")
    out.extend(_sparse_comparison(s) for s in report.scans if s.sparse)
    out.extend(f"<p>{html.escape(note)}</p>" for note in report.notes)
    out.append("</section><section id=\"scans\"><h2>Scans</h2>")
    for s in report.scans:
        out.append(f'<div class="scan"><h3>{html.escape(s.scan_id)}{" (sparse)" if s.sparse else ""}</h3><div class="images">')
        out.append(_png(s.truth_phase, "ground truth phase"))
        out.append(_png(s.rpie_phase, f"rPIE (SSIM vs truth {_fmt(s.rpie_ssim, '.2f')})"))
        out.append(_png(s.edge_phase, f"live image (vs rPIE {_fmt(s.edge_ssim, '.2f')})"))
        if s.edge_polish.startswith("polished"):
            out.append(_png(s.network_phase, f"network alone (vs rPIE {_fmt(s.network_ssim, '.2f')})"))
        out.append("</div>")
        if s.edge_model_origin:
            out.append(f'<p class="origin">live image by {html.escape(s.edge_model_origin)}'
                       + (f"; {html.escape(s.edge_polish)}" if s.edge_polish else "") + "</p>")
        if s.rpie_preview_png:
            out.append(f'<img class="preview" alt="rPIE reconstruction of {html.escape(s.scan_id)}: phase, amplitude, '
                       f'probe, loss" src="data:image/png;base64,{base64.b64encode(s.rpie_preview_png).decode()}">')
        out.append("</div>")
    out.append('</section><section id="flow-runs"><h2>Flow runs</h2>')
    for s in report.scans:
        if s.run is None:
            continue
        out.append(f"<h3>{html.escape(s.scan_id)}: run {html.escape(s.run.run_id)} ({s.run.status.value})</h3>")
        out.append(timeline_svg(s.run))
    e = report.edge
    out.append('</section><section id="edge"><h2>Edge</h2><table>'
               f"<tr><th>execution provider</th><td>{html.escape(e.provider or '—')}</td></tr>"
               f"<tr><th>frames inferred</th><td>{e.frames_inferred}</td></tr>"
               f"<tr><th>frames dropped</th><td>{e.frames_dropped}</td></tr>"
               f"<tr><th>frames/s</th><td>{_fmt(e.fps, '.0f')}</td></tr>"
               f"<tr><th>latency p50 / p99</th><td>{_fmt(e.latency_p50_ms, '.1f', ' ms')} / {_fmt(e.latency_p99_ms, '.1f', ' ms')}</td></tr>"
               "</table></section>")
    out.append('<section id="models"><h2>Models</h2><table><tr><th>version</th><th>parent</th><th>origin</th>'
               "<th>val loss</th><th>held-out SSIM</th><th>best</th></tr>")
    for m in report.models:
        out.append(f"<tr><td>{html.escape(str(m.get('version')))}</td><td>{html.escape(str(m.get('parent') or '—'))}</td>"
                   f"<td>{html.escape(str(m.get('origin') or ', '.join(map(str, m.get('scans', [])))))}</td>"
                   f"<td>{_fmt(m.get('val_loss'), '.4f')}</td>"
                   f"<td>{_fmt(m.get('ssim'))}</td><td>{'★' if m.get('best') else ''}</td></tr>")
    out.append("</table></section></body></html>")
    return atomic_write_text(path, "".join(out))
