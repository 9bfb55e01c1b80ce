"""Auto-context (ilastik's two-stage workflow), backend-neutral.

A second forest classifies every pixel from its features plus the first
forest's class probabilities smoothed at :data:`CONTEXT_SIGMAS` (what the
neighbourhood looks like to the first stage). The second forest must learn
from first-stage probabilities like those it will see on new pixels, so for
the training pixels they come from cross-fitting: the scribbles are split into
:data:`N_FOLDS` folds by position (blocks of :data:`FOLD_BLOCK` pixels, so
that a stroke's pixels mostly fall in one fold, whatever the tiles), and the
probabilities near a pixel of fold ``f`` come from a first-stage forest
trained without fold ``f``. Prediction uses the first-stage forest trained on
every scribble.

A tile stays exact: the first stage's probabilities are computed on the crop
grown by :func:`context_radius` (their pixels have the features' halo around
them), smoothed, and cropped; a tile's halo is the features' plus that radius.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from .features import FeatureParams, _radius

CONTEXT_SIGMAS = (1.0, 4.0, 16.0)
"""Scales (in pixels of the finest axis) at which the first stage's probabilities are smoothed."""
N_FOLDS = 3
FOLD_BLOCK = 64
"""Edge, in pixels, of the blocks whose scribbles share a cross-fitting fold."""


def context_radius() -> int:
    """Pixels of first-stage probabilities the smoothing reads either side of a pixel."""
    return _radius(max(CONTEXT_SIGMAS))


def n_context(n_classes: int) -> int:
    """Context features per pixel: one per class and scale."""
    return n_classes * len(CONTEXT_SIGMAS)


def context_features(proba, params: FeatureParams, be) -> Iterator:
    """The smoothed class probabilities: for each class, for each of :data:`CONTEXT_SIGMAS`.

    Parameters
    ----------
    proba : float32 array of shape ``S + (n_classes,)``, of the backend
    params : FeatureParams
        Its ``spacing`` makes the smoothing isotropic in space, as for the features.
    be : module
        The backend primitives.

    Yields
    ------
    smoothed : float32 array of shape ``S``, ``n_context(n_classes)`` of them
    """
    ndim = proba.ndim - 1
    for k in range(proba.shape[-1]):
        p = be.ascontiguous(proba[..., k])
        for sigma in CONTEXT_SIGMAS:
            yield be.gaussian(p, params.axis_sigmas(sigma, ndim))


def folds(coords: tuple) -> np.ndarray:
    """Cross-fitting fold (``0 .. N_FOLDS - 1``) of pixels at image positions ``coords`` (one int array per axis).

    Blocks of :data:`FOLD_BLOCK` pixels take folds in diagonal stripes, so two
    blocks sharing a face never share a fold.
    """
    return (sum(np.asarray(c) // FOLD_BLOCK for c in coords) % N_FOLDS).astype(np.int64)


def grown(crop: tuple, block_shape: tuple, margin: int) -> tuple:
    """The crop grown by ``margin`` within the block, and the crop's place in it.

    Returns
    -------
    outer : tuple of slice
        Region of the block: ``crop`` plus ``margin`` pixels each side, clipped.
    inner : tuple of slice
        ``crop`` relative to ``outer``.
    """
    outer = tuple(slice(max(0, c.start - margin), min(n, c.stop + margin)) for c, n in zip(crop, block_shape))
    inner = tuple(slice(c.start - o.start, c.stop - o.start) for c, o in zip(crop, outer))
    return outer, inner


def fold_training(y: np.ndarray, fold: np.ndarray) -> list:
    """For each fold: the rows to train its first-stage forest on and the classes (indices) they hold.

    Parameters
    ----------
    y : int array (n,)
        Class indices ``0 .. K-1`` of the labelled rows.
    fold : int array (n,)
        Their folds (:func:`folds`).

    Returns
    -------
    list of (rows, classes) or None, one per fold
        ``rows`` a bool mask of the rows outside the fold; ``classes`` the
        sorted class indices among them; ``None`` for a fold without rows,
        or whose complement holds fewer than two classes (its pixels then get
        the full first-stage forest's probabilities).
    """
    out = []
    for f in range(N_FOLDS):
        rows = fold != f
        classes = np.unique(y[rows])
        out.append((rows, classes) if (~rows).any() and classes.size >= 2 else None)
    return out
