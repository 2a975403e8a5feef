import h5py
import numpy as np
import pytest
from nn_helpers import PRE, small_pairs, small_sim

from ptychoflow.errors import InputError
from ptychoflow.nn import corpus as corpus_mod
from ptychoflow.nn.corpus import append_scan, corpus_info, load_corpus
from ptychoflow.nn.pairs import ReconstructionLike, cut_patches, demeaned_phase, make_pairs
from ptychoflow.nn.split import split_corpus
from ptychoflow.simulate.forward import extract_patches


def test_patches_match_the_forward_model_and_are_subpixel_aware():
    sim = small_sim(0)
    obj, pos = sim.truth_object, sim.positions_px
    exact = cut_patches(obj, pos, 64)
    np.testing.assert_array_equal(exact, extract_patches(obj, pos, 64))
    # An object stored with an origin offset (a padded rPIE canvas) gives the same patches.
    padded = np.zeros((obj.shape[0] + 20, obj.shape[1] + 20), obj.dtype)
    padded[10 : 10 + obj.shape[0], 5 : 5 + obj.shape[1]] = obj
    shifted = cut_patches(padded, pos, 64, origin_px=(-10, -5))
    np.testing.assert_allclose(shifted, exact, atol=1e-6)
    # Half a pixel: bilinear interpolation of the two neighbours.
    half = cut_patches(obj, pos[:3] + [0.5, 0], 64)
    np.testing.assert_allclose(half, 0.5 * (exact[:3] + cut_patches(obj, pos[:3] + [1, 0], 64)), atol=1e-5)


def test_phase_is_demeaned_by_the_probe_weighted_mean():
    pairs = small_pairs(0)
    weighted_mean = (pairs.phase * pairs.weight).sum(axis=(1, 2)) / pairs.weight.sum()
    assert np.abs(weighted_mean).max() < 0.02
    # A global phase on the object changes nothing (the pattern is blind to it).
    sim = small_sim(0)
    recon = ReconstructionLike(sim.truth_object * np.exp(1j * 2.0), sim.truth_probe, sim.positions_px)
    np.testing.assert_allclose(make_pairs(sim.scan.data, recon, PRE).phase, pairs.phase, atol=1e-4)
    assert demeaned_phase(np.ones((1, 4, 4), np.complex64) * 1j, np.ones((4, 4))).max() < 1e-6


def test_append_is_per_scan_idempotent_and_tagged(tmp_path):
    path = tmp_path / "corpus.h5"
    a, b = small_pairs(0), small_pairs(1)
    assert append_scan(path, "r0", a, PRE.to_json()) == len(a.phase)
    assert append_scan(path, "r0", a, PRE.to_json()) == 0  # a retried flow step adds nothing
    append_scan(path, "r1", b, PRE.to_json())
    data = load_corpus(path)
    assert len(data) == len(a.phase) + len(b.phase)
    assert [s.scan_id for s in data.scans] == ["r0", "r1"]
    np.testing.assert_array_equal(data.scan_index, np.repeat([0, 1], [len(a.phase), len(b.phase)]))
    np.testing.assert_array_equal(data.diffraction[: len(a.phase)], a.diffraction)
    assert corpus_info(path)["preprocessing"] == PRE.to_json()


def test_other_preprocessing_is_refused(tmp_path):
    path = tmp_path / "corpus.h5"
    append_scan(path, "r0", small_pairs(0), PRE.to_json())
    with pytest.raises(InputError, match="@preprocessing"):
        append_scan(path, "r1", small_pairs(1), {**PRE.to_json(), "transform": "log1p"})


def test_crash_mid_append_leaves_earlier_scans_intact(tmp_path, monkeypatch):
    path = tmp_path / "corpus.h5"
    append_scan(path, "r0", small_pairs(0), PRE.to_json())
    before = path.read_bytes()

    def crash(f, scan_id, pairs):
        f["phase"].resize(10_000, axis=0)  # half-done in-place growth...
        raise KeyboardInterrupt  # ...then the process dies

    monkeypatch.setattr(corpus_mod, "_append_rows", crash)
    with pytest.raises(KeyboardInterrupt):
        append_scan(path, "r1", small_pairs(1), PRE.to_json())
    assert path.read_bytes() == before
    assert [s.scan_id for s in load_corpus(path).scans] == ["r0"]
    assert not list(tmp_path.glob(".corpus.h5.tmp-*"))


def test_corrupt_corpus_gives_one_line_naming_file_and_field(tmp_path):
    path = tmp_path / "corpus.h5"
    append_scan(path, "r0", small_pairs(0), PRE.to_json())
    with h5py.File(path, "a") as f:
        del f["amplitude"]
    with pytest.raises(InputError, match=r"corpus\.h5: /amplitude: missing dataset"):
        load_corpus(path)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(InputError, match=r"corpus\.h5: \(file\): not a readable HDF5"):
        load_corpus(path)


def test_block_split_keeps_neighbours_apart(tmp_path):
    path = tmp_path / "corpus.h5"
    append_scan(path, "r0", small_pairs(0, 10.0), PRE.to_json())
    data = load_corpus(path)
    split = split_corpus(data, fraction=0.1, guard_px=20)
    assert split.mode == "blocks" and 0.05 < len(split.val) / len(data) < 0.2
    assert not set(split.train) & set(split.val)
    d = np.linalg.norm(data.positions_px[split.train][:, None] - data.positions_px[split.val][None], axis=2)
    assert d.min() >= 20


def test_whole_scans_are_held_out_when_there_are_enough(tmp_path):
    path = tmp_path / "corpus.h5"
    pairs = small_pairs(0)
    for k in range(10):
        append_scan(path, f"s{k}", pairs, PRE.to_json())
    data = load_corpus(path)
    split = split_corpus(data, fraction=0.1)
    assert split.mode == "scans" and len(split.val_scans) == 1
    held = {int(i) for i in np.unique(data.scan_index[split.val])}
    assert held.isdisjoint(np.unique(data.scan_index[split.train]).tolist())
    assert split_corpus(data, fraction=0.1).val_scans == split.val_scans  # stable
