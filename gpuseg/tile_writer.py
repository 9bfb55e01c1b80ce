"""Classified tiles into a prediction output: each chunk, then its done-marker.

:class:`TileWriter` is the one sink of :func:`gpuseg.stream.predict_to_zarr`,
in this process or on the workers of a Dask cluster (:mod:`gpuseg.cluster`).
A tile is one chunk of the output, or a :class:`gpuseg.tiling.Block` of
several classified at once. A chunk of a frame (along ``T``) has a marker, an
empty file ``.gpuseg-done/<frame index>.<chunk index>`` in level ``0``'s
directory (or key prefix, on an object store), written only after the chunk.
"""

from __future__ import annotations

import itertools
import os
import posixpath
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import zarr

from .axes import Frames
from .image_io import locate, open_image
from .ome_zarr import write_pyramid_part
from .tiling import Block

DONE_DIR = ".gpuseg-done"


class TileWriter:
    """Writes classified tiles of an image's frames into a prediction output: each tile's chunk, then its marker.

    Every caller classifies and writes through :meth:`write`, in this process
    or on a Dask worker. It pickles without the opened image and array; where
    it is unpickled, it opens them the first time it writes, and cuts the image
    into the same frames (:class:`gpuseg.axes.Frames`) from ``axes``.

    Parameters
    ----------
    source : str or array
        The image's path or URL (opened by :func:`open_image`), or the image.
    axes : str
        The image's axes (OME letters).
    ndim, channel_axis
        The model's spatial dimensions and channel axis.
    store : str
        Path or URL of the Zarr array the tiles go into (level ``0``; chunks are tiles).
    axes_out : str
        The array's axes (OME order): the frames' loop axes, ``C`` for the classes, the spatial axes.
    kind : {"labels", "proba"}
    tile_shape : tuple of int
    opened : Frames, optional
        The frames already opened from ``source`` in this process (not pickled).
    """

    def __init__(self, source, axes: str, ndim: int, channel_axis, store: str, axes_out: str, kind: str,
                 tile_shape: tuple, opened=None):
        self.source, self.axes, self.ndim, self.channel_axis = source, axes, ndim, channel_axis
        self.store, self.axes_out, self.kind, self.tile_shape = store, axes_out, kind, tuple(tile_shape)
        where = locate(store)
        self.fs, self.done = where.fs, f"{where.path}/{DONE_DIR}"
        self._frames, self._array = opened, None

    def __getstate__(self):
        return {**self.__dict__, "_frames": None, "_array": None}

    def marker(self, index: tuple, tile) -> str:
        """Marker file name of a tile of a frame: the frame's index and the tile's chunk index, e.g. ``"2.0.3"``."""
        return ".".join([str(i) for i in index] + [str(s.start // t) for s, t in zip(tile.write, self.tile_shape)])

    def done_markers(self) -> set:
        """Names of the markers written so far."""
        try:
            return {name.rsplit("/", 1)[-1] for name in self.fs.ls(self.done, detail=False)}
        except FileNotFoundError:  # object stores have no empty directories
            return set()

    def frames(self) -> Frames:
        """The image's frames, opened the first time."""
        if self._frames is None:
            image = open_image(self.source) if isinstance(self.source, (str, os.PathLike)) else self.source
            self._frames = Frames(image, self.axes, self.ndim, self.channel_axis)
        return self._frames

    def write(self, predictor, tiles, *, skip_done=False, pyramid=False):
        """Classify ``tiles`` with ``predictor`` and write each one's chunks, then their markers.

        Parameters
        ----------
        predictor : gpuseg.predictor.Predictor
        tiles : iterable of (index, Tile)
            A frame's index into the loop axes, and a tile of the output's grid
            (one whole chunk) or a :class:`gpuseg.tiling.Block` of several:
            writing a chunk again (a retried task) rewrites the same bytes. Tiles
            of a frame come together.
        skip_done : bool
            Leave out chunks whose marker exists (a task retried after its worker died).
        pyramid : bool
            Labels: also write each tile's part of the pyramid (levels ``1``,
            ``2``, ... beside level ``0``, see :func:`gpuseg.ome_zarr.write_pyramid_part`)
            before its chunks' markers, so that the levels need not be filled from level
            ``0`` afterwards. Only for one writer at a time writing every tile of
            a new output: a chunk of a level spans several tiles, and writing
            part of it reads it, changes it and writes it back.

        Yields
        ------
        (index, tile)
            Each chunk's tile, once its marker is written. A tile's chunks are
            written in a thread while the next tile is classified; a tile is
            written only once the one before it has been.
        """
        frames = self.frames()
        if self._array is None:
            self._array = zarr.open_array(self.store, mode="r+")
        levels = self._pyramid_levels() if pyramid else ()
        if skip_done:
            tiles = [(i, t) for i, t in (self._left_to_write(i, t) for i, t in tiles) if t is not None]
        with ThreadPoolExecutor(1, thread_name_prefix="gpuseg-write") as pool:  # one tile written while the next is classified
            pending = None
            for index, group in itertools.groupby(tiles, key=lambda pair: pair[0]):
                frame_tiles = (t for _, t in group)
                for tile, result in predictor.classify_tiles(frames.frame(index), frame_tiles, self.kind):
                    if pending is not None:  # the previous tile is written (or its error raised) first
                        yield from pending.result()
                    pending = pool.submit(self._write_tile, frames, index, tile, result, levels)
            if pending is not None:
                yield from pending.result()

    def _pyramid_levels(self) -> list:
        """Levels ``1, 2, ...`` of the output, the arrays beside level ``0``."""
        group = zarr.open_group(posixpath.dirname(self.store.rstrip("/")), mode="r+")
        return [group[str(k)] for k in itertools.takewhile(lambda k: str(k) in group, itertools.count(1))]

    def _write_tile(self, frames: Frames, index: tuple, tile, result, levels=()) -> list:
        """Write a classified tile's chunks and their part of ``levels``, then the chunks' markers; the
        ``(index, chunk)`` pairs written.

        A tile whose chunks fill it (a block of a new output) is written in one piece, level by level: a
        chunk of a level ``k >= 1`` spans the parts of several level-0 chunks, and each write of a part
        reads it, changes it and writes it back (64 such writes for the 16 chunks of a 4096x4096 output
        against 16 for its 4 blocks). Otherwise chunk by chunk, the others left unwritten.
        """
        chunks = _chunks(tile)
        whole = sum(np.prod(c.shape) for c in chunks) == np.prod(tile.shape)
        for region in (tile,) if whole else chunks:
            part = tuple(slice(c.start - w.start, c.stop - w.start) for c, w in zip(region.write, tile.write))
            where = self._index(frames, index, region.write)
            self._array[where] = np.moveaxis(result[part], -1, 0) if self.kind == "proba" else result[part]
            write_pyramid_part(levels, self.axes_out, where, result[part])
        for chunk in chunks:
            self.fs.touch(f"{self.done}/{self.marker(index, chunk)}")
        return [(index, chunk) for chunk in chunks]

    def _left_to_write(self, index: tuple, tile) -> tuple:
        """``(index, tile)`` less its chunks whose marker exists: the tile itself, a block of the rest, or ``None``."""
        chunks = _chunks(tile)
        left = tuple(c for c in chunks if not self.fs.exists(f"{self.done}/{self.marker(index, c)}"))
        if len(left) == len(chunks):
            return index, tile
        return index, (Block(tile.read, tile.crop, tile.write, left) if left else None)

    def _index(self, frames: Frames, index: tuple, write: tuple) -> tuple:
        """Where a tile of a frame goes: the frame's index on the loop axes, the tile on the spatial ones."""
        at = dict(zip(frames.loop, index))
        at.update(zip(frames.spatial, write))
        return tuple(at.get(a, slice(None)) for a in self.axes_out)


def _chunks(tile) -> tuple:
    """The chunks a tile writes: a block's, or the tile itself."""
    return tile.chunks if isinstance(tile, Block) else (tile,)
