"""Tile reads of a chunked array (Zarr) that decode each chunk once, not once per tile whose halo reaches it.

Zarr decodes a whole chunk for any part of it that is read. A tile is read with
its halo, which reaches into the chunks of the tiles around it: the 1024x4096
blocks of a 4096x4096 image of 1024x1024 chunks, with scikit-image's 66-pixel
halo, decode 40 chunks where the image has 16. :class:`ChunkReuse` keeps the
chunks the last read decoded and decodes only those it lacks, so that tiles
read one after the other in C order decode each chunk about once.
"""

from __future__ import annotations

import itertools
import operator
import threading

import numpy as np

from .axes import AxesView

HOLD_RATIO = 4
"""A read keeps its chunks when they hold at most this many times the bytes of the largest region read so far
(else it reads straight through)."""


def chunk_shape(array):
    """The regular chunk shape of ``array`` (a Zarr or h5py array), or ``None`` (NumPy, Dask, unchunked)."""
    chunks = getattr(array, "chunks", None)
    if isinstance(array, np.ndarray) or not isinstance(chunks, tuple) or len(chunks) != len(array.shape):
        return None
    return chunks if all(isinstance(c, int) and c > 0 for c in chunks) else None


class ChunkReuse:
    """A read-only view of a chunked array that keeps the decoded chunks of its last read for the next.

    Parameters
    ----------
    array : array with regular ``chunks`` (see :func:`chunk_shape`)

    Notes
    -----
    Indexed with integers and slices of step 1, it returns a NumPy array equal
    to ``array[key]``: each chunk the region touches is taken from those the
    last read kept, or read from ``array`` whole, and its part copied in. Those
    chunks are then kept, unless they hold more than :data:`HOLD_RATIO` times the
    bytes of the largest region read so far (regions much smaller than their
    chunks): that read goes to ``array`` directly, and nothing is kept. Other keys go to ``array`` too.
    Reads from several threads take turns.
    """

    def __init__(self, array):
        self.array = array
        self.shape = tuple(int(n) for n in array.shape)
        self.ndim = len(self.shape)
        self.dtype = np.dtype(array.dtype)
        self.chunks = chunk_shape(array)
        if self.chunks is None:
            raise TypeError(f"ChunkReuse needs an array with regular chunks, got {type(array).__name__}.")
        self._held = {}
        self._largest = 0  # bytes of the largest region read
        self._lock = threading.Lock()

    def _bounds(self, key):
        """``(start, stop)`` per axis and the axes an integer drops, or ``None`` for a key read straight through."""
        if len(key) > self.ndim:
            return None
        bounds, dropped = [], []
        for d, (k, n) in enumerate(zip(key + (slice(None),) * (self.ndim - len(key)), self.shape)):
            if isinstance(k, slice):
                if k.step not in (None, 1):
                    return None
                start, stop, _ = k.indices(n)
                bounds.append((start, max(start, stop)))
                continue
            try:
                i = operator.index(k)
            except TypeError:
                return None
            i += n if i < 0 else 0
            if not 0 <= i < n:
                return None  # the array raises its own IndexError
            bounds.append((i, i + 1))
            dropped.append(d)
        return bounds, dropped

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        parsed = self._bounds(key)
        if parsed is None:
            return np.asarray(self.array[key])
        bounds, dropped = parsed
        grid = [range(a // c, -(-b // c)) for (a, b), c in zip(bounds, self.chunks)]
        needed = list(itertools.product(*grid))
        shape = [b - a for a, b in bounds]
        chunk_bytes = int(np.prod(self.chunks)) * self.dtype.itemsize
        with self._lock:
            self._largest = max(self._largest, int(np.prod(shape)) * self.dtype.itemsize)
            if len(needed) * chunk_bytes > HOLD_RATIO * self._largest:
                self._held = {}
                return np.asarray(self.array[key])
            out = np.empty(shape, self.dtype)
            kept = {g: self._held[g] for g in needed if g in self._held}
            self._held = {}  # the chunks this read does not touch are freed before it decodes others
            for g in needed:
                box = tuple(slice(i * c, min(n, (i + 1) * c)) for i, c, n in zip(g, self.chunks, self.shape))
                if g not in kept:
                    kept[g] = np.asarray(self.array[box])
                chunk = kept[g]
                inter = [(max(a, s.start), min(b, s.stop)) for (a, b), s in zip(bounds, box)]
                out[tuple(slice(lo - a, hi - a) for (lo, hi), (a, _) in zip(inter, bounds))] = \
                    chunk[tuple(slice(lo - s.start, hi - s.start) for (lo, hi), s in zip(inter, box))]
            self._held = kept
        return out[tuple(0 if d in dropped else slice(None) for d in range(self.ndim))]


def reuse_chunks(image):
    """``image`` reading its chunked array through a :class:`ChunkReuse`: the array itself, or the array under an
    :class:`gpuseg.axes.AxesView`; any other ``image`` as it is."""
    if isinstance(image, AxesView):
        return image.over(ChunkReuse(image.array)) if chunk_shape(image.array) is not None else image
    return ChunkReuse(image) if chunk_shape(image) is not None else image
