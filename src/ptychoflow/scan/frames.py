"""Reading detector frames out of HDF5 safely: one implementation for every reader.

- ``resolve_dataset`` follows soft links inside the file and external links only to files
  inside the scan's own directory (a master file chooses those names: they are data, never
  trusted paths), and says which file is missing when a detector data file is absent.
- ``FrameReader`` copies frames block by block into one array, cropping about the beam
  centre and zeroing masked pixels on the way, and checks every block for NaN and negative
  counts, so a bad frame is reported by its index before any work starts.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from ptychoflow.errors import InputError, ScanError
from ptychoflow.names import inside, printable
from ptychoflow.scan.chunks import ChunkDecoder

# Frames are read and validated in blocks of about this size. Each block is one hand-off to the
# chunk decoder's helper thread, so fewer, larger blocks read Eiger bitshuffle faster: at 128^2
# uint32 (1,024 frames a block) a median 0.85 x our layout's rate, against 0.81 with 256 (13 runs each).
BLOCK_BYTES = 64 * 2**20
REAL_KINDS = "uif"  # counts, positions, geometry: unsigned, signed or float (never complex, bool, text)


def open_h5(path: str | Path) -> h5py.File:
    """Open for reading without locks (detectors write on shared file systems); a missing,
    truncated or non-HDF5 file becomes a ScanError naming the file.

    A plain open comes first because it is the one that detects truncation (SWMR readers skip
    the end-of-file check, since the file may legitimately grow); SWMR is the fallback for a
    file still being written.
    """
    import hdf5plugin  # noqa: F401  - registers bitshuffle/LZ4 (Eiger) and friends with HDF5

    if not Path(path).exists():
        raise ScanError(path, "(file)", "no such file")
    try:
        return _open_plain_or_swmr(path)
    except OSError as exc:
        raise ScanError(path, "(file)", f"not a readable HDF5 file (truncated or corrupt?): {exc}") from None


def _open_plain_or_swmr(path: str | Path) -> h5py.File:
    try:
        return h5py.File(path, "r", locking=False)
    except OSError as exc:
        if "truncated" in str(exc).lower():
            raise
        try:
            return h5py.File(path, "r", locking=False, swmr=True)
        except (OSError, RuntimeError):
            raise exc from None


def resolve_dataset(path: Path, f: h5py.File, name: str, stack: ExitStack) -> h5py.Dataset:
    """The dataset at `name`, following soft links and safe external links (files it opens
    stay open until `stack` closes)."""
    group, _, leaf = name.rstrip("/").rpartition("/")
    parent = f.get(group or "/")
    if not isinstance(parent, h5py.Group) or leaf not in parent:
        raise ScanError(path, name, "missing dataset")
    link = parent.get(leaf, getlink=True)
    if isinstance(link, h5py.ExternalLink):
        target = external_file(path, name, link)
        other = stack.enter_context(open_h5(target))
        node = other.get(link.path)
        if not isinstance(node, h5py.Dataset):
            raise ScanError(path, name, f"external link to {target.name}:{printable(link.path)}: no such dataset there")
        return node
    try:
        node = parent[leaf]
    except (KeyError, OSError) as exc:
        raise ScanError(path, name, f"unresolvable link: {exc}") from None
    if not isinstance(node, h5py.Dataset):
        raise ScanError(path, name, f"expected a dataset, found a {type(node).__name__}")
    return node


def external_file(path: Path, name: str, link: h5py.ExternalLink) -> Path:
    """The file an external link names, refused unless it lies inside the linking file's folder."""
    try:
        target = inside(path.parent, link.filename, source=path, field=name)
    except InputError as exc:
        raise ScanError(path, name, f"external link refused: {exc.problem}") from None
    if not target.exists():
        raise ScanError(path, name, f"external data file {printable(link.filename)} is missing (not yet written or not transferred?)")
    return target


@dataclass(frozen=True)
class Crop:
    """A square window of side `size` whose centre pixel is `centre` (y, x) in the detector."""

    centre: tuple[int, int]
    size: int

    @classmethod
    def about(cls, centre_yx: tuple[float, float], shape: tuple[int, int], size: int | None) -> "Crop":
        """The window about the beam centre; `size` None: the largest even square that fits."""
        cy, cx = (int(round(c)) for c in centre_yx)
        largest = 2 * min(cy, cx, shape[0] - cy, shape[1] - cx)
        return cls((cy, cx), int(size if size is not None else largest))

    def slices(self) -> tuple[slice, slice]:
        half = self.size // 2
        return slice(self.centre[0] - half, self.centre[0] - half + self.size), \
            slice(self.centre[1] - half, self.centre[1] - half + self.size)

    def check(self, path: Path, field: str, shape: tuple[int, int]) -> None:
        ys, xs = self.slices()
        if self.size < 8 or ys.start < 0 or xs.start < 0 or ys.stop > shape[0] or xs.stop > shape[1]:
            raise ScanError(path, field, f"a {self.size}x{self.size} window about the beam centre (y, x) = "
                                         f"{self.centre} does not fit the {shape[0]}x{shape[1]} detector")


class FrameReader:
    """Copies validated frames from one or more datasets into one (N, n, n) array."""

    def __init__(self, path: Path, n_frames: int, crop: Crop | None, dtype: np.dtype,
                 frame_shape: tuple[int, int], mask: np.ndarray | None = None) -> None:
        require_real(path, "frames", np.dtype(dtype), "counts")
        self.path = path
        self.crop = crop
        self._window = crop.slices() if crop else (slice(None), slice(None))
        shape = (crop.size, crop.size) if crop else frame_shape
        self.out = np.empty((n_frames, *shape), dtype=dtype)
        bad = None if mask is None else np.asarray(mask[self._window], bool)
        self._bad = bad if bad is not None and bad.any() else None
        self.filled = 0

    @property
    def masked_pixels(self) -> int:
        return 0 if self._bad is None else int(self._bad.sum())

    def take(self, field: str, dataset: h5py.Dataset, count: int | None = None) -> None:
        """Append the first `count` frames of `dataset` (all of them by default), in blocks, each
        validated as it arrives. Bitshuffle/LZ4 frames are checked chunk by chunk before decoding
        (``chunks.ChunkDecoder``: HDF5's filter crashes on a corrupt chunk); other filters run in HDF5."""
        count = dataset.shape[0] if count is None else count
        if self.filled + count > self.out.shape[0]:
            raise ScanError(self.path, field, f"holds more frames than the {self.out.shape[0]} announced")
        require_written(self.path, field, dataset, count)
        decoder = ChunkDecoder.for_dataset(dataset)
        per_block = max(1, BLOCK_BYTES // (int(np.prod(self.out.shape[1:])) * self.out.itemsize))
        for start in range(0, count, per_block):
            self._take_block(field, dataset, start, min(start + per_block, count), decoder)

    def _take_block(self, field: str, dataset: h5py.Dataset, start: int, stop: int, decoder: ChunkDecoder | None) -> None:
        target = self.out[self.filled : self.filled + stop - start]
        try:
            if decoder is not None:
                decoder.read(start, stop, self._window, target)
            elif self.crop is None or target.shape[1:] == dataset.shape[1:]:
                dataset.read_direct(target, np.s_[start:stop])  # whole frames: the plain (fast) selection
            else:
                dataset.read_direct(target, np.s_[start:stop, self._window[0], self._window[1]])
        except (OSError, RuntimeError, ValueError) as exc:
            raise ScanError(self.path, field, f"frames {start}-{stop} unreadable (truncated, or a compression "
                                              f"filter this HDF5 lacks?): {exc}") from None
        if self._bad is not None:
            target[:, self._bad] = 0
        check_frames(self.path, field, target, self.filled)
        self.filled += stop - start

    def result(self, field: str) -> np.ndarray:
        if self.filled != self.out.shape[0]:
            raise ScanError(self.path, field, f"{self.filled} frames found, {self.out.shape[0]} announced")
        return self.out


def first_unwritten_frame(dataset: h5py.Dataset, count: int) -> int | None:
    """The first of the first `count` frames for which the file stores no data, or None.

    HDF5 reads data never written as the fill value (zeros), so a detector file cut short, or
    still being filled, would otherwise read as whole frames of nothing. Counting stored chunks
    is cheap; they are listed only when some are missing.
    """
    if count == 0:
        return None
    if dataset.chunks is None:  # contiguous: stored as a whole or not at all
        return None if dataset.id.get_storage_size() > 0 else 0
    per_frame_row = [-(-size // chunk) for size, chunk in zip(dataset.shape[1:], dataset.chunks[1:])]
    rows = -(-count // dataset.chunks[0])
    expected_per_row = int(np.prod(per_frame_row))
    if dataset.id.get_num_chunks() >= -(-dataset.shape[0] // dataset.chunks[0]) * expected_per_row:
        return None  # every chunk of the dataset is stored
    stored = np.zeros(rows, np.int64)

    def count_chunk(info) -> None:
        row = info.chunk_offset[0] // dataset.chunks[0]
        if row < rows:
            stored[row] += 1

    dataset.id.chunk_iter(count_chunk)
    missing = np.flatnonzero(stored < expected_per_row)
    return int(missing[0]) * dataset.chunks[0] if missing.size else None


def require_written(path: Path, field: str, dataset: h5py.Dataset, count: int) -> None:
    """Raise a ScanError naming the first of the first `count` frames the file holds no data for."""
    try:
        frame = first_unwritten_frame(dataset, count)
    except (AttributeError, RuntimeError, OSError):
        return  # an HDF5 that cannot list chunks: read as before
    if frame is not None:
        raise ScanError(path, field, f"frame {frame} was never written (no data stored for it): "
                                     "acquisition still running, stopped early, or the file cut short")


def dataset_at(f: h5py.File, name: str) -> h5py.h5d.DatasetID | None:
    """The dataset at the path `name`, or None where there is none (absent, or not a dataset).

    Opened through HDF5's own call: ``f.get`` costs about 4x more per lookup, and a master
    file is read for a dozen numbers, which showed in the Eiger read rate (issue 17).
    """
    try:
        node = h5py.h5o.open(f.id, name.encode())
    except KeyError:
        return None
    return node if isinstance(node, h5py.h5d.DatasetID) else None


def detector_mask(path: Path, f: h5py.File, name: str, shape: tuple[int, ...]) -> np.ndarray | None:
    """The detector's bad-pixel mask at ``name`` (True where masked), or None where the file has none."""
    node = dataset_at(f, name)
    if node is None:
        return None
    if tuple(node.shape) != tuple(shape):
        raise ScanError(path, name, f"shape {node.shape} differs from the frames' {tuple(shape)}")
    return h5py.Dataset(node)[()] != 0


def require_real(path: Path, field: str, dtype: np.dtype, what: str) -> None:
    """Counts and positions are real numbers: complex, boolean or text data is refused by name."""
    if dtype.kind not in REAL_KINDS:
        raise ScanError(path, field, f"{what} must be real numbers (integer or float), got {dtype}")


def check_frames(path: Path, field: str, block: np.ndarray, first_index: int = 0) -> None:
    """NaN, infinite or negative counts in `block` raise a ScanError naming the frame."""
    flat = block.reshape(block.shape[0], -1)
    if np.issubdtype(block.dtype, np.floating):
        finite = np.isfinite(flat).all(axis=1)
        if not finite.all():
            raise ScanError(path, field, f"frame {first_index + int(np.argmin(finite))} contains NaN or infinite counts")
    if np.issubdtype(block.dtype, np.signedinteger) or np.issubdtype(block.dtype, np.floating):
        negative = (flat < 0).any(axis=1)
        if negative.any():
            raise ScanError(path, field, f"frame {first_index + int(np.argmax(negative))} contains negative counts")


def scalar(path: Path, f: h5py.File, name: str, *, positive: bool = True) -> float:
    """A finite (positive) number stored at `name`."""
    node = dataset_at(f, name)
    if node is None:
        raise ScanError(path, name, "missing dataset")
    shape = node.shape
    if node.dtype.kind not in REAL_KINDS or int(np.prod(shape)) != 1:  # text ("8.8 keV"), arrays: say so, never guess
        raise ScanError(path, name, f"must be one number, got {node.dtype} of shape {shape}")
    number = np.empty(shape, node.dtype)
    node.read(h5py.h5s.ALL, h5py.h5s.ALL, number)
    value = float(number.reshape(-1)[0])
    if not np.isfinite(value) or (positive and value <= 0):
        raise ScanError(path, name, f"must be a {'positive ' if positive else ''}finite number, got {value}")
    return value
