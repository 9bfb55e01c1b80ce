"""Training on feature rows: the forest, and the image geometry the rows are of."""

from __future__ import annotations

import numpy as np

from ._validation import check_classes
from .features import FeatureParams

TREE_SAMPLES = 20_000
"""Most bootstrap draws per tree with ``max_samples="auto"``."""
PIXELS_PER_DRAW = 256
"""With ``max_samples="auto"``, a tree draws one scribbled pixel per this many pixels of the
training images (at least :data:`MIN_TREE_SAMPLES`, at most :data:`TREE_SAMPLES`): fitting then
costs about as much, relative to predicting the images, at every size. 256 rather than 128 halves
the draws below 2560x2560 pixels for the same accuracy (validation set's mean mIoU over three seeds
0.805 against 0.802, every case above the recipe; the benchmark's textures at 1024x1024 75.3 %
either way) and made 1024x1024 end to end 1.3x faster on the 2-core EPYC (one-off timing)."""
MIN_TREE_SAMPLES = 256
"""Fewest bootstrap draws per tree with ``max_samples="auto"`` (all scribbled pixels below it)."""


def auto_tree_samples(n_pixels: int | None) -> int:
    """Bootstrap draws per tree of ``max_samples="auto"`` for training images of ``n_pixels`` in all
    (``None``: unknown, as for ``fit_features``: :data:`TREE_SAMPLES`)."""
    if n_pixels is None:
        return TREE_SAMPLES
    return int(min(TREE_SAMPLES, max(MIN_TREE_SAMPLES, n_pixels // PIXELS_PER_DRAW)))

FOREST_DEFAULTS = {
    "n_estimators": 50,
    "max_depth": 10,
    "max_samples": "auto",
    "max_features": "sqrt",
    "min_samples_leaf": 1,
    "class_weight": None,
    "random_state": None,
}


def fit_forest(be, X, y: np.ndarray, forest_params: dict, n_pixels: int | None = None) -> tuple:
    """Train a forest of backend ``be`` on feature rows.

    Parameters
    ----------
    be : module
        The backend primitives; ``X`` is handed to its ``forest_fit`` as it is.
    X : float32 array of the backend, C-contiguous, shape (n_samples, n_features)
    y : int ndarray of shape (n_samples,)
        Classes: positive integers, at least two of them.
    forest_params : dict
        scikit-learn names; ``max_samples="auto"`` draws at most
        :func:`auto_tree_samples` rows per tree, and ``class_weight`` is keyed by class value.
    n_pixels : int, optional
        Pixels of the images the rows come from, all together (for ``"auto"``).

    Returns
    -------
    classes : int64 ndarray of shape (n_classes,)
    forest : gpuseg.forest.Forest

    Raises
    ------
    ValueError
        ``X`` and ``y`` of different lengths, fewer than two classes, or non-positive classes.
    """
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"X must be (n_samples, n_features) and y (n_samples,); got {X.shape} and {y.shape}.")
    classes = np.unique(y)
    check_classes(classes)
    if np.any(classes <= 0):
        raise ValueError("Classes must be positive integers (0 means unlabelled).")
    params = dict(forest_params)
    if params["max_samples"] == "auto":
        params["max_samples"] = min(1.0, auto_tree_samples(n_pixels) / y.size)
    if isinstance(params["class_weight"], dict):  # keyed by label value; the forest sees class indices
        weights = {int(k): w for k, w in params["class_weight"].items()}
        params["class_weight"] = {i: weights.get(int(c), 1.0) for i, c in enumerate(classes)}
    return classes.astype(np.int64), be.forest_fit(X, np.searchsorted(classes, y), params, len(classes))


def image_geometry(params: FeatureParams, n_features: int, channel_axis, ndim=None, n_channels=None) -> tuple | None:
    """``(ndim, n_channels)`` of the images whose features are ``n_features`` wide.

    Parameters
    ----------
    params : FeatureParams
    n_features : int
    channel_axis : int or None
        ``None``: grayscale images, one channel.
    ndim, n_channels : int, optional
        The geometry, when known: then only checked.

    Returns
    -------
    geometry : tuple of int, or None
        ``None`` when none or several geometries give ``n_features`` (features
        of other parameters, or of another function).

    Raises
    ------
    ValueError
        The given geometry does not give ``n_features``.
    """
    if ndim is not None or n_channels is not None:
        ndim, n_channels = int(ndim or 0), int(1 if n_channels is None else n_channels)
        if ndim not in (2, 3) or params.n_features(ndim, n_channels) != n_features:
            raise ValueError(
                f"X has {n_features} features; {ndim}D images with {n_channels} channel(s) give "
                f"{params.n_features(ndim, n_channels) if ndim in (2, 3) else 'none'} with these feature parameters."
            )
        return ndim, n_channels
    per_channel = {d: params.n_features(d) for d in (2, 3)}
    fits = [(d, n_features // per_channel[d]) for d in (2, 3) if n_features % per_channel[d] == 0
            and (channel_axis is not None or n_features == per_channel[d])]
    return fits[0] if len(fits) == 1 else None
