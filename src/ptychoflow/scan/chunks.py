"""Decode bitshuffle/LZ4 detector frames (the Eiger's compression) with every chunk checked first.

HDF5's own bitshuffle filter (hdf5plugin) trusts each chunk's header: a chunk that announces
more bytes than the frame holds, or a block longer than the chunk, crashes the process
(measured: a segmentation fault, not an error). A watcher or a flow function must not die on
one bad file, so this reader walks each chunk's header and block lengths, and only then lets
bitshuffle's C function (``bshuf_decompress_lz4``, the one the filter calls; its LZ4 decoder is
the bounded ``LZ4_decompress_safe``) decode it into the frame.

Speed (docs/benchmarks.md, issue 17): the chunks' file offsets are listed once (HDF5's
``chunk_iter``), their bytes are read with ``os.pread`` and decoded by two threads at once. Neither
step takes h5py's lock, and ctypes releases the GIL while bitshuffle runs, so the two threads
really decode side by side. Where the listing is unavailable or disagrees with HDF5 (another
file driver, an HDF5 whose offsets leave out a user block), chunks are read through h5py on one
thread, as before.

Only the plain case takes this path: one frame per chunk and bitshuffle (HDF5 filter 32008)
with LZ4 as the only filter. Anything else returns None and the caller reads through HDF5.
"""

from __future__ import annotations

import ctypes
import os
import struct
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any, Callable, NamedTuple

import h5py
import numpy as np

BITSHUFFLE_FILTER = 32008
BITSHUFFLE_LZ4 = 2  # cd_values[4]
HEADER_BYTES = 12  # uint64 BE decoded bytes, uint32 BE block size in bytes
BLOCK_LENGTH_BYTES = 4  # each block: uint32 BE compressed length, then the LZ4 data
DECODING_THREADS = 2  # this one and a helper: the machines have 2 cores; a third measured slower (docs/benchmarks.md)
MIN_FRAMES_TO_SHARE = 16  # below this, handing half to the helper costs more than it saves
_HEADER = struct.Struct(">QI")
_BLOCK_LENGTH = struct.Struct(">I")


@lru_cache(maxsize=1)
def _bitshuffle() -> Callable[..., int] | None:
    """``bshuf_decompress_lz4`` from hdf5plugin's bitshuffle library, or None."""
    try:
        import hdf5plugin

        lib = ctypes.CDLL(hdf5plugin.get_config().registered_filters["bshuf"])
        function = lib.bshuf_decompress_lz4
    except (ImportError, KeyError, OSError, AttributeError):
        return None
    function.restype = ctypes.c_int64
    function.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_size_t]
    return function


def _helper() -> ThreadPoolExecutor:
    return _helper_of_process(os.getpid())


@lru_cache(maxsize=1)
def _helper_of_process(pid: int) -> ThreadPoolExecutor:
    """One per process: a forked child inherits the pool but not its thread, and would wait forever."""
    return ThreadPoolExecutor(max_workers=DECODING_THREADS - 1, thread_name_prefix="ptychoflow-chunks")


class RawChunk(NamedTuple):
    """One frame's stored bytes, and where they start in memory (for bitshuffle's C function)."""

    filter_mask: int
    data: bytes | memoryview
    address: int

    @classmethod
    def of(cls, filter_mask: int, data: bytes) -> "RawChunk":
        return cls(filter_mask, data, ctypes.cast(data, ctypes.c_void_p).value or 0)


def _chunk_table(dataset: h5py.Dataset) -> dict[int, Any] | None:
    """Frame index -> HDF5's StoreInfo of its chunk (filter_mask, byte_offset, size), for a plain
    file whose listing HDF5 confirms; else None."""
    if dataset.file.driver != "sec2" or dataset.shape[0] == 0:
        return None
    listing: list[Any] = []
    try:
        dataset.id.chunk_iter(listing.append)
        table = {info.chunk_offset[0]: info for info in listing}
        first = table[min(table)]
        mask, data = dataset.id.read_direct_chunk(first.chunk_offset)
        with open(dataset.file.filename, "rb", buffering=0) as raw:
            confirmed = os.pread(raw.fileno(), first.size, first.byte_offset) == data
    except (AttributeError, OSError, RuntimeError, ValueError, KeyError):
        return None  # an h5py or HDF5 without chunk_iter, or chunks it cannot list
    return table if confirmed and mask == first.filter_mask else None


def _unwritten(index: int) -> OSError:
    """Readers refuse unwritten frames before decoding (frames.require_written); this is the backstop."""
    return OSError(f"frame {index} was never written (no chunk stored)")


class ChunkDecoder:
    """Decodes frames of a dataset stored one frame per bitshuffle/LZ4 chunk."""

    def __init__(self, dataset: h5py.Dataset, decompress: Callable[..., int]) -> None:
        self.dataset = dataset
        self._decompress = decompress
        self._elements = int(np.prod(dataset.shape[1:]))
        self._itemsize = dataset.dtype.itemsize
        self._table = _chunk_table(dataset)

    @classmethod
    def for_dataset(cls, dataset: h5py.Dataset) -> "ChunkDecoder | None":
        if dataset.ndim != 3 or dataset.chunks != (1, *dataset.shape[1:]):
            return None
        plist = dataset.id.get_create_plist()
        if plist.get_nfilters() != 1:
            return None
        code, _flags, cd_values, _name = plist.get_filter(0)
        if code != BITSHUFFLE_FILTER or len(cd_values) < 5 or cd_values[4] != BITSHUFFLE_LZ4:
            return None
        decompress = _bitshuffle()
        return None if decompress is None else cls(dataset, decompress)

    def read(self, start: int, stop: int, window: tuple[slice, slice], out: np.ndarray) -> None:
        """Frames start..stop-1, cropped to `window`, into `out` (a (stop-start, h, w) array)."""
        if self._table is None:  # through h5py, which holds its lock: one thread
            self._decode_frames(None, range(start, stop), window, out, start)
            return
        with open(self.dataset.file.filename, "rb", buffering=0) as raw:
            fd = raw.fileno()
            if stop - start < MIN_FRAMES_TO_SHARE:
                self._decode_frames(fd, range(start, stop), window, out, start)
                return
            # Contiguous parts, not frames taken in turn: each thread then fills its own pages of
            # `out` (measured faster; first-touch page faults are a large part of the cost).
            bounds = [start + (stop - start) * k // DECODING_THREADS for k in range(DECODING_THREADS + 1)]
            helpers = [_helper().submit(self._decode_frames, fd, range(low, high), window, out, start)
                       for low, high in zip(bounds[1:-1], bounds[2:])]
            try:
                self._decode_frames(fd, range(bounds[0], bounds[1]), window, out, start)
            finally:
                failures = [helper.exception() for helper in helpers]  # waits: `out` and the file stay ours until then
            for failure in failures:
                if failure is not None:
                    raise failure

    def _raw_chunks(self, fd: int | None, frames: range) -> list[RawChunk]:
        """The stored bytes of `frames`: one read of the file span they occupy (chunks lie in
        order on disk), chunk by chunk if they are scattered, or through h5py without a listing."""
        if fd is None or self._table is None:
            return [self._h5py_chunk(index) for index in frames]
        stored = []
        for index in frames:
            chunk = self._table.get(index)
            if chunk is None:
                raise _unwritten(index)
            stored.append(chunk)
        low = min(chunk.byte_offset for chunk in stored)
        high = max(chunk.byte_offset + chunk.size for chunk in stored)
        if high - low > 2 * sum(chunk.size for chunk in stored):  # scattered: one read each
            return [RawChunk.of(chunk.filter_mask, os.pread(fd, chunk.size, chunk.byte_offset)) for chunk in stored]
        span = os.pread(fd, high - low, low)  # a truncated file gives less: each chunk's check then fails
        view, address = memoryview(span), RawChunk.of(0, span).address - low
        return [RawChunk(chunk.filter_mask, view[chunk.byte_offset - low : chunk.byte_offset - low + chunk.size],
                         address + chunk.byte_offset) for chunk in stored]

    def _h5py_chunk(self, index: int) -> RawChunk:
        try:
            return RawChunk.of(*self.dataset.id.read_direct_chunk((index, 0, 0)))
        except RuntimeError:  # "chunk address isn't defined"
            raise _unwritten(index) from None

    def _decode_frames(self, fd: int | None, frames: range, window: tuple[slice, slice], out: np.ndarray, first: int) -> None:
        """Each frame in `frames` into out[frame - first], read from the file open as `fd` (None: through h5py)."""
        whole = out.shape[1:] == self.dataset.shape[1:] and out.flags.c_contiguous
        target = out if whole else np.empty((1, *self.dataset.shape[1:]), self.dataset.dtype)
        frame_bytes, address = target[0].nbytes, target.ctypes.data
        for index, raw in zip(frames, self._raw_chunks(fd, frames)):
            slot = index - first if whole else 0
            try:
                self._decode_into(raw, target, slot, address + slot * frame_bytes, frame_bytes)
            except OSError as exc:
                raise OSError(f"frame {index}: {exc}") from None
            if not whole:
                out[index - first] = target[0][window]

    def _check(self, data: bytes | memoryview, frame_bytes: int) -> int:
        """The chunk's block size in elements, once its header and block lengths fit the chunk."""
        if len(data) < HEADER_BYTES:
            raise OSError(f"chunk of {len(data)} bytes is shorter than its header (corrupt chunk)")
        decoded, block_bytes = _HEADER.unpack_from(data)
        block = block_bytes // self._itemsize
        if decoded != frame_bytes:
            raise OSError(f"chunk header announces {decoded} bytes for a {frame_bytes}-byte frame (corrupt chunk)")
        if block <= 0 or block % 8:
            raise OSError(f"chunk header gives a block of {block} elements (corrupt chunk)")
        shuffled = self._elements - self._elements % 8
        position, end = HEADER_BYTES, len(data)
        for _ in range(-(-shuffled // block)):
            if position + BLOCK_LENGTH_BYTES > end:
                raise OSError("chunk ends inside its block list (corrupt chunk)")
            position += BLOCK_LENGTH_BYTES + _BLOCK_LENGTH.unpack_from(data, position)[0]
        if position + (self._elements - shuffled) * self._itemsize > end:
            raise OSError("a block runs past the end of its chunk (corrupt chunk)")
        return block

    def _decode_into(self, raw: RawChunk, frames: np.ndarray, slot: int, address: int, frame_bytes: int) -> None:
        """Decode one chunk into frames[slot], which starts at `address` (passed in: asking numpy costs a microsecond)."""
        if raw.filter_mask & 1:  # the filter was skipped for this chunk: stored as is
            if len(raw.data) != frame_bytes:
                raise OSError(f"unfiltered chunk of {len(raw.data)} bytes for a {frame_bytes}-byte frame (corrupt chunk)")
            frames[slot] = np.frombuffer(raw.data, self.dataset.dtype).reshape(frames.shape[1:])
            return
        block = self._check(raw.data, frame_bytes)
        # `raw.data` (and the span it may be part of) lives until the call returns.
        if self._decompress(raw.address + HEADER_BYTES, address, self._elements, self._itemsize, block) < 0:
            raise OSError("bitshuffle/LZ4 decoding failed: corrupt chunk")
