"""The widget's long work as generators: napari's ``thread_worker`` runs them off the UI thread.

Each step yields, so the worker reports progress and can be cancelled between
steps (napari stops a generator worker at its next ``yield``). Training is
:meth:`gpuseg.Segmenter.fit`; prediction is the segmenter's own Dask path
(:meth:`~gpuseg.Segmenter.predict` / :meth:`~gpuseg.Segmenter.predict_proba` on
a Dask view of the image), computed block by block over the requested region:
the blocks equal whole-image prediction, and an image larger than memory is
read only where a block needs it.
"""

from __future__ import annotations

from dataclasses import dataclass

import dask.array as da
import numpy as np

from .. import Segmenter
from ..predictor import uncertainty
from .layers import ImageInput


@dataclass(frozen=True)
class Progress:
    """A step done: ``done`` of ``total``, and what is being done now."""

    done: int
    total: int
    message: str


@dataclass(frozen=True)
class Block:
    """Results for one block of the image.

    Attributes
    ----------
    where : tuple of slice
        The block in the image's spatial axes.
    labels : ndarray
        Classes of its pixels, shape of the block.
    proba : float32 ndarray or None
        Class probabilities, shape of the block + ``(n_classes,)`` (when asked for).
    uncertainty : float32 ndarray or None
        See :func:`gpuseg.predictor.uncertainty` (when probabilities were asked for).
    """

    where: tuple
    labels: np.ndarray
    proba: np.ndarray | None
    uncertainty: np.ndarray | None


def segment(image: ImageInput, *, segmenter: Segmenter, scribbles=None, region=None, proba=False,
            tile_shape=None):
    """Train (when scribbles are given), then classify ``region`` of the image block by block.

    Parameters
    ----------
    image : ImageInput
    segmenter : gpuseg.Segmenter
        Trained already when ``scribbles`` is None; else it is fitted here.
    scribbles : ndarray, optional
        Integer labels of the image's spatial shape (0 = unlabelled).
    region : tuple of slice, optional
        Part of the image's spatial axes to classify; default all of it.
    proba : bool
        Also compute probabilities and uncertainty.
    tile_shape : tuple of int, optional
        Block size; default from free memory (see :meth:`gpuseg.Segmenter.predict`).

    Yields
    ------
    Progress or Block

    Returns
    -------
    segmenter : gpuseg.Segmenter
        The trained segmenter (the worker's ``returned`` value).
    """
    steps = 0
    if scribbles is not None:
        yield Progress(0, 1, f"training on {int(np.count_nonzero(scribbles))} scribbled pixels")
        segmenter.fit(image.data, scribbles)
        steps = 1
    region = region or tuple(slice(0, n) for n in image.spatial_shape)
    data = image.data
    if not isinstance(data, da.Array):  # Zarr and other arrays keep their chunks: blocks read only what they need
        data = da.from_array(data, chunks=data.shape if isinstance(data, np.ndarray) else "auto")
    predict = segmenter.predict_proba if proba else segmenter.predict
    lazy = predict(data, tile_shape=tile_shape)[region]
    ndim = len(image.spatial_shape)
    starts = [np.concatenate([[r.start], r.start + np.cumsum(c)]) for r, c in zip(region, lazy.chunks[:ndim])]
    indices = list(np.ndindex(*lazy.numblocks[:ndim]))
    total = steps + len(indices)
    for n, index in enumerate(indices):
        yield Progress(steps + n, total, f"classifying block {n + 1} of {len(indices)}")
        where = tuple(slice(int(s[i]), int(s[i + 1])) for s, i in zip(starts, index))
        values = np.asarray(lazy.blocks[index].compute())
        if proba:
            labels = segmenter.classes_[values.argmax(axis=-1)].astype(segmenter.label_dtype)
            yield Block(where, labels, values, uncertainty(values))
        else:
            yield Block(where, values, None, None)
    yield Progress(total, total, "done")
    return segmenter
