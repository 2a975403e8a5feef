"""One live mosaic per scan (the shared ``Mosaic``, weighted by the model's stitching weight),
rendered and saved.

Positions arrive in metres; the start message's ``pixel_size_m`` turns them into object
pixels. The worker thread adds patches while the web thread renders, hence a lock per scan.
At end of scan the image is written as HDF5 + PNG under temporary names and renamed.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from PIL import Image
from scipy import ndimage

from ptychoflow.fs import atomic_write, atomic_write_bytes
from ptychoflow.names import safe_component
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


def read_mosaic(path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """A saved mosaic and its attributes (origin_px, pixel_size_m, n_frames, models, complete)."""
    with h5py.File(path, "r") as f:
        return f["phase"][()], {key: f.attrs[key] for key in f.attrs}


class ScanMosaic:
    """A scan's live mosaic. Its patch size and stitching weight are fixed by the first model that
    serves the scan (one ``Mosaic`` has one weight); later models' patches are resampled to fit."""

    def __init__(self, scan_id: str, start: dict[str, Any], *, align_offsets: bool = False) -> None:
        self.scan_id = safe_component(scan_id, source="frame stream", field="scan_id")  # it names files
        self._mosaic_options = {"align_offsets": True} if align_offsets else {}
        self.pixel_size_m = float(start["pixel_size_m"])
        n_frames = start.get("n_frames")
        self.n_frames = n_frames if isinstance(n_frames, int) and not isinstance(n_frames, bool) else None
        self.started_at = time.time()
        self.ended = False
        self.models: list[str] = []
        self.files: dict[str, str] = {}
        self._mosaic: Mosaic | None = None
        self._lock = threading.Lock()
        self._png: tuple[int, bytes] | None = None
        self._resample_warned = False

    @property
    def count(self) -> int:
        return self._mosaic.count if self._mosaic else 0

    def add(self, patches: np.ndarray, positions_m: np.ndarray, weight: np.ndarray, version: str) -> np.ndarray:
        """Stitch (B, n, n) patches; returns their centres in object pixels."""
        centres = np.asarray(positions_m, np.float64) / self.pixel_size_m
        with self._lock:
            if self._mosaic is None:
                self._mosaic = Mosaic(weight.shape[0], weight, **self._mosaic_options)
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

    def image(self) -> tuple[np.ndarray, tuple[int, int]] | None:
        with self._lock:
            if self._mosaic is None:
                return None
            return self._mosaic.image(), self._mosaic.origin

    def png(self) -> bytes | None:
        """PNG of the current mosaic, re-rendered only when new patches arrived."""
        count = self.count
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
        directory.mkdir(parents=True, exist_ok=True)
        h5_path, png_path = directory / f"{self.scan_id}.h5", directory / f"{self.scan_id}.png"

        def write_h5(tmp: Path) -> None:
            with h5py.File(tmp, "w") as f:
                f.create_dataset("phase", data=image.astype(np.float32), compression="gzip")
                f.attrs.update(scan_id=self.scan_id, origin_px=origin, pixel_size_m=self.pixel_size_m,
                               n_frames=self.count, models=self.models, complete=complete, saved_at=time.time())

        atomic_write(h5_path, write_h5)
        atomic_write_bytes(png_path, render_png(image))
        self.files = {"h5": str(h5_path), "png": str(png_path)}
        return self.files

    def summary(self) -> dict[str, Any]:
        return {"scan_id": self.scan_id, "n_frames": self.n_frames, "inferred": self.count, "ended": self.ended,
                "models": list(self.models), "files": dict(self.files)}


class MosaicStore:
    def __init__(self, directory: Path, *, align_offsets: bool = False) -> None:
        self.directory = directory
        self.align_offsets = align_offsets
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
