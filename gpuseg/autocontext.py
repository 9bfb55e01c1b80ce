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

from . import _backend
from .features import FeatureParams, gaussian_radius

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


def label_folds(labels, rows_per_read: int = 256) -> np.ndarray:
    """Fold of every labelled pixel of ``labels`` (non-zero), in C order, read a slab of rows at a time."""
    parts = []
    for start in range(0, labels.shape[0], rows_per_read):
        coords = np.nonzero(np.asarray(labels[start:start + rows_per_read]))
        parts.append(folds((coords[0] + start,) + coords[1:]))
    return np.concatenate(parts) if parts else np.empty(0, np.int64)


def fit_fold_forests(X, y: np.ndarray, fold: np.ndarray, forest_params: dict, n_classes: int, be) -> list:
    """The first-stage forest of each fold, trained without it: ``(forest, classes)`` or ``None`` (see :func:`fold_training`).

    Each has ``1 / N_FOLDS`` of the trees (at least one), so the three together
    cost one forest pass over the scribbled tiles; like an out-of-bag estimate,
    a pixel's probabilities come from about a third of a forest's trees.
    """
    out = []
    for plan in fold_training(y, fold):
        if plan is None:
            out.append(None)
            continue
        rows, classes = plan
        params = dict(forest_params, n_estimators=max(1, int(forest_params.get("n_estimators", 100)) // N_FOLDS))
        if isinstance(params.get("class_weight"), dict):  # keyed by class index: re-index to the fold's classes
            params["class_weight"] = {j: params["class_weight"].get(int(c), 1.0) for j, c in enumerate(classes)}
        keep = np.flatnonzero(rows)
        out.append((be.forest_fit(X[keep], np.searchsorted(classes, y[rows]), params, len(classes)), classes))
    return out


def fold_stages(fold_forests: list, full, n_classes: int, be) -> list:
    """One callable ``X -> proba (n, n_classes)`` per fold: its forest (classes it lacks get 0), else ``full``.

    Parameters
    ----------
    fold_forests : list
        From :func:`fit_fold_forests`.
    full : callable
        The first stage trained on every scribble.
    """
    def stage(forest, classes):
        arrays = forest.arrays(be.name)
        columns = _backend.to_backend(classes, be.name)

        def proba(X):
            p = be.forest_predict_proba(arrays, X)
            out = be.xp.zeros((p.shape[0], n_classes), np.float32)
            out[:, columns] = p
            return out
        return proba

    return [full if f is None else stage(*f) for f in fold_forests]


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
                     params: FeatureParams, be) -> np.ndarray:
    """Cross-fitted context features of some labelled pixels of a tile: ``(n_points, n_context)`` on the host.

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
    at = tuple(_backend.to_backend(p + i.start, be.name) for p, i in zip(points, inner))
    out = np.empty((fold.size, n_context(n_classes)), np.float32)
    for f in np.unique(fold):
        proba = firsts[f](X1).reshape(oshape + (n_classes,))
        mine = fold == f
        for i, c in enumerate(context_features(proba, params, be)):
            out[mine, i] = _backend.to_host(c[at])[mine]
    return out
