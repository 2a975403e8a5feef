"""The HTML report is one self-contained file with every section."""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pytest

from ptychoflow.backends.base import RunInfo, RunStatus, StateRecord
from ptychoflow.report import DemoReport, EdgeSection, ScanSection, render_report


def test_report_has_all_sections_and_inlines_images(tmp_path):
    run = RunInfo("r1", "f1", RunStatus.SUCCEEDED, timeline=[
        StateRecord("TransferScan", "SUCCEEDED", 0.0, 1.0), StateRecord("Reconstruct", "SUCCEEDED", 1.0, 31.0)])
    image = np.random.default_rng(0).normal(size=(32, 32))
    report = DemoReport("demo", [ScanSection("scan_0001", image, image, None, 0.9, 0.05, None, None,
                                             "retrained: no model yet", run, None, 32.0)],
                        EdgeSection(100, 0, 500.0, 2.0, 5.0, "CPUExecutionProvider"),
                        models=[{"version": "v1", "parent": None, "scans": ["scan_0001"], "val_loss": 0.1, "ssim": 0.4, "best": True}])
    path = render_report(report, tmp_path / "report.html")
    text = path.read_text()
    for section in ("summary", "scans", "flow-runs", "edge", "models"):
        assert f'id="{section}"' in text
    assert len(re.findall(r'src="data:image/png;base64,', text)) == 2
    assert "not available" in text  # the missing live image is shown as missing, not hidden
    assert "<svg" in text and "Reconstruct" in text and "30.00 s" in text
    assert "http" not in text.replace("http-equiv", "")  # self-contained: nothing fetched


def test_report_shows_the_product_preview(tmp_path, small_scan):
    from ptychoflow.preview import render_preview
    from ptychoflow.product import ReconstructionProduct

    product = ReconstructionProduct(
        object=small_scan.truth_object.astype(np.complex64), probe=small_scan.truth_probe.astype(np.complex64),
        positions_px=small_scan.positions_px, object_origin_px=np.zeros(2), pixel_size_m=small_scan.scan.pixel_size_m,
        loss_history=np.geomspace(1, 0.1, 10), scan_id="scan_0001", engine="ptychi", iterations_run=10)
    section = ScanSection("scan_0001", rpie_phase=np.angle(small_scan.truth_object), rpie_preview_png=render_preview(product))
    text = render_report(DemoReport("demo", [section]), tmp_path / "report.html").read_text()
    assert 'class="preview" alt="rPIE reconstruction of scan_0001: phase, amplitude, probe, loss"' in text


@pytest.mark.parametrize("pixel", [float("nan"), 0.0, -5e-8])
def test_a_mosaic_with_an_unusable_pixel_size_is_one_line_naming_the_field(tmp_path, pixel):
    """The report puts each saved mosaic on its product's grid by the mosaic's pixel size."""
    import h5py

    from ptychoflow.demo.collect import mosaic_on_product
    from ptychoflow.errors import InputError

    path = tmp_path / "scan_0001.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("phase", data=np.zeros((8, 8), np.float32))
        f.attrs.update(origin_px=[0, 0], pixel_size_m=pixel)
    product = SimpleNamespace(pixel_size_m=1e-8, object_origin_px=(0.0, 0.0), phase=np.zeros((8, 8)))
    with pytest.raises(InputError, match=r"scan_0001.h5: pixel_size_m: expected a positive pixel size"):
        mosaic_on_product(path, product)
