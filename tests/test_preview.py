"""The reconstruction preview: four readable panels in one PNG of a sensible size."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from ptychoflow.preview import complex_to_rgb, length_label, nice_length, render_preview
from ptychoflow.product import ReconstructionProduct


@pytest.fixture
def product(small_scan):
    return ReconstructionProduct(
        object=small_scan.truth_object.astype(np.complex64), probe=small_scan.truth_probe.astype(np.complex64),
        positions_px=small_scan.positions_px, object_origin_px=np.zeros(2), pixel_size_m=small_scan.scan.pixel_size_m,
        loss_history=np.geomspace(1.0, 0.05, 40), scan_id="tiny", engine="ptychi", iterations_run=40)


def test_preview_png_has_every_panel(tmp_path, product):
    path = tmp_path / "p.png"
    data = render_preview(product, path)
    assert path.read_bytes() == data and data[:8] == b"\x89PNG\r\n\x1a\n"
    image = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert image.shape[1] >= 1200 and 350 <= image.shape[0] <= 600 and len(data) > 40_000
    quarters = np.array_split(image, 4, axis=1)  # phase, amplitude, probe, loss: each panel drew something
    assert all(q.std() > 20 for q in quarters)
    probe_quarter = quarters[2].reshape(-1, 3).astype(int)
    assert (np.ptp(probe_quarter, axis=1) > 100).sum() > 500  # saturated hues: the probe's colour wheel rendering


def test_scale_bar_lengths_and_labels():
    assert nice_length(3.7e-6) == pytest.approx(2e-6) and nice_length(9.9e-8) == pytest.approx(5e-8)
    assert nice_length(1e-6) == pytest.approx(1e-6)
    assert length_label(2e-6) == "2 µm" and length_label(5e-8) == "50 nm" and length_label(5.63565e-8) == "56.4 nm"


def test_complex_colouring():
    rgb = complex_to_rgb(np.array([[0, 1, -1, 1j]]))
    np.testing.assert_allclose(rgb[0, 0], 0)  # no amplitude: black
    assert not np.allclose(rgb[0, 1], rgb[0, 2])  # opposite phases: different hues
    assert rgb.max() <= 1 and rgb.min() >= 0
