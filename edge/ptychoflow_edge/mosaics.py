"""One live mosaic per scan (the shared ``Mosaic``, weighted by the model's stitching weight),
rendered and saved.

Positions arrive in metres; the start message's ``pixel_size_m`` turns them into object
pixels. A model that takes a centred crop of c of the frame's n detector pixels sees pixels n/c
times larger (nn.pairs), so the mosaic is on the network's grid: the first model to serve a scan
fixes its pixel, as it fixes its patch size. The worker thread adds patches while the web thread
renders, hence a lock per scan.
While the scan runs, the page shows the network's image. When it ends, and the model came with
its probe, the image is polished across frames (``ptychoflow.polish``: a few rPIE sweeps over
the scan's measured amplitudes, kept for it, refining the probe with the object: a guessed one
at a full step, a measured one at a quarter) and that is what is shown and saved.
The image is written as HDF5 (``phase``, the served image; ``network_phase``, the network's
alone) + PNG under temporary names and renamed.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from PIL import Image
from scipy import ndimage

from ptychoflow.artifact import ModelManifest
from ptychoflow.fs import atomic_write, atomic_write_bytes
from ptychoflow.names import safe_component
from ptychoflow.polish import PolishOptions, polish, probe_step_for
from ptychoflow.stitch import Mosaic

log = logging.getLogger("ptychoflow.edge.mosaic")
KEPT_SCANS = 16  # finished scans kept in memory for the page; all are on disk. Open scans are
# bounded by the receiver (edge.max_open_scans) and never evicted here.


def render_png(image: np.ndarray) -> bytes:
    """Greyscale PNG scaled to the finite range; unlit (NaN) pixels are transparent."""
    finite = np.isfinite(image)
    grey = np.zeros(image.shape, np.uint8)
    if finite.any():
        lo, hi = np.nanmin(image), np.nanmax(image)
        grey[finite] = np.clip((image[finite] - lo) / (hi - lo if hi > lo else 1.0) * 255, 0, 255).astype(np.uint8)
    alpha = np.where(finite, 255, 0).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(np.stack([grey, alpha], axis=-1), mode="LA").save(buffer, format="PNG")
    return buffer.getvalue()


def read_mosaic(path: str | Path, dataset: str = "phase") -> tuple[np.ndarray, dict[str, Any]]:
    """A saved mosaic's image (`dataset`: ``phase``, as served, or ``network_phase``, the network's
    alone) and its attributes (origin_px, pixel_size_m, n_frames, models, complete, polish)."""
    with h5py.File(path, "r") as f:
        return f[dataset][()], {key: f.attrs[key] for key in f.attrs}


class ScanMosaic:
    """A scan's live mosaic. Its patch size and stitching weight are fixed by the first model that
    serves the scan (one ``Mosaic`` has one weight); later models' patches are resampled to fit."""

    def __init__(self, scan_id: str, start: dict[str, Any], *, align_offsets: bool = False) -> None:
        self.scan_id = safe_component(scan_id, source="frame stream", field="scan_id")  # it names files
        self._mosaic_options = {"align_offsets": True} if align_offsets else {}
        self._start_pixel_m = float(start["pixel_size_m"])  # the object pixel of the whole frame
        self._pixel_scale = 1.0  # network pixels are this many start pixels: fixed by the first model
        n_frames = start.get("n_frames")
        self.n_frames = n_frames if isinstance(n_frames, int) and not isinstance(n_frames, bool) else None
        self.started_at = time.time()
        self.ended = False
        self.models: list[str] = []
        self.files: dict[str, str] = {}
        self._mosaic: Mosaic | None = None
        self._lock = threading.Lock()
        self._png: tuple[tuple[int, bool], bytes] | None = None
        self._resample_warned = False
        # for the polish at the end: the frames' measured amplitudes, their centres, the probe
        self._amplitudes: list[np.ndarray] = []
        self._centres: list[np.ndarray] = []
        self._probe: np.ndarray | None = None
        self._probe_measured = False
        self._kept_bytes = 0
        self._polished: np.ndarray | None = None
        self.polish_record: dict[str, Any] = {}  # what the polish did, or why it did not run

    @property
    def count(self) -> int:
        return self._mosaic.count if self._mosaic else 0

    @property
    def pixel_size_m(self) -> float:
        """The mosaic's pixel: the start message's, times the first model's pixel scale."""
        return self._start_pixel_m * self._pixel_scale

    def add(self, patches: np.ndarray, positions_m: np.ndarray, weight: np.ndarray, version: str, *,
            pixel_scale: float = 1.0) -> np.ndarray:
        """Stitch (B, n, n) patches from a model whose pixels are `pixel_scale` start pixels;
        returns their centres in the mosaic's pixels."""
        with self._lock:
            if self._mosaic is None:
                self._mosaic = Mosaic(weight.shape[0], weight, **self._mosaic_options)
                self._pixel_scale = float(pixel_scale)
            centres = np.asarray(positions_m, np.float64) / self.pixel_size_m
            size = self._mosaic.patch_size
            if patches.shape[-1] != size:  # a model with another output size was swapped in mid-scan
                if not self._resample_warned:
                    log.warning("scan %s: model %s gives %d px patches, mosaic uses %d px; resampling",
                                self.scan_id, version, patches.shape[-1], size)
                    self._resample_warned = True
                patches = ndimage.zoom(patches, (1, size / patches.shape[-1], size / patches.shape[-1]), order=1)
            self._mosaic.add(patches, centres)
            if version not in self.models:
                self.models.append(version)
        return centres

    def keep_for_polish(self, amplitudes: np.ndarray, centres: np.ndarray, probe: np.ndarray, manifest: ModelManifest, *,
                        max_bytes: float) -> None:
        """Keep frames' measured amplitudes (B, n, n) for the polish at the end of the scan,
        with the probe of the first model that brought one; beyond `max_bytes` the scan is
        served unpolished (and the record says so)."""
        with self._lock:
            if self._probe is None:
                self._probe, self._probe_measured = probe, manifest.probe_measured
                self.polish_record = {"probe_source": manifest.probe_source, "probe_measured": manifest.probe_measured}
            if amplitudes.shape[-2:] != self._probe.shape or "skipped" in self.polish_record:
                return
            if self._kept_bytes + amplitudes.nbytes > max_bytes:
                self.polish_record["skipped"] = f"more than {max_bytes / 2**20:.0f} MiB of frames to keep"
                self._amplitudes, self._centres = [], []
                log.warning("scan %s: not polished: %s", self.scan_id, self.polish_record["skipped"])
                return
            self._amplitudes.append(np.asarray(amplitudes, np.float32))
            self._centres.append(np.asarray(centres, np.float64))
            self._kept_bytes += amplitudes.nbytes

    def polish(self, options: PolishOptions) -> None:
        """Polish the finished scan's image across its kept frames (a no-op without them)."""
        with self._lock:
            if self._mosaic is None or not self._amplitudes or self._probe is None:
                return
            image, origin = self._mosaic.image(), self._mosaic.origin
            amplitudes, centres = np.concatenate(self._amplitudes), np.concatenate(self._centres)
            self._amplitudes, self._centres = [], []  # freed whatever happens next
        result = polish(image, origin, amplitudes, centres, self._probe,
                        replace(options, probe_step=probe_step_for(self._probe_measured)))
        with self._lock:
            self._polished = result.phase if result.sweeps else None
            self.polish_record.update(sweeps=result.sweeps, seconds=round(result.seconds, 3), frames=len(amplitudes),
                                      overlap=round(result.overlap, 3), probe_change=round(result.probe_change, 4))
            if result.skipped:
                self.polish_record["skipped"] = result.skipped
        log.info("scan %s: %s", self.scan_id, result.skipped or f"polished across {len(amplitudes)} frames, "
                 f"{result.sweeps} sweeps in {result.seconds:.1f} s")

    def image(self, *, network: bool = False) -> tuple[np.ndarray, tuple[int, int]] | None:
        """The served image (polished, once the scan is) or, with `network`, the network's alone."""
        with self._lock:
            if self._mosaic is None:
                return None
            if self._polished is not None and not network:
                return self._polished, self._mosaic.origin
            return self._mosaic.image(), self._mosaic.origin

    def png(self) -> bytes | None:
        """PNG of the current mosaic, re-rendered only when new patches arrived or it was polished."""
        count = (self.count, self._polished is not None)
        if self._png is not None and self._png[0] == count:
            return self._png[1]
        result = self.image()
        if result is None:
            return None
        self._png = (count, render_png(result[0]))
        return self._png[1]

    def save(self, directory: Path, *, complete: bool) -> dict[str, str]:
        """Write <scan>.h5 and <scan>.png atomically; returns their paths."""
        result = self.image()
        if result is None:
            return {}
        image, origin = result
        network, _ = self.image(network=True) or result
        directory.mkdir(parents=True, exist_ok=True)
        h5_path, png_path = directory / f"{self.scan_id}.h5", directory / f"{self.scan_id}.png"

        def write_h5(tmp: Path) -> None:
            with h5py.File(tmp, "w") as f:
                f.create_dataset("phase", data=image.astype(np.float32), compression="gzip")
                f.create_dataset("network_phase", data=network.astype(np.float32), compression="gzip")
                f.attrs.update(scan_id=self.scan_id, origin_px=origin, pixel_size_m=self.pixel_size_m,
                               n_frames=self.count, models=self.models, complete=complete, saved_at=time.time(),
                               polish=json.dumps(self.polish_record))

        atomic_write(h5_path, write_h5)
        atomic_write_bytes(png_path, render_png(image))
        self.files = {"h5": str(h5_path), "png": str(png_path)}
        return self.files

    def summary(self) -> dict[str, Any]:
        return {"scan_id": self.scan_id, "n_frames": self.n_frames, "inferred": self.count, "ended": self.ended,
                "models": list(self.models), "files": dict(self.files), "polish": dict(self.polish_record)}


class MosaicStore:
    def __init__(self, directory: Path, *, align_offsets: bool = False, polish: PolishOptions = PolishOptions()) -> None:
        self.directory = directory
        self.align_offsets = align_offsets
        self.polish = polish
        self._scans: OrderedDict[str, ScanMosaic] = OrderedDict()
        self._lock = threading.Lock()
        self.latest: str | None = None

    def start(self, header: dict[str, Any]) -> ScanMosaic:
        scan = ScanMosaic(str(header["scan_id"]), header, align_offsets=self.align_offsets)
        with self._lock:
            self._scans.pop(scan.scan_id, None)
            self._scans[scan.scan_id] = scan
            self.latest = scan.scan_id
            ended = [name for name, s in self._scans.items() if s.ended]
            for name in ended[: max(0, len(ended) - KEPT_SCANS)]:  # oldest finished scans first
                del self._scans[name]
        return scan

    def get(self, scan_id: str | None) -> ScanMosaic | None:
        with self._lock:
            return self._scans.get(scan_id or self.latest or "")

    def end(self, scan_id: str, *, complete: bool = True) -> dict[str, str]:
        """Close a scan and save it (`complete` False: closed before its end message came)."""
        scan = self.get(scan_id)
        if scan is None:
            return {}
        scan.ended = True
        if complete:
            try:
                scan.polish(self.polish)
            except Exception as exc:  # the network's image is saved whatever the polish does
                scan.polish_record["skipped"] = f"the polish failed: {type(exc).__name__}: {exc}"
                log.error("scan %s: %s", scan_id, scan.polish_record["skipped"])
        files = scan.save(self.directory, complete=complete)
        log.info("scan %s %s: %d frames stitched -> %s", scan_id, "ended" if complete else "closed incomplete",
                 scan.count, files.get("h5", "(no frames)"))
        return files

    def save_open(self) -> None:
        """On shutdown: save scans that never ended, marked incomplete."""
        with self._lock:
            open_scans = [s for s in self._scans.values() if not s.ended]
        for scan in open_scans:
            scan.save(self.directory, complete=False)

    def summaries(self) -> list[dict[str, Any]]:
        with self._lock:
            return [s.summary() for s in self._scans.values()]
