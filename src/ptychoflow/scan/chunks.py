"""Decode bitshuffle/LZ4 detector frames (the Eiger's compression) with every chunk checked first.

HDF5's own bitshuffle filter (hdf5plugin) trusts each chunk's header: a chunk that announces
more bytes than the frame holds, or a block longer than the chunk, crashes the process
(measured: a segmentation fault, not an error). A watcher or a flow function must not die on
one bad file, so this reader walks each chunk's header and block lengths, and only then lets
bitshuffle's C function (``bshuf_decompress_lz4``, the one the filter calls) decode it into the
frame. It runs on one thread: reading raw chunks holds h5py's lock, and a thread pool measured
slower than one thread on 2 cores (docs/benchmarks.md).

Only the plain case takes this path: one frame per chunk and bitshuffle (HDF5 filter 32008)
with LZ4 as the only filter. Anything else returns None and the caller reads through HDF5.
"""

from __future__ import annotations

import ctypes
from functools import lru_cache
from typing import Callable

import h5py
import numpy as np

BITSHUFFLE_FILTER = 32008
BITSHUFFLE_LZ4 = 2  # cd_values[4]
HEADER_BYTES = 12  # uint64 BE decoded bytes, uint32 BE block size in bytes
BLOCK_LENGTH_BYTES = 4  # each block: uint32 BE compressed length, then the LZ4 data


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


class ChunkDecoder:
    """Decodes frames of a dataset stored one frame per bitshuffle/LZ4 chunk."""

    def __init__(self, dataset: h5py.Dataset, decompress: Callable[..., int]) -> None:
        self.dataset = dataset
        self._decompress = decompress
        self._elements = int(np.prod(dataset.shape[1:]))
        self._itemsize = dataset.dtype.itemsize
        self._frame = np.empty(dataset.shape[1:], dataset.dtype)  # for cropped reads

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

    def _check(self, data: bytes, frame_bytes: int) -> int:
        """The chunk's block size in elements, once its header and block lengths fit the chunk."""
        if len(data) < HEADER_BYTES:
            raise OSError(f"chunk of {len(data)} bytes is shorter than its header (corrupt chunk)")
        decoded = int.from_bytes(data[:8], "big")
        block = int.from_bytes(data[8:12], "big") // self._itemsize
        if decoded != frame_bytes:
            raise OSError(f"chunk header announces {decoded} bytes for a {frame_bytes}-byte frame (corrupt chunk)")
        if block <= 0 or block % 8:
            raise OSError(f"chunk header gives a block of {block} elements (corrupt chunk)")
        shuffled = self._elements - self._elements % 8
        position = HEADER_BYTES
        for _ in range(-(-shuffled // block)):
            if position + BLOCK_LENGTH_BYTES > len(data):
                raise OSError("chunk ends inside its block list (corrupt chunk)")
            position += BLOCK_LENGTH_BYTES + int.from_bytes(data[position : position + BLOCK_LENGTH_BYTES], "big")
        if position + (self._elements - shuffled) * self._itemsize > len(data):
            raise OSError("a block runs past the end of its chunk (corrupt chunk)")
        return block

    def _decode_into(self, raw: tuple[int, bytes], frame: np.ndarray) -> None:
        mask, data = raw
        if mask & 1:  # the filter was skipped for this chunk: stored as is
            if len(data) != frame.nbytes:
                raise OSError(f"unfiltered chunk of {len(data)} bytes for a {frame.nbytes}-byte frame (corrupt chunk)")
            frame[...] = np.frombuffer(data, self.dataset.dtype).reshape(frame.shape)
            return
        block = self._check(data, frame.nbytes)
        payload = ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value + HEADER_BYTES  # no copy; `data` lives on
        if self._decompress(payload, frame.ctypes.data, self._elements, self._itemsize, block) < 0:
            raise OSError("bitshuffle/LZ4 decoding failed: corrupt chunk")

    def read(self, start: int, stop: int, window: tuple[slice, slice], out: np.ndarray) -> None:
        """Frames start..stop-1, cropped to `window`, into `out` (a (stop-start, h, w) array)."""
        whole = out.shape[1:] == self.dataset.shape[1:] and out.flags.c_contiguous
        for k in range(stop - start):
            raw = self.dataset.id.read_direct_chunk((start + k, 0, 0))
            if whole:
                self._decode_into(raw, out[k])  # straight into the result
            else:
                self._decode_into(raw, self._frame)
                out[k] = self._frame[window]
