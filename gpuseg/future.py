"""scikit-image's trainable segmentation API (``skimage.future``), on gpuseg.

``from gpuseg.future import fit_segmenter, predict_segmenter, TrainableSegmenter``
replaces ``from skimage.future import ...``; the signatures, return values and
errors are scikit-image 0.26's. Any scikit-learn-compatible classifier is
trained as given, on the CPU. A :class:`gpuseg.Segmenter` as ``clf`` (the
default) is gpuseg's forest, on the GPU where there is one; with gpuseg's own
features (``features_func=None``, :func:`gpuseg.multiscale_basic_features` or
a ``functools.partial`` of it) :class:`TrainableSegmenter` computes
them tile by tile, never for the whole image at once.
"""

from __future__ import annotations

import functools
import inspect

import numpy as np
from sklearn.exceptions import NotFittedError

from . import _backend
from ._validation import check_labels
from .features import FeatureParams, multiscale_basic_features
from .segmenter import Segmenter

__all__ = ["TrainableSegmenter", "fit_segmenter", "predict_segmenter"]

_NOT_FITTED = "You must train the classifier `clf` first, for example with the `fit_segmenter` function."
_FEATURES_HINT = "Maybe you did not use the same type of features for training the classifier."


def fit_segmenter(labels, features, clf):
    """Train a classifier on the labelled pixels of a feature stack.

    Parameters
    ----------
    labels : integer ndarray of shape ``S``
        0 = unlabelled; labels >= 1 are the classes to learn.
    features : ndarray or cupy.ndarray of shape ``S + (n_features,)``
        E.g. from :func:`gpuseg.multiscale_basic_features`.
    clf : classifier
        A :class:`gpuseg.Segmenter`, or any object with scikit-learn's ``fit``
        and ``predict`` (trained on the CPU, on NumPy arrays).

    Returns
    -------
    clf : classifier
        ``clf`` itself, trained. A Segmenter's ``classes_`` take the labels' dtype.

    Raises
    ------
    ValueError
        ``labels.shape`` is not ``features.shape[:-1]``; for a Segmenter also
        fewer than two classes, or labels that are not whole numbers.
    """
    labels = _backend.module_of(labels).to_host(labels)
    if labels.shape != tuple(features.shape[:-1]):
        raise ValueError(f"labels have shape {labels.shape}; features of shape {tuple(features.shape)} "
                         f"need labels of shape {tuple(features.shape[:-1])}.")
    mask = labels > 0
    xp = _backend.module_of(features)
    X = features[xp.asarray(mask)]  # on the device for CuPy features: a Segmenter trains from there
    y = labels[mask]
    if isinstance(clf, Segmenter):
        clf.fit_features(X, check_labels(y, y.shape), n_pixels=mask.size)  # from scratch, as every fit
        _keep_label_dtype(clf, labels.dtype)
    else:
        clf.fit(xp.to_host(X), y)
    return clf


def predict_segmenter(features, clf):
    """Label every pixel of a feature stack with a trained classifier.

    Parameters
    ----------
    features : ndarray or cupy.ndarray of shape ``S + (n_features,)``
        The same kind of features the classifier was trained on; ``S`` may be
        an image shape or ``(n_pixels,)``.
    clf : classifier
        Trained, e.g. by :func:`fit_segmenter`.

    Returns
    -------
    labels : ndarray of shape ``S``
        Values and dtype of the classifier's ``classes_`` (the training labels').
        A Segmenter given CuPy features returns CuPy.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        The classifier is not trained.
    ValueError
        Features of another length than the classifier was trained on.
    """
    shape = tuple(features.shape)
    try:
        if isinstance(clf, Segmenter):
            if not hasattr(clf, "forest_"):
                raise NotFittedError(_NOT_FITTED)
            proba = clf.predict_proba_features(features)
            return _backend.module_of(proba).asarray(clf.classes_)[proba.argmax(axis=-1)]
        return clf.predict(_backend.module_of(features).to_host(features).reshape(-1, shape[-1])).reshape(shape[:-1])
    except NotFittedError:
        raise NotFittedError(_NOT_FITTED) from None
    except ValueError as err:
        if getattr(clf, "n_features_in_", shape[-1]) != shape[-1]:
            raise ValueError(f"{err}\n{_FEATURES_HINT}") from err
        raise


class TrainableSegmenter:
    """Pixel classifier trained on a partially labelled image: features + a classifier.

    Parameters
    ----------
    clf : classifier, optional
        A :class:`gpuseg.Segmenter` (default ``Segmenter(preset="skimage")``:
        scikit-image's features, 50 trees of depth at most 10; scikit-image's default is a scikit-learn forest of 100 full
        trees), or any object with scikit-learn's ``fit`` and ``predict``.
    features_func : callable, optional
        ``features_func(image)`` returns features of shape ``S + (n_features,)``
        for an image of spatial shape ``S``. Default: gpuseg's features with the
        Segmenter's parameters (:func:`gpuseg.multiscale_basic_features` with
        its defaults for another classifier).

    Attributes
    ----------
    clf : classifier
        The classifier, trained in place by :meth:`fit`; a Segmenter can be
        saved (``segmenter.clf.save(path)``).
    features : ndarray
        Features of the last image given to :meth:`compute_features` (and to
        :meth:`fit` unless the features are tiled).

    Notes
    -----
    With a Segmenter and gpuseg's own features (``features_func=None``,
    :func:`gpuseg.multiscale_basic_features` or a ``functools.partial`` of it,
    whose parameters but ``backend`` and ``workers`` then become the
    Segmenter's), :meth:`fit` computes features only on tiles that hold labels
    and :meth:`predict` classifies tile by tile: the result equals whole-image
    prediction, in bounded memory. Any other pairing computes
    ``features_func(image)`` for the whole image, as scikit-image does.
    """

    def __init__(self, clf=None, features_func=None):
        self.clf = Segmenter(preset="skimage") if clf is None else clf
        self.features_func = features_func

    def compute_features(self, image):
        """Compute ``self.features``, the features of ``image`` the classifier sees."""
        self.features = self._features_func()(image)

    def fit(self, image, labels):
        """Train the classifier on a partially labelled image.

        Parameters
        ----------
        image : ndarray
            Grayscale or multichannel image, as ``features_func`` accepts it.
        labels : integer ndarray of the image's spatial shape
            0 = unlabelled, labels >= 1 the classes.

        Returns
        -------
        self : TrainableSegmenter
        """
        if self._prepare_tiled():
            self.clf.fit(image, labels)
            _keep_label_dtype(self.clf, labels.dtype)
        else:
            self.compute_features(image)
            fit_segmenter(labels, self.features, self.clf)
        return self

    def predict(self, image):
        """Segment an image with the trained classifier.

        Parameters
        ----------
        image : ndarray
            Like the training image (dimensions and channels).

        Returns
        -------
        labels : ndarray of the image's spatial shape
            In the dtype of the training labels.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            Before :meth:`fit`.
        ValueError
            An image of other dimensions or channels than the training image.
        """
        if not self._prepare_tiled():
            return predict_segmenter(self._features_func()(image), self.clf)
        if not hasattr(self.clf, "forest_"):
            raise NotFittedError(_NOT_FITTED)
        return self.clf.predict(image).astype(self.clf.classes_.dtype, copy=False)

    def _prepare_tiled(self) -> bool:
        """Whether the Segmenter computes the features tile by tile; gives it a partial's parameters first."""
        if not isinstance(self.clf, Segmenter):
            return False
        if self.features_func is None:
            return True
        params = _gpuseg_feature_arguments(self.features_func)
        if params is None:
            return False
        self.clf.preset = None  # the features function's parameters are the features
        for name, value in params.items():
            setattr(self.clf, name, value)
        return True

    def _features_func(self):
        if self.features_func is not None:
            return self.features_func
        if isinstance(self.clf, Segmenter):
            return functools.partial(multiscale_basic_features, **self.clf.feature_params.to_dict(),
                                     channel_axis=self.clf.channel_axis, backend=self.clf.backend)
        return multiscale_basic_features


def _gpuseg_feature_arguments(func) -> dict | None:
    """Feature parameters and ``channel_axis`` of gpuseg's features function or a partial of it, else ``None``.

    ``workers`` and ``backend`` are left out: the Segmenter's backend computes the features.
    """
    args, keywords = (), {}
    if isinstance(func, functools.partial):
        func, args, keywords = func.func, func.args, func.keywords
    if func is not multiscale_basic_features:
        return None
    bound = inspect.signature(multiscale_basic_features).bind_partial(*args, **keywords)
    if "image" in bound.arguments:
        return None
    bound.apply_defaults()
    fields = FeatureParams.__dataclass_fields__
    return {k: v for k, v in bound.arguments.items() if k in fields or k == "channel_axis"}


def _keep_label_dtype(segmenter: Segmenter, dtype) -> None:
    """Give ``classes_`` the training labels' dtype, as scikit-learn's classifiers do."""
    segmenter.classes_ = segmenter.classes_.astype(dtype)
