"""The reader registry on files other programs wrote: Eiger/NeXus masters with bitshuffle
data files and APS position files, CXI from h5py and from ptychodus's own writer, and every
malformed variant giving one line that names the file and the field."""

from __future__ import annotations

import os

import h5py
import hdf5plugin
import numpy as np
import pytest

from foreign_files import Geometry, write_cxi, write_eiger, write_velociprobe_positions
from ptychoflow.errors import ScanError
from ptychoflow.scan import ReadOptions, ScanReader, detect_format, load_scan, register_reader, scan_complete
from ptychoflow.scan.registry import incomplete_reason
from ptychoflow.scan.eiger import companions

BEAM = (20, 30)  # (y, x) beam centre on a 48 x 56 detector
BAD = [(21, 31), (5, 5)]  # one inside the 32 x 32 window, one outside


@pytest.fixture
def frames_and_positions(small_scan):
    scan = small_scan.scan
    return np.asarray(scan.data, np.uint32), np.asarray(scan.positions_m)


@pytest.fixture
def eiger_master(tmp_path, frames_and_positions):
    frames, positions = frames_and_positions
    return write_eiger(tmp_path / "eiger", "fly042", frames, positions, detector_shape=(48, 56), beam_centre_yx=BEAM,
                       frames_per_file=25, bad_pixels=BAD)


def _expected_frames(frames: np.ndarray) -> np.ndarray:
    expected = frames.copy()
    y, x = BAD[0][0] - (BEAM[0] - 16), BAD[0][1] - (BEAM[1] - 16)
    expected[:, y, x] = 0  # the masked pixel is zeroed, never 0xFFFFFFFF
    return expected


# -- Eiger / NeXus ----------------------------------------------------------------------
def test_eiger_master_with_bitshuffle_data_files_reads_back(eiger_master, frames_and_positions, small_scan):
    frames, positions = frames_and_positions
    with h5py.File(eiger_master.parent / "fly042_data_000001.h5") as d:
        assert "32008" in d["/entry/data/data"]._filters  # really bitshuffle/LZ4 on disk
    assert detect_format(eiger_master).name == "eiger"
    assert load_scan(eiger_master).frame_shape == (40, 40)  # by default the largest square about the beam centre
    scan = load_scan(eiger_master, ReadOptions(frame_size=32))
    assert scan.scan_id == "fly042" and scan.frame_shape == (32, 32) and scan.n_frames == len(frames)
    np.testing.assert_array_equal(scan.data, _expected_frames(frames))
    np.testing.assert_allclose(scan.positions_m, positions, atol=0.51e-9)  # the file stores whole nanometres
    assert scan.instrument.energy_keV == pytest.approx(8.8)
    assert scan.instrument.detector_distance_m == pytest.approx(1.92)
    assert scan.pixel_size_m == pytest.approx(small_scan.scan.pixel_size_m)
    assert scan.attrs["masked_pixels"] == 1 and scan.attrs["crop_centre_yx"] == list(BEAM)
    assert len(list((eiger_master.parent).glob("fly042_data_*.h5"))) == 3  # 66 frames, 25 per file
    assert [p.name for p in companions(eiger_master, ReadOptions())] == [
        "fly042_data_000001.h5", "fly042_data_000002.h5", "fly042_data_000003.h5", "fly042_positions.txt"]


def test_eiger_agrees_with_ptychodus_velociprobe_readers(eiger_master, frames_and_positions):
    """ptychodus's own Velociprobe readers see the same frames and positions in the same file."""
    from ptychodus.plugins.aps33id_velociprobe.aps33id_velociprobe_diffraction_file import VelociprobeDiffractionFileReader
    from ptychodus.plugins.aps33id_velociprobe.aps33id_velociprobe_position_file import VelociprobePositionFileReader

    ours = load_scan(eiger_master, ReadOptions(frame_size=32))
    diffraction = VelociprobeDiffractionFileReader()
    dataset = diffraction.read(eiger_master)
    theirs = np.concatenate([array.get_patterns() for array in dataset])
    ys, xs = slice(BEAM[0] - 16, BEAM[0] + 16), slice(BEAM[1] - 16, BEAM[1] + 16)
    good = ours.data != 0
    np.testing.assert_array_equal(theirs[:, ys, xs][good], ours.data[good])
    assert dataset.get_metadata().photon_energy_eV == pytest.approx(ours.instrument.energy_keV * 1e3)
    positions = VelociprobePositionFileReader.create_laser_interferometer_instance(diffraction).read(
        eiger_master.parent / "fly042_positions.txt")
    theirs_yx = np.array([(p.y_m, p.x_m) for p in positions])
    np.testing.assert_allclose(theirs_yx, ours.positions_m - ours.positions_m.mean(axis=0), atol=1e-12)


def test_eiger_encoder_column_and_chi_projection(tmp_path, frames_and_positions):
    frames, positions = frames_and_positions
    master = write_eiger(tmp_path, "tilted", frames, positions, chi_deg=60.0, compression="none")
    interferometer = load_scan(master)
    encoder = load_scan(master, ReadOptions(y_source="encoder"))
    np.testing.assert_allclose(encoder.positions_m, interferometer.positions_m)  # the file's sign flip undone
    np.testing.assert_allclose(interferometer.positions_m[:, 1], positions[:, 1] * 0.5, atol=1e-9)


def test_eiger_named_position_file_and_crop(tmp_path, frames_and_positions):
    frames, positions = frames_and_positions
    master = write_eiger(tmp_path, "s1", frames, positions, position_file=False)
    write_velociprobe_positions(tmp_path / "elsewhere.csv", positions)
    scan = load_scan(master, ReadOptions(positions_file=tmp_path / "elsewhere.csv", frame_size=16))
    assert scan.frame_shape == (16, 16)
    np.testing.assert_array_equal(scan.data, frames[:, 8:24, 8:24])


def _error(call) -> ScanError:
    with pytest.raises(ScanError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return info.value


def test_eiger_missing_data_file_names_the_link(eiger_master):
    (eiger_master.parent / "fly042_data_000002.h5").unlink()
    error = _error(lambda: load_scan(eiger_master))
    assert error.path == str(eiger_master) and error.field == "/entry/data/data_000002"
    assert "fly042_data_000002.h5 is missing" in error.problem
    assert not scan_complete(eiger_master)


def test_eiger_incomplete_acquisition_is_not_complete(tmp_path, frames_and_positions):
    frames, positions = frames_and_positions
    master = write_eiger(tmp_path, "part", frames, positions, frames_per_file=10)
    with h5py.File(master, "a") as f:  # the detector announced more triggers than were written so far
        f["/entry/instrument/detector/detectorSpecific/ntrigger"][()] = np.uint32(len(frames) + 5)
    assert not scan_complete(master)
    assert "acquisition not finished" in _error(lambda: load_scan(master)).problem
    assert load_scan(master, require_complete=False).n_frames == len(frames)


def test_eiger_without_position_file_says_where_it_looked(tmp_path, frames_and_positions):
    frames, positions = frames_and_positions
    master = write_eiger(tmp_path, "nopos", frames, positions, position_file=False)
    error = _error(lambda: load_scan(master))
    assert error.field == "positions" and "nopos_positions.txt" in error.problem


def test_position_rows_are_matched_to_frames_by_trigger_not_by_line(tmp_path, frames_and_positions):
    """A position file need not list its triggers in order (the file is the encoder's, not ours)."""
    frames, positions = frames_and_positions
    master = write_eiger(tmp_path, "shuffled", frames, positions, compression="none")
    in_order = load_scan(master).positions_m
    pos = tmp_path / "shuffled_positions.txt"
    header, *rows = pos.read_text().splitlines()
    rows = [rows[k] for k in np.random.default_rng(3).permutation(len(rows))]
    pos.write_text("\n".join([header, *rows]) + "\n")
    np.testing.assert_array_equal(load_scan(master).positions_m, in_order)


@pytest.mark.parametrize("case, field, problem", [
    ("short", "column 7 (trigger)", "no position for"),
    ("text", "line 3", "not a number"),
    ("columns", "line 2", "columns, expected at least 8"),
    ("duplicate", "column 7 (trigger)", "appears twice"),
    ("empty", "(file)", "no position rows"),
])
def test_malformed_position_files(tmp_path, frames_and_positions, case, field, problem):
    frames, positions = frames_and_positions
    master = write_eiger(tmp_path, "bad", frames, positions, compression="none")
    pos = tmp_path / "bad_positions.txt"
    lines = pos.read_text().splitlines()
    lines = {"short": lines[:-3], "text": lines[:2] + ["1,2,abc,0,0,0,0,2"] + lines[3:], "columns": [lines[0], "1,2,3"],
             "duplicate": lines + [lines[-1]], "empty": ["# nothing"]}[case]
    pos.write_text("\n".join(lines) + "\n")
    error = _error(lambda: load_scan(master))
    assert error.path == str(pos) and error.field == field and problem in error.problem


def _replace(f: h5py.File, path: str, make) -> None:
    """Delete `path` and put `make(parent group, leaf name)` there instead."""
    parent, _, leaf = path.rpartition("/")
    del f[path]
    make(f[parent], leaf)


@pytest.mark.parametrize("edit, field, problem", [
    (lambda f: f["/entry/instrument/detector/detector_distance"].attrs.modify("units", b"m") or
     f.__delitem__("/entry/instrument/detector/detector_distance"), "/entry/instrument/detector/detector_distance", "missing"),
    (lambda f: f["/entry/instrument/detector/y_pixel_size"].write_direct(np.array(55e-6)),
     "/entry/instrument/detector/y_pixel_size", "square pixels"),
    (lambda f: f["/entry/instrument/detector/beam_center_x"].write_direct(np.array(3.0)),
     "/entry/instrument/detector/beam_center_x", "does not fit"),
    (lambda f: f["/entry/instrument/detector/detectorSpecific/photon_energy"].write_direct(np.array(np.nan)),
     "/entry/instrument/detector/detectorSpecific/photon_energy", "finite"),
    # links and groups where a number belongs (frames.dataset_at opens paths through HDF5 itself)
    (lambda f: _replace(f, "/entry/instrument/detector/x_pixel_size", lambda g, name: g.create_group(name)),
     "/entry/instrument/detector/x_pixel_size", "missing dataset"),
    (lambda f: _replace(f, "/entry/instrument/detector/x_pixel_size",
                        lambda g, name: g.__setitem__(name, h5py.ExternalLink("gone.h5", "/x"))),
     "/entry/instrument/detector/x_pixel_size", "missing dataset"),
    (lambda f: _replace(f, "/entry/instrument/detector/x_pixel_size",
                        lambda g, name: g.__setitem__(name, h5py.SoftLink("/nowhere"))),
     "/entry/instrument/detector/x_pixel_size", "missing dataset"),
    (lambda f: _replace(f, "/entry/instrument/detector/x_pixel_size", lambda g, name: g.create_dataset(name, data="75e-6")),
     "/entry/instrument/detector/x_pixel_size", "one number"),
])
def test_malformed_master_fields(eiger_master, edit, field, problem):
    with h5py.File(eiger_master, "a") as f:
        edit(f)
    error = _error(lambda: load_scan(eiger_master))
    assert error.field == field and problem in error.problem


@pytest.mark.parametrize("target", ["../outside_data.h5", "/etc/passwd"])
def test_external_link_outside_the_scan_folder_is_refused(eiger_master, target):
    with h5py.File(eiger_master, "a") as f:
        del f["/entry/data/data_000002"]
        f["/entry/data/data_000002"] = h5py.ExternalLink(target, "/entry/data/data")
    error = _error(lambda: load_scan(eiger_master))
    assert error.field == "/entry/data/data_000002" and "refused" in error.problem


def test_truncated_data_file_is_one_line(eiger_master):
    data_file = eiger_master.parent / "fly042_data_000003.h5"
    os.truncate(data_file, data_file.stat().st_size // 2)
    error = _error(lambda: load_scan(eiger_master))
    assert "fly042_data_000003.h5" in str(error)


def test_a_data_file_alone_is_not_mistaken_for_a_scan(eiger_master):
    error = _error(lambda: detect_format(eiger_master.parent / "fly042_data_000001.h5"))
    assert "unknown scan format" in error.problem and "eiger" in error.problem


# -- CXI ----------------------------------------------------------------------------------
def test_cxi_written_to_the_spec_reads_back(tmp_path, frames_and_positions, small_scan):
    frames, positions = frames_and_positions
    mask = np.zeros(frames.shape[1:], bool)
    mask[3, 4] = True
    path = write_cxi(tmp_path / "run7.cxi", frames, positions, probe=small_scan.truth_probe, mask=mask)
    assert detect_format(path).name == "cxi"
    scan = load_scan(path)
    expected = frames.copy()
    expected[:, 3, 4] = 0
    np.testing.assert_array_equal(scan.data, expected)
    np.testing.assert_allclose(scan.positions_m, positions)
    np.testing.assert_allclose(scan.probe_guess, small_scan.truth_probe, rtol=1e-6)
    assert scan.instrument.energy_keV == pytest.approx(8.8) and scan.scan_id == "run7"
    assert scan.pixel_size_m == pytest.approx(small_scan.scan.pixel_size_m)


def test_an_all_zero_cxi_probe_is_refused_naming_its_cxi_field(tmp_path, frames_and_positions, small_scan):
    """The refusal names where this file keeps its probe, not where a native scan would."""
    from ptychoflow.recon.base import validate_scan

    frames, positions = frames_and_positions
    path = write_cxi(tmp_path / "run9.cxi", frames, positions, probe=np.zeros_like(small_scan.truth_probe))
    error = _error(lambda: validate_scan(load_scan(path)))
    assert error.field == "/entry_1/instrument_1/source_1/illumination" and "all zero" in error.problem


def test_cxi_agrees_with_ptychodus_cxi_reader(tmp_path, frames_and_positions):
    from ptychodus.plugins.cxi_file import CXIDiffractionFileReader, CXIProductFileIO

    frames, positions = frames_and_positions
    path = write_cxi(tmp_path / "run8.cxi", frames, positions)
    ours = load_scan(path)
    dataset = CXIDiffractionFileReader().read(path)
    np.testing.assert_array_equal(np.concatenate([a.get_patterns() for a in dataset]), ours.data)
    metadata = dataset.get_metadata()
    assert metadata.photon_energy_eV == pytest.approx(ours.instrument.energy_keV * 1e3)
    assert metadata.detector_distance_m == pytest.approx(ours.instrument.detector_distance_m)
    theirs = CXIProductFileIO()._read_positions(h5py.File(path))  # the same translation, as ptychodus maps it
    np.testing.assert_allclose([(p.y_m, p.x_m) for p in theirs], ours.positions_m)


def test_cxi_written_by_ptychodus_is_read(tmp_path, frames_and_positions):
    """ptychodus's CXI writer makes the file; the positions go where its product writer puts them."""
    from ptychodus.api.diffraction import DiffractionMetadata, SimpleDiffractionArray, SimpleDiffractionDataset
    from ptychodus.api.diffraction import DiffractionDatasetLayoutNode
    from ptychodus.api.geometry import ImageExtent, PixelGeometry
    from ptychodus.plugins.cxi_file import CXIDiffractionFileWriter

    frames, positions = frames_and_positions
    n = frames.shape[-1]
    metadata = DiffractionMetadata(num_patterns_per_array=[len(frames)], pattern_dtype=frames.dtype,
                                   detector_extent=ImageExtent(n, n), detector_distance_m=1.92,
                                   detector_pixel_geometry=PixelGeometry(75e-6, 75e-6), photon_energy_eV=8800.0)
    array = SimpleDiffractionArray("a", np.arange(len(frames)), frames)
    path = tmp_path / "ptychodus.cxi"
    CXIDiffractionFileWriter().write(path, SimpleDiffractionDataset(metadata, DiffractionDatasetLayoutNode.create_root(), [array]))
    with h5py.File(path, "a") as f:
        translation = np.zeros((len(positions), 3))
        translation[:, 0], translation[:, 1] = positions[:, 1], positions[:, 0]
        f["/entry_1/sample_1/geometry_1/translation"] = translation
    scan = load_scan(path)
    np.testing.assert_array_equal(scan.data, frames)
    np.testing.assert_allclose(scan.positions_m, positions)
    assert scan.instrument.energy_keV == pytest.approx(8.8)


def test_cxi_legacy_translation_location(tmp_path, frames_and_positions):
    frames, positions = frames_and_positions
    scan = load_scan(write_cxi(tmp_path / "old.cxi", frames, positions, legacy_translation=True))
    np.testing.assert_allclose(scan.positions_m, positions)


@pytest.mark.parametrize("edit, field, problem", [
    (lambda f: f.__delitem__("/entry_1/instrument_1/source_1/energy"), "/entry_1/instrument_1/source_1/energy", "missing"),
    (lambda f: (f.__delitem__("/entry_1/sample_1/geometry_1/translation"),
                f.__setitem__("/entry_1/sample_1/geometry_1/translation", np.zeros((3, 3)))),
     "/entry_1/sample_1/geometry_1/translation", "3 positions for 66 frames"),
    (lambda f: f["/entry_1/sample_1/geometry_1/translation"].write_direct(np.full((66, 3), np.nan)),
     "/entry_1/sample_1/geometry_1/translation", "NaN"),
    (lambda f: f["/entry_1/instrument_1/detector_1/x_pixel_size"].write_direct(np.array(-1.0)),
     "/entry_1/instrument_1/detector_1/x_pixel_size", "positive"),
    (lambda f: f.__delitem__("/entry_1/instrument_1/detector_1/data"), "/entry_1/data_1/data", "unresolvable"),
])
def test_malformed_cxi(tmp_path, frames_and_positions, edit, field, problem):
    frames, positions = frames_and_positions
    path = write_cxi(tmp_path / "bad.cxi", frames, positions)
    with h5py.File(path, "a") as f:
        edit(f)
    error = _error(lambda: load_scan(path, scan_format="cxi"))
    assert error.path == str(path) and error.field == field and problem in error.problem



@pytest.mark.parametrize("dtype, problem", [(np.complex64, "got complex64"), (bool, "got bool")])
def test_cxi_complex_or_boolean_frames_are_refused(tmp_path, frames_and_positions, dtype, problem):
    frames, positions = frames_and_positions
    path = write_cxi(tmp_path / "field.cxi", frames.astype(dtype), positions)
    error = _error(lambda: load_scan(path, scan_format="cxi"))
    assert error.path == str(path) and error.field.endswith("/data") and problem in error.problem

# -- the registry --------------------------------------------------------------------------
def test_every_layout_is_detected(tmp_path, scan_file, eiger_master, frames_and_positions, real_scan_path):
    frames, positions = frames_and_positions
    assert detect_format(scan_file).name == "ptychoflow"
    assert detect_format(eiger_master).name == "eiger"
    assert detect_format(write_cxi(tmp_path / "a.cxi", frames, positions)).name == "cxi"
    assert detect_format(real_scan_path).name == "tike-npz"
    assert load_scan(real_scan_path, ReadOptions(max_frames=20)).n_frames == 20


def test_unknown_layout_and_unknown_format_name(tmp_path, scan_file):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["something"] = 1
    assert "unknown scan format" in _error(lambda: load_scan(other)).problem
    error = _error(lambda: load_scan(scan_file, scan_format="pilatus"))
    assert error.field == "scan_format" and "known: auto, ptychoflow, eiger, cxi, tike-npz" in error.problem
    assert "no such file" in _error(lambda: load_scan(tmp_path / "absent.h5")).problem


def test_a_facility_registers_its_own_reader(tmp_path, small_scan):
    path = tmp_path / "scan.mine"
    path.write_text("hello")
    reader = ScanReader("mine", "a facility layout", lambda p, o, **kw: small_scan.scan,
                        lambda p: p.suffix == ".mine", lambda p, o: True)
    register_reader(reader)
    try:
        assert detect_format(path) is reader and load_scan(path) is small_scan.scan
        with pytest.raises(ValueError, match="already registered"):
            register_reader(reader)
    finally:
        from ptychoflow.scan import registry

        registry._READERS.pop("mine")


def test_checked_bitshuffle_decoding_matches_hdf5(eiger_master):
    """Our chunk-checked decoder gives exactly what HDF5's filter pipeline gives, cropped or not."""
    from ptychoflow.scan.chunks import ChunkDecoder

    with h5py.File(eiger_master.parent / "fly042_data_000001.h5") as d:
        dataset = d["/entry/data/data"]
        decoder = ChunkDecoder.for_dataset(dataset)
        assert decoder is not None  # a bitshuffle/LZ4 chunk per frame: the checked path applies
        reference = dataset[()]
        full = np.empty_like(reference)
        decoder.read(0, len(reference), (slice(None), slice(None)), full)
        np.testing.assert_array_equal(full, reference)
        window = (slice(4, 36), slice(14, 46))
        cropped = np.empty((len(reference), 32, 32), reference.dtype)
        decoder.read(0, len(reference), window, cropped)
        np.testing.assert_array_equal(cropped, reference[:, window[0], window[1]])


CORRUPTIONS = {  # offset in the chunk -> bytes written there
    "decoded size": (0, (10**9).to_bytes(8, "big")),
    "block size": (8, (10**8).to_bytes(4, "big")),
    "block length": (12, (10**8).to_bytes(4, "big")),
}


@pytest.mark.parametrize("frame", [3, 20], ids=["first half", "helper's half"])
@pytest.mark.parametrize("what", sorted(CORRUPTIONS))
def test_a_corrupt_bitshuffle_chunk_is_one_line_not_a_crash(eiger_master, what, frame):
    """HDF5's own bitshuffle filter crashes the process (SIGSEGV) on these chunks; a watcher or
    a flow function reading the scan must get one line naming the file, dataset and frame instead,
    whichever of the two decoding threads meets the chunk.
    Read in a child process, so that a crash fails this test rather than the whole run."""
    import subprocess
    import sys

    data_file = eiger_master.parent / "fly042_data_000001.h5"
    with h5py.File(data_file) as d:
        chunk = d["/entry/data/data"].id.get_chunk_info(frame)
    offset, value = CORRUPTIONS[what]
    with open(data_file, "r+b") as f:
        f.seek(chunk.byte_offset + offset)
        f.write(value)
    code = ("import sys; from ptychoflow.scan import load_scan; from ptychoflow.errors import ScanError\n"
            "try:\n    load_scan(sys.argv[1])\nexcept ScanError as e:\n    print(e)\nelse:\n    print('accepted')")
    result = subprocess.run([sys.executable, "-c", code, str(eiger_master)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"the reader crashed (exit {result.returncode}): {result.stderr[-300:]}"
    line = result.stdout.strip()
    assert "\n" not in line and "fly042_master.h5" in line and "/entry/data/data_000001" in line and "corrupt chunk" in line
    assert f"frame {frame}:" in line


def _bitshuffle_frames(path, frames: np.ndarray, *, written: list[int] | None = None, userblock: int = 0) -> None:
    """A data file as another program writes it: bitshuffle/LZ4, one chunk per frame, at /entry/data/data."""
    with h5py.File(path, "w", userblock_size=userblock or None) as f:
        dataset = f.create_dataset("/entry/data/data", shape=frames.shape, dtype=frames.dtype,
                                   chunks=(1, *frames.shape[1:]), **hdf5plugin.Bitshuffle(nelems=0, cname="lz4"))
        for k in range(len(frames)) if written is None else written:
            dataset[k] = frames[k]


@pytest.mark.parametrize("userblock", [0, 512], ids=["plain", "with a user block"])
def test_checked_decoding_reads_what_hdf5_reads(tmp_path, frames_and_positions, userblock):
    """The decoder reads chunks by their file offsets: a user block before the HDF5 data must not shift them."""
    from ptychoflow.scan.chunks import ChunkDecoder

    frames = frames_and_positions[0][:40]
    path = tmp_path / "data.h5"
    _bitshuffle_frames(path, frames, userblock=userblock)
    with h5py.File(path) as f:
        out = np.empty_like(frames)
        ChunkDecoder.for_dataset(f["/entry/data/data"]).read(0, 40, (slice(None), slice(None)), out)
    np.testing.assert_array_equal(out, frames)


@pytest.mark.parametrize("compression", ["bitshuffle", "gzip"])
def test_a_frame_never_written_is_named_and_the_scan_not_complete(eiger_master, frames_and_positions, compression):
    """HDF5 reads a chunk never written as zeros: a data file cut short (or still being filled)
    would read as frames of nothing. The reader names the frame, and the watcher waits."""
    data_file = eiger_master.parent / "fly042_data_000002.h5"  # frames 25-49 of the scan
    frames = frames_and_positions[0][25:50]
    with h5py.File(data_file) as f:
        full = f["/entry/data/data"][()]  # as the detector stored them (the whole detector)
    data_file.unlink()
    if compression == "bitshuffle":
        _bitshuffle_frames(data_file, full, written=[k for k in range(len(frames)) if k != 7])
    else:
        with h5py.File(data_file, "w") as f:
            dataset = f.create_dataset("/entry/data/data", shape=full.shape, dtype=full.dtype,
                                       chunks=(1, *full.shape[1:]), compression="gzip")
            for k in range(len(frames)):
                if k != 7:
                    dataset[k] = full[k]
    assert not scan_complete(eiger_master)
    assert "data_000002: frame 7 was never written" in incomplete_reason(eiger_master)  # what the watcher shows
    error = _error(lambda: load_scan(eiger_master))
    assert error.field == "/entry/data/data_000002" and "frame 7 was never written" in error.problem


def test_a_replayed_scan_is_read_as_what_it_is_now(tmp_path, real_scan_path):
    """A Tike scan replayed into our layout keeps its attributes, but is read back (and so
    read again for training) as a ptychoflow file, with our field names in errors."""
    from ptychoflow.scan import write_scan
    from ptychoflow.scan.registry import read_again

    tike = load_scan(real_scan_path, ReadOptions(max_frames=20))
    assert tike.read_as == "tike-npz" and tike.fields == ("data", "scan", "probe")
    replayed = load_scan(write_scan(tmp_path / "scan_star.h5", tike))
    assert replayed.attrs["source_layout"] == "tike-npz"  # provenance travels with the file...
    assert replayed.read_as == "ptychoflow"
    assert replayed.fields == ("/entry/data/data", "/entry/data/positions", "/entry/data/probe_guess")
    scan_format, options = read_again({"format": replayed.read_as, "options": replayed.read_options})
    assert scan_format == "ptychoflow" and load_scan(replayed.path, options, scan_format=scan_format).n_frames == 20


def test_a_forked_child_still_decodes_on_two_threads(eiger_master, frames_and_positions):
    """A worker forked after the parent has read a scan inherits the decoding pool without its
    thread; it must get its own rather than wait forever for the parent's."""
    import multiprocessing

    expected = load_scan(eiger_master).data
    context = multiprocessing.get_context("fork")
    with context.Pool(1) as pool:
        result = pool.apply_async(_frame_sum, (eiger_master,))
        assert result.get(timeout=60) == int(expected.sum())


def _frame_sum(path) -> int:
    return int(load_scan(path).data.sum())


def test_frames_read_in_many_blocks_match_one_block_and_name_the_right_frame(monkeypatch, eiger_master, scan_file):
    """Blocks (frames.BLOCK_BYTES) are each one hand-off to the decoder's helper: splitting a
    scan into many changes neither the frames nor the frame a bad count is reported at."""
    from ptychoflow.scan import frames

    whole = load_scan(eiger_master).data.copy()
    ours_whole = load_scan(scan_file).data.copy()
    monkeypatch.setattr(frames, "BLOCK_BYTES", 3 * whole[0].nbytes)  # 3 frames a block: 22 blocks for 66 frames
    np.testing.assert_array_equal(load_scan(eiger_master).data, whole)
    np.testing.assert_array_equal(load_scan(scan_file).data, ours_whole)
    with h5py.File(scan_file, "a") as f:
        counts = f["/entry/data/data"][()].astype(np.float32)
        counts[40, 1, 1] = np.nan
        del f["/entry/data/data"]
        f["/entry/data/data"] = counts
    error = _error(lambda: load_scan(scan_file))
    assert error.field == "/entry/data/data" and "frame 40 " in error.problem
