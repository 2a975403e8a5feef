"""Decode bitshuffle/LZ4 detector frames (the Eiger's compression) on every core.

HDF5 runs filters under h5py's global lock, so an Eiger file decodes on one core however
many there are. Here each thread of a pool reads raw chunks through HDF5 (cheap: no decoding)
and decodes them straight into the frame array with the bitshuffle library hdf5plugin ships
(its public C API, ``bshuf_decompress_lz4``, the function the HDF5 filter itself calls).
ctypes releases the GIL for that call, so decoding runs on every core.

Only the plain case takes this path: one frame per chunk and bitshuffle (HDF5 filter 32008)
with LZ4 as the only filter. Anything else returns None and the caller reads through HDF5.
"""

from __future__ import annotations

import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import h5py
import numpy as np

BITSHUFFLE_FILTER = 32008
BITSHUFFLE_LZ4 = 2  # cd_values[4]
HEADER_BYTES = 12  # uint64 BE decoded bytes, uint32 BE block size in bytes
MAX_THREADS = 4


@lru_cache(maxsize=1)
def _bitshuffle() -> object | None:
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


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def pool() -> ThreadPoolExecutor:
    """One decoding pool per process, started on first use (threads are not free to start)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(threads(), thread_name_prefix="ptychoflow-decode")
        return _POOL


def threads() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_THREADS))


class ChunkDecoder:
    """Decodes frames of a dataset stored one frame per bitshuffle/LZ4 chunk."""

    def __init__(self, dataset: h5py.Dataset, decompress: object) -> None:
        self.dataset = dataset
        self.workers = threads()
        self._decompress = decompress
        self._elements = int(np.prod(dataset.shape[1:]))
        self._itemsize = dataset.dtype.itemsize
        self._local = threading.local()

    @classmethod
    def for_dataset(cls, dataset: h5py.Dataset) -> "ChunkDecoder | None":
        if dataset.ndim != 3 or dataset.chunks != (1, *dataset.shape[1:]) or threads() < 2:
            return None
        plist = dataset.id.get_create_plist()
        if plist.get_nfilters() != 1:
            return None
        code, _flags, cd_values, _name = plist.get_filter(0)
        if code != BITSHUFFLE_FILTER or len(cd_values) < 5 or cd_values[4] != BITSHUFFLE_LZ4:
            return None
        decompress = _bitshuffle()
        return None if decompress is None else cls(dataset, decompress)

    def _decode_into(self, raw: tuple[int, bytes], frame: np.ndarray) -> None:
        mask, data = raw
        if mask & 1:  # the filter was skipped for this chunk: stored as is
            frame[...] = np.frombuffer(data, self.dataset.dtype).reshape(frame.shape)
            return
        decoded = int.from_bytes(data[:8], "big")
        block = int.from_bytes(data[8:12], "big") // self._itemsize
        if decoded != frame.nbytes:
            raise OSError(f"chunk header announces {decoded} bytes for a {frame.nbytes}-byte frame (corrupt chunk?)")
        payload = ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value + HEADER_BYTES  # no copy; `data` lives on
        used = self._decompress(payload, frame.ctypes.data, self._elements, self._itemsize, block)
        if used < 0 or used + HEADER_BYTES > len(data):
            raise OSError(f"bitshuffle/LZ4 decoding failed (code {used}): corrupt chunk")

    def _decode_one(self, raw: tuple[int, bytes], window: tuple[slice, slice], target: np.ndarray) -> None:
        if target.shape == self.dataset.shape[1:] and target.flags.c_contiguous:
            self._decode_into(raw, target)  # no crop: straight into the result
            return
        scratch = getattr(self._local, "frame", None)
        if scratch is None:
            scratch = self._local.frame = np.empty(self.dataset.shape[1:], self.dataset.dtype)
        self._decode_into(raw, scratch)
        target[...] = scratch[window]

    def read(self, start: int, stop: int, window: tuple[slice, slice], out: np.ndarray) -> None:
        """Frames start..stop-1, cropped to `window`, into `out` (a (stop-start, h, w) array)."""
        def decode_range(indices: range) -> None:
            for k in indices:  # reading holds h5py's lock, decoding does not: threads overlap the two
                self._decode_one(self.dataset.id.read_direct_chunk((start + k, 0, 0)), window, out[k])

        n, parts = stop - start, self.workers
        list(pool().map(decode_range, [range(n * p // parts, n * (p + 1) // parts) for p in range(parts)]))
