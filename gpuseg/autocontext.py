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

from .features import FeatureParams
from .filters import gaussian_radius

CONTEXT_SIGMAS = (1.0, 4.0, 16.0)
"""Scales (in pixels of the finest axis) at which the first stage's probabilities are smoothed."""
N_FOLDS = 3
FOLD_BLOCK = 64
"""Edge, in pixels, of the blocks whose scribbles share a cross-fitting fold."""


def context_radius() -> int:
    """Pixels of first-stage probabilities the smoothing reads either side of a pixel."""
    return gaussian_radius(max(CONTEXT_SIGMAS))


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


def check_stages(first, second, n_features: int) -> None:
    """Refuse a second stage (or ``None``) that does not read ``n_features`` features and the first's context.

    Raises
    ------
    ValueError
    """
    if second is not None and (second.n_classes != first.n_classes
                               or second.n_features != n_features + n_context(first.n_classes)):
        raise ValueError("its two forests disagree")


def label_folds(labels, rows_per_read: int = 256) -> np.ndarray:
    """Fold of every labelled pixel of ``labels`` (non-zero), in C order, read a slab of rows at a time."""
    parts = []
    for start in range(0, labels.shape[0], rows_per_read):
        coords = np.nonzero(np.asarray(labels[start:start + rows_per_read]))
        parts.append(folds((coords[0] + start,) + coords[1:]))
    return np.concatenate(parts) if parts else np.empty(0, np.int64)


def fit_context(model, rows, images: list, labels: list, X, y: np.ndarray, tile_shape=None, n_pixels=None):
    """Train the second stage of a model whose first (``model.forest_``) is trained on ``X, y``.

    Parameters
    ----------
    model : gpuseg.Segmenter
        Fitted on ``X, y`` (``classes_``, ``forest_``, ``forest_params``, ``feature_params``).
    rows : gpuseg.predictor.TileFeatures
        Its tile features, with the context's halo.
    images, labels : lists of arrays
        The training images and scribbles, in the order of ``X``'s rows.
    X : float32 array of the backend, (n_labelled, n_features); y : int ndarray (n_labelled,)
        The labelled rows (classes as label values), in the images' C order.
    tile_shape : tuple of int, optional
    n_pixels : int, optional
        Pixels of ``images`` in all (``max_samples="auto"``'s draws, as the first stage's).

    Returns
    -------
    forest : gpuseg.forest.Forest
        Reading the ``n_features`` features, then :func:`n_context` context features.
    """
    from .training import fit_forest

    be = rows.be
    classes = model.classes_
    fold = np.concatenate([label_folds(lab) for lab in labels])
    firsts = []
    fewer = dict(model.forest_params, n_estimators=max(1, int(model.forest_params["n_estimators"]) // N_FOLDS))
    for plan in fold_training(np.searchsorted(classes, y), fold):
        if plan is None:
            firsts.append(_stage(model.forest_, np.arange(classes.size), classes.size, be))
            continue
        keep = be.asarray(np.flatnonzero(plan[0]))
        fold_classes, forest = fit_forest(be, be.ascontiguous(X[keep]), y[plan[0]], fewer, n_pixels)
        firsts.append(_stage(forest, np.searchsorted(classes, fold_classes), classes.size, be))

    def context_rows(block, tile, points):
        where = tuple(p + w.start for p, w in zip(points, tile.write))
        return labelled_context(block, tile.crop, points, folds(where), rows.feature_matrix, firsts, classes.size,
                                model.feature_params, be)

    parts = [rows.labelled_rows(img, lab, tile_shape, rows_of=context_rows)[0] for img, lab in zip(images, labels)]
    X2 = be.xp.concatenate([X] + parts, axis=1)
    return fit_forest(be, be.ascontiguous(X2), y, model.forest_params, n_pixels)[1]


def _stage(forest, columns: np.ndarray, n_classes: int, be):
    """``X -> proba (n, n_classes)`` of a forest whose classes are ``columns`` of the model's (others get 0)."""
    arrays = forest.arrays(be)
    columns = be.asarray(columns)

    def proba(X):
        p = be.forest_predict_proba(arrays, X)
        out = be.xp.zeros((p.shape[0], n_classes), np.float32)
        out[:, columns] = p
        return out
    return proba


def two_stage_proba(block, crop: tuple, matrix, first, second, n_classes: int, params: FeatureParams, be):
    """Second-stage class probabilities ``(n_pixels, n_classes)`` of the region ``crop`` of a prepared block.

    Parameters
    ----------
    block : float32 array of shape ``B + (n_channels,)``
        Holds the features' halo plus :func:`context_radius` around ``crop``
        (except at the image's edges).
    crop : tuple of slice
    matrix : callable ``(block, region, shape) -> X``
        The feature-major matrix ``(n_features, prod(shape))`` of a region of the block.
    first, second : callable ``X -> proba``
        The two stages' forests on feature-major matrices.
    n_classes : int
    params : FeatureParams
    be : module
    """
    outer, inner = grown(crop, block.shape[:-1], context_radius())
    oshape = tuple(s.stop - s.start for s in outer)
    cshape = tuple(s.stop - s.start for s in crop)
    X1 = matrix(block, outer, oshape)
    n1 = X1.shape[0]
    proba = first(X1).reshape(oshape + (n_classes,))
    X2 = be.empty((n1 + n_context(n_classes), int(np.prod(cshape))))
    X2[:n1].reshape((n1,) + cshape)[...] = X1.reshape((n1,) + oshape)[(slice(None),) + inner]
    for i, c in enumerate(context_features(proba, params, be)):
        X2[n1 + i].reshape(cshape)[...] = c[inner]
    return second(X2)


def labelled_context(block, crop: tuple, points: tuple, fold: np.ndarray, matrix, firsts: list, n_classes: int,
                     params: FeatureParams, be):
    """Cross-fitted context features of some labelled pixels of a tile: ``(n_context, n_points)`` of the backend.

    Parameters
    ----------
    block, crop, matrix, n_classes, params, be
        As in :func:`two_stage_proba`; ``crop`` is the tile in the block.
    points : tuple of int arrays
        The labelled pixels, relative to ``crop``.
    fold : int array
        Their folds.
    firsts : list of callable ``X -> proba`` (``(n, n_classes)``), one per fold
        The first stage trained without that fold.
    """
    outer, inner = grown(crop, block.shape[:-1], context_radius())
    oshape = tuple(s.stop - s.start for s in outer)
    X1 = matrix(block, outer, oshape)
    out = be.empty((n_context(n_classes), fold.size))
    for f in np.unique(fold):
        mine = np.flatnonzero(fold == f)
        at = tuple(be.asarray(p[mine] + i.start) for p, i in zip(points, inner))
        proba = firsts[f](X1).reshape(oshape + (n_classes,))
        for i, c in enumerate(context_features(proba, params, be)):
            out[i, be.asarray(mine)] = c[at]
    return out
