"""Tiles with halos: where to read, what to crop, where to write.

Features of a pixel depend on pixels up to ``halo`` away, so each tile is read
with that much context (clipped at the image's edges, where the filters' own
border rules apply exactly as on the whole image) and the context is cropped
after the features are computed. The result equals the whole-image one.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Bytes a pixel of a tile costs while its features are computed and classified:
# the float32 feature stack plus the Gaussian, the two derivative passes and the
# Hessian elements alive at once (about 3 + ndim(ndim+1)/2 float32 images).
SCRATCH_IMAGES = 10


@dataclass(frozen=True)
class Tile:
    """One tile of an image.

    Attributes
    ----------
    read : tuple of slice
        Spatial region of the image to read: the tile plus its halo, clipped to the image.
    crop : tuple of slice
        The tile within the read block.
    write : tuple of slice
        The tile in the image (and in the output).
    """

    read: tuple
    crop: tuple
    write: tuple

    @property
    def shape(self) -> tuple:
        return tuple(s.stop - s.start for s in self.write)


class TileGrid(Sequence):
    """The tiles of an image, made one at a time when asked for: any number of them costs nothing up front.

    A sequence of :class:`Tile` in C order of their positions (``len``,
    iteration and indexing), see :func:`iter_tiles`; ``count`` is its length
    also past ``sys.maxsize`` tiles, where ``len()`` cannot go.
    """

    def __init__(self, shape: tuple, tile_shape: tuple, halo: int):
        self.shape = tuple(int(s) for s in shape)
        self.tile_shape = tuple(int(t) for t in tile_shape)
        self.halo = int(halo)
        self.counts = tuple(-(-s // t) for s, t in zip(self.shape, self.tile_shape))
        self.count = math.prod(self.counts)

    def __len__(self) -> int:
        return self.count  # Python's len() stops at sys.maxsize tiles; ``count`` does not

    def __getitem__(self, index: int) -> Tile:
        if not -self.count <= index < self.count:
            raise IndexError(f"tile {index} of {self.count}")
        index, position = index % self.count, []
        for count in reversed(self.counts):  # Python integers: no overflow however many tiles
            index, i = divmod(index, count)
            position.insert(0, i)
        return self.at(position)

    def __iter__(self):
        return (self[i] for i in range(self.count))

    def at(self, position) -> Tile:
        """The tile at a grid position (one index per axis)."""
        return self.region(tuple(slice(i * t, min(size, (i + 1) * t))
                                 for i, size, t in zip(position, self.shape, self.tile_shape)))

    def region(self, write: tuple) -> Tile:
        """The tile that writes ``write`` (slices of the image), read with the grid's halo."""
        read = tuple(slice(max(0, w.start - self.halo), min(size, w.stop + self.halo))
                     for w, size in zip(write, self.shape))
        crop = tuple(slice(w.start - r.start, w.stop - r.start) for w, r in zip(write, read))
        return Tile(read, crop, tuple(write))


@dataclass(frozen=True)
class Block(Tile):
    """A tile made of whole tiles of a grid (its chunks): classified at once, written chunk by chunk.

    Attributes
    ----------
    chunks : tuple of Tile
        The grid's tiles to write, each within ``write`` (the region classified,
        their bounding box); a chunk of the box that is not among them is
        classified and left unwritten.
    """

    chunks: tuple = ()


def blocks(grid: TileGrid, per_block: tuple, keep=None):
    """Group the tiles of ``grid`` into blocks of ``per_block`` tiles along each axis, made one at a time.

    Fewer, larger tiles read less halo around the same pixels: a block's
    features are computed once for all its chunks, and the result is the same.

    Parameters
    ----------
    grid : TileGrid
        The chunks (tiles of an output's chunk grid).
    per_block : tuple of int
        Chunks per block along each axis.
    keep : callable ``(Tile) -> bool``, optional
        The chunks to write (default all); a block holding none is left out,
        and one holding some covers their bounding box only.

    Yields
    ------
    block : Block
        In C order of the blocks' positions; its chunks in C order too.
    """
    per_block = check_tile_shape(per_block, len(grid.shape))
    for corner in itertools.product(*(range(0, n, k) for n, k in zip(grid.counts, per_block))):
        inside = itertools.product(*(range(c, min(n, c + k)) for c, n, k in zip(corner, grid.counts, per_block)))
        chunks = tuple(t for t in map(grid.at, inside) if keep is None or keep(t))
        if chunks:
            box = tuple(slice(min(w.start for w in ws), max(w.stop for w in ws))
                        for ws in zip(*(c.write for c in chunks)))
            tile = grid.region(box)
            yield Block(tile.read, tile.crop, tile.write, chunks)


def chunks_per_block(counts: tuple, chunk_shape: tuple, tile_shape: tuple) -> tuple:
    """Chunks per block along each axis: blocks as large as ``tile_shape`` allows (at least one chunk), balanced.

    Parameters
    ----------
    counts : tuple of int
        Chunks along each axis.
    chunk_shape : tuple of int
    tile_shape : tuple of int
        The largest tile to compute at once (e.g. :func:`default_tile_shape`'s).

    Returns
    -------
    per_block : tuple of int
        As many blocks along each axis as the largest would need, with the
        chunks shared out as evenly as possible among them.
    """
    most = (max(1, t // c) for c, t in zip(chunk_shape, tile_shape))
    n_blocks = [-(-n // k) for n, k in zip(counts, most)]
    return tuple(-(-n // b) for n, b in zip(counts, n_blocks))


def iter_tiles(shape: tuple, tile_shape: tuple, halo: int) -> TileGrid:
    """Cut ``shape`` into tiles of at most ``tile_shape`` with a ``halo`` of context.

    Parameters
    ----------
    shape : tuple of int
        Spatial shape of the image.
    tile_shape : tuple of int
        Largest tile (without halo); same length as ``shape``.
    halo : int
        Context in pixels on each side.

    Returns
    -------
    tiles : TileGrid
        A lazy sequence of :class:`Tile`, in C order of their positions.
    """
    check_tile_shape(tile_shape, len(shape))
    return TileGrid(shape, tile_shape, halo)


def check_tile_shape(tile_shape, ndim: int) -> tuple:
    """``tile_shape`` as a tuple of int, after checking it holds ``ndim`` integers >= 1.

    Raises
    ------
    ValueError
        ``--tile 0``, or 3 sizes for a 2D image, say.
    """
    tile_shape = tuple(tile_shape)
    if len(tile_shape) != ndim:
        raise ValueError(f"The tile shape {tile_shape} must have one size per spatial axis of the {ndim}D images; "
                         f"give {ndim} sizes, or one for all axes.")
    try:
        whole = all(int(t) == t >= 1 for t in tile_shape)
    except (TypeError, ValueError, OverflowError):
        whole = False
    if not whole:
        raise ValueError(f"Tile sizes must be integers >= 1, got {tile_shape}.")
    return tuple(int(t) for t in tile_shape)


def default_tile_shape(shape: tuple, n_features: int, halo: int, budget_bytes: float) -> tuple:
    """Largest balanced tile whose read block's features fit in ``budget_bytes``.

    Parameters
    ----------
    shape : tuple of int
        Spatial shape of the image.
    n_features : int
        Length of the feature vector of a pixel.
    halo : int
        Context in pixels on each side.
    budget_bytes : float
        Memory the tile's feature computation may use.

    Returns
    -------
    tile_shape : tuple of int
        Tiles of near-equal size along each axis; the whole image when it fits.
    """
    per_pixel = 4 * (n_features + SCRATCH_IMAGES)
    max_pixels = max(1.0, budget_bytes / per_pixel)
    ndim = len(shape)
    # Largest edge e whose read block, prod(min(size, e + 2 halo)), fits, by bisection. The block is
    # clipped to the image: where the halo spans the image, one tile reads it all and more tiles
    # would only compute the same features again.
    lo, hi = 1, max(shape)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if math.prod(min(s, mid + 2 * halo) for s in shape) <= max_pixels:
            lo = mid
        else:
            hi = mid - 1
    edge = lo
    counts = [math.ceil(s / min(s, edge)) for s in shape]
    return tuple(math.ceil(s / c) for s, c in zip(shape, counts)) if ndim else ()


def channel_index(spatial_slices: tuple, ndim: int, channel_axis: int | None) -> tuple:
    """Index of an image with a channel axis, from slices of its spatial axes."""
    if channel_axis is None:
        return tuple(spatial_slices)
    axis = channel_axis % ndim
    index = list(spatial_slices)
    index.insert(axis, slice(None))
    return tuple(index)


def labelled_points(labels_block: np.ndarray) -> tuple:
    """Coordinates of the labelled (> 0) pixels of a block, as ``np.nonzero`` gives them."""
    return np.nonzero(labels_block > 0)
