"""Lazy prediction of Dask arrays, block by block with a halo.

The image is rechunked into tiles (the channel axis in one chunk), each block
is read with ``halo`` pixels of its neighbours (none beyond the image's true
edges, where the filters apply their own border rules exactly as on the whole
image), its core is classified by the segmenter's in-memory path, and the
blocks of cores form the result: equal to :meth:`Segmenter.predict` on the
whole image.
"""

from __future__ import annotations

import logging

import dask
import dask.array as da
import numpy as np
from dask.array.overlap import ensure_minimum_chunksize, overlap

from . import _backend
from ._validation import prepare_image
from .tiling import default_tile_shape, memory_budget

log = logging.getLogger("gpuseg")


def predict_dask(segmenter, image, *, proba, tile_shape=None):
    """Lazy class labels or probabilities of a Dask array.

    Runs with any Dask scheduler: threads, processes, or ``dask.distributed``
    (the segmenter is one key of the graph, sent to each worker once). With dask-cuda's
    ``LocalCUDACluster`` each worker computes on its own GPU through the
    segmenter's backend; nothing else is needed.

    Parameters
    ----------
    segmenter : gpuseg.Segmenter
        Trained.
    image : dask.array.Array
        Spatial shape ``S`` (plus the channel axis of the training images).
    proba : bool
        Return probabilities instead of labels.
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
    segmenter._check_fitted()
    spatial = segmenter._check_image(image)
    halo = segmenter._halo()
    if tile_shape is None:
        tile_shape = default_tile_shape(spatial, segmenter.n_features_in_, halo,
                                        memory_budget(segmenter._backend_name()))
    if len(tile_shape) != len(spatial) or any(int(t) < 1 for t in tile_shape):
        raise ValueError(f"tile_shape {tuple(tile_shape)} must hold one positive size per spatial axis of {spatial}.")
    channel = None if segmenter.channel_axis is None else segmenter.channel_axis % image.ndim
    spatial_axes = [i for i in range(image.ndim) if i != channel]
    chunks = list(image.shape)
    for axis, size, t in zip(spatial_axes, spatial, tile_shape):
        chunks[axis] = _axis_chunks(size, int(t), halo)
    image = image.rechunk(tuple(chunks))
    depth = {i: (halo if i in spatial_axes and len(image.chunks[i]) > 1 else 0) for i in range(image.ndim)}
    padded = overlap(image, depth=depth, boundary="none")
    out_chunks = tuple(image.chunks[i] for i in spatial_axes)
    n_classes = len(segmenter.classes_)
    dtype = np.float32 if proba else segmenter.label_dtype
    kwargs = {"chunks": out_chunks + ((n_classes,),), "new_axis": len(spatial)} if proba else {"chunks": out_chunks}
    model = dask.delayed(segmenter, pure=False)  # one key: sent to each worker once, not with every block
    return da.map_blocks(
        _predict_block, padded, model, proba=proba, halo=halo, spatial_axes=spatial_axes,
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


def _predict_block(block, segmenter, *, proba, halo, spatial_axes, block_info=None):
    """Labels or probabilities of the core of one overlapped block (its halo is cropped).

    ``block`` is the block plus ``halo`` pixels of each neighbour; blocks at the
    image's edge have no halo on that side.
    """
    info = block_info[0]
    crop = []
    for axis in spatial_axes:
        index, count = info["chunk-location"][axis], info["num-chunks"][axis]
        lo = 0 if index == 0 else halo
        hi = block.shape[axis] - (0 if index == count - 1 else halo)
        crop.append(slice(lo, hi))
    name = segmenter._backend_name()
    be = _backend.backend_module(name)
    prepared = prepare_image(_backend.to_backend(block, name), segmenter.channel_axis, be)
    return _backend.like_input(segmenter._predict_crop(prepared, tuple(crop), proba, be, name), block)
