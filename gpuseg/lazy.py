"""Lazy prediction of Dask arrays, block by block with a halo.

The image is rechunked into tiles (the channel axis in one chunk), each block
is read with ``halo`` pixels of its neighbours (none beyond the image's true
edges, where the filters apply their own border rules exactly as on the whole
image), its core is classified by the segmenter's
:class:`~gpuseg.predictor.Predictor` as one tile, and the
blocks of cores form the result: equal to :meth:`Segmenter.predict` on the
whole image.
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
from dask.array.overlap import ensure_minimum_chunksize, overlap

from . import _backend
from .tiling import Tile


def predict_dask(segmenter, image, *, kind, tile_shape=None):
    """Lazy class labels or probabilities of a Dask array.

    Runs with any Dask scheduler: threads, processes, or ``dask.distributed``
    (the segmenter's :class:`~gpuseg.predictor.Predictor` is one key of the
    graph, sent to each worker once). With dask-cuda's ``LocalCUDACluster``
    each worker computes on its own GPU through the segmenter's backend;
    nothing else is needed.

    Parameters
    ----------
    segmenter : gpuseg.Segmenter
        Trained.
    image : dask.array.Array
        Spatial shape ``S`` (plus the channel axis of the training images).
    kind : {"labels", "proba"}
        Labels or probabilities.
    tile_shape : tuple of int, optional
        Spatial chunk size of the computation (without halo); default from the
        memory budget of the segmenter's backend. Chunks are enlarged where one
        would be smaller than the halo. The result does not depend on it.

    Returns
    -------
    result : dask.array.Array
        Labels of shape ``S`` and dtype ``segmenter.label_dtype``, or float32
        probabilities of shape ``S + (n_classes,)``; chunked like the tiles.
    """
    predictor = segmenter.predictor()
    spatial, tile_shape, _ = predictor.plan(image, tile_shape)
    halo = predictor.halo
    channel = None if segmenter.channel_axis is None else segmenter.channel_axis % image.ndim
    spatial_axes = [i for i in range(image.ndim) if i != channel]
    chunks = list(image.shape)
    for axis, size, t in zip(spatial_axes, spatial, tile_shape):
        chunks[axis] = _axis_chunks(size, t, halo)
    image = image.rechunk(tuple(chunks))
    depth = {i: (halo if i in spatial_axes and len(image.chunks[i]) > 1 else 0) for i in range(image.ndim)}
    padded = overlap(image, depth=depth, boundary="none")
    out_chunks = tuple(image.chunks[i] for i in spatial_axes)
    proba = kind == "proba"
    n_classes = len(segmenter.classes_)
    dtype = np.float32 if proba else segmenter.label_dtype
    kwargs = {"chunks": out_chunks + ((n_classes,),), "new_axis": len(spatial)} if proba else {"chunks": out_chunks}
    task = dask.delayed(predictor, pure=False)  # one key: sent to each worker once, not with every block
    return da.map_blocks(
        _predict_block, padded, task, kind=kind, halo=halo, spatial_axes=spatial_axes,
        dtype=dtype, drop_axis=[] if channel is None else [channel],
        meta=_backend.like_input(np.empty((0,) * (len(spatial) + proba), dtype), image._meta), **kwargs,
    )


def _axis_chunks(size: int, tile: int, halo: int) -> tuple:
    """Chunks of ``tile`` along an axis of ``size`` (``iter_tiles``'s grid), merged where one is under ``halo``.

    A neighbour can only lend a block as many pixels of context as it holds.
    """
    chunks = (tile,) * (size // tile) + ((size % tile,) if size % tile else ())
    if min(chunks) >= halo:
        return chunks
    return ensure_minimum_chunksize(halo, chunks) if size >= halo else (size,)


def _predict_block(block, predictor, *, kind, halo, spatial_axes, block_info=None):
    """Labels or probabilities of the core of one overlapped block (its halo is cropped).

    ``block`` is the block plus ``halo`` pixels of each neighbour; blocks at the
    image's edge have no halo on that side. It is one tile, read whole.
    """
    info = block_info[0]
    read, crop = [], []
    for axis in spatial_axes:
        index, count = info["chunk-location"][axis], info["num-chunks"][axis]
        lo = 0 if index == 0 else halo
        hi = block.shape[axis] - (0 if index == count - 1 else halo)
        read.append(slice(0, block.shape[axis]))
        crop.append(slice(lo, hi))
    tile = Tile(tuple(read), tuple(crop), tuple(crop))
    ((_, result),) = predictor.classify_tiles(block, [tile], kind)
    return result
