"""The trainable segmenter: scribbles in, every pixel classified out."""

from __future__ import annotations

import logging
import math
import time

import numpy as np
from sklearn.base import BaseEstimator
from tqdm.auto import tqdm

from . import _backend, autocontext
from ._validation import image_series, spatial_shape
from .features import FeatureParams, feature_set
from .guards import describe_images
from .model_io import json_value, save_model
from .predictor import NOT_FITTED, Predictor, TileFeatures
from .tile_cache import TileCache
from .training import FOREST_DEFAULTS, fit_forest, image_geometry

log = logging.getLogger("gpuseg")

PREDICTS_WITH = ("features", "channel_axis", "n_channels", "ndim", "classes", "auto_context")
FEATURE_ARGUMENTS = ("intensity", "edges", "texture", "sigma_min", "sigma_max", "num_sigma", "filters")
"""The keys of :meth:`Segmenter.model_meta` that decide what the model predicts (the Zarr fingerprint's)."""


class Segmenter(BaseEstimator):
    """Pixel classifier trained on scribbles: multiscale features + a random forest.

    Parameters
    ----------
    backend : {"auto", "cpu", "gpu"}
        ``"auto"`` uses the GPU (CuPy, cuCIM, cuML) when one is usable, else the CPU.
    preset : str, optional
        Features by name from :data:`gpuseg.features.PRESETS`; without it and without feature
        arguments, ``"compact"``'s (chosen on ``benchmarks/validation.py``'s images).
    intensity, edges, texture, sigma_min, sigma_max, num_sigma, filters, spacing
        Features, as in :func:`gpuseg.multiscale_features` (its defaults for those not given).
    auto_context : bool
        A second forest on the features and the first's smoothed class probabilities
        (:mod:`gpuseg.autocontext`): about twice the time of fit + predict on the validation set.
    channel_axis : int, optional
        Axis of the images holding channels; ``None`` for grayscale.
    n_estimators, max_depth, max_samples, max_features, min_samples_leaf, class_weight, random_state
        scikit-learn ``RandomForestClassifier`` parameters (mapped to cuML's
        on the GPU); together they are :attr:`forest_params`.
        Defaults: 50 trees of depth at most 10, each drawing one scribbled
        pixel per 256 pixels of the training images, at least 256 and at
        most 20,000 (``max_samples="auto"``, see
        :func:`gpuseg.training.auto_tree_samples`; all scribbled pixels when
        there are fewer; 20,000 after :meth:`fit_features` without its
        ``n_pixels``). Prediction cost
        grows with trees x depth and with the pixels; fitting cost with the
        pixels each tree draws, and neighbouring scribbled pixels are alike:
        draws in proportion to the image keep fitting a bounded share of the
        work at every size, however much is scribbled. On the validation set
        (``python -m benchmarks --scenario accuracy``) these draws segment as
        well as 20,000 per tree. Any other ``max_samples`` value follows
        scikit-learn.

    Attributes
    ----------
    forest_params : dict
        The seven forest parameters.
    classes_ : integer ndarray, shape (n_classes,)
        Label values seen in training, in increasing order: int64 (trained
        through :mod:`gpuseg.future`: the training labels' dtype, as in scikit-learn).
    n_features_in_ : int
        Length of the feature vector.
    n_channels_ : int
        Channels of the training images.
    ndim_ : int
        Spatial dimensions of the training images (2 or 3). With ``n_channels_``,
        unset after a ``fit_features`` whose features fit several geometries
        (see :meth:`fit_features`).
    forest_ : gpuseg.forest.Forest
        The trained trees (auto-context's first stage).
    context_forest_ : gpuseg.forest.Forest or None
        Auto-context's second stage.
    feature_names_ : list of str, (n_features_in_,)
        Name of each feature (see :meth:`gpuseg.FeatureParams.names`).
    feature_importances_ : float64 ndarray, (n_features_in_,)
        Mean decrease in impurity of each feature (summing to 1), in the order of
        ``feature_names_``; computed from ``forest_`` (a loaded model has it too),
        equal to scikit-learn's for the CPU backend's forest. Not for a forest
        without impurity data: a cuML-trained one, or one from an older model file.
    """

    def __init__(self, *, backend="auto", preset=None, intensity=None, edges=None, texture=None, sigma_min=None,
                 sigma_max=None, num_sigma=None, filters=None, spacing=None, auto_context=False, channel_axis=None,
                 n_estimators=50, max_depth=10, max_samples="auto", max_features="sqrt", min_samples_leaf=1,
                 class_weight=None, random_state=None, **unknown):
        if unknown:
            raise TypeError(
                f"Unknown forest parameter(s) {sorted(unknown)}; Segmenter accepts {sorted(FOREST_DEFAULTS)}."
            )
        self.backend = backend
        self.preset = preset
        self.intensity = intensity
        self.edges = edges
        self.texture = texture
        self.sigma_min = sigma_min
        self.sigma_max = sigma_max
        self.num_sigma = num_sigma
        self.filters = filters
        self.spacing = spacing
        self.auto_context = auto_context
        self.channel_axis = channel_axis
        self.feature_params  # noqa: B018 - refuses a bad preset or a preset with feature arguments now
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.max_samples = max_samples
        self.max_features = max_features
        self.min_samples_leaf = min_samples_leaf
        self.class_weight = class_weight
        self.random_state = random_state

    # -- parameters -------------------------------------------------------
    @property
    def feature_params(self) -> FeatureParams:
        """The features (see :func:`gpuseg.features.feature_set`)."""
        return feature_set(self.preset, self.spacing, **{k: getattr(self, k) for k in FEATURE_ARGUMENTS})

    @property
    def forest_params(self) -> dict:
        return {k: getattr(self, k) for k in FOREST_DEFAULTS}

    def _backend_module(self):
        """The backend primitives, resolved (and, for ``"auto"``, logged) once per segmenter and backend setting."""
        if getattr(self, "_resolved_backend", (None,))[0] != self.backend:
            self._resolved_backend = (self.backend, _backend.resolve_backend(self.backend))
        return _backend.backend_module(self._resolved_backend[1])

    def predictor(self) -> Predictor:
        """The tile executor of this fitted model on its backend (see :class:`gpuseg.predictor.Predictor`)."""
        return Predictor(self, self._backend_module())

    # -- training ---------------------------------------------------------
    def fit(self, image, labels, *, tile_shape=None):
        """Train on scribbles.

        Parameters
        ----------
        image : array or list of arrays
            One image (NumPy, CuPy, memory-mapped, Zarr or any array supporting
            slicing) of spatial shape ``S`` (2D or 3D) plus a channel axis if
            ``channel_axis`` is set; or a list of such images (a series), each
            read tile by tile so they never all sit in memory at once.
        labels : array or list of arrays
            Integer scribbles of shape ``S`` (one per image): 0 = unlabelled,
            1..K (any positive integers) = classes.
        tile_shape : tuple of int, optional
            Tile size for feature computation; default from free memory.
            Only tiles holding scribbles are computed.

        Returns
        -------
        self : Segmenter

        Raises
        ------
        ValueError
            Labels of another shape than the image, negative or non-integer
            labels, no labelled pixel, a single class, NaN/inf in the image, or
            images of a series that differ in channels or dimensionality.
        """
        return self._fit(image, labels, tile_shape)

    def _fit(self, image, labels, tile_shape, cache=None):
        """:meth:`fit`, keeping the whole feature matrices of labelled tiles in ``cache`` (a TileCache) while
        it has room."""
        images, label_list = image_series(image, labels)
        be = self._backend_module()
        rows = TileFeatures(self.feature_params, self.channel_axis, be, context=self.auto_context)
        Xs, ys, geometry = [], [], None
        t0 = time.perf_counter()
        for img, lab in zip(images, label_list):
            X, y, shape = rows.labelled_rows(img, lab, tile_shape, cache=cache)
            if geometry not in (None, shape):
                raise ValueError(
                    f"All training images must have the same dimensionality and channels; got "
                    f"{geometry[0]}D with {geometry[1]} channel(s) and {shape[0]}D with {shape[1]}."
                )
            geometry = shape
            Xs.append(X)
            ys.append(y)
        X = be.xp.concatenate(Xs)
        y = np.concatenate(ys)
        t1 = time.perf_counter()
        n_pixels = sum(math.prod(spatial_shape(img.shape, self.channel_axis)) for img in images)
        self.fit_features(X, y, ndim=geometry[0], n_channels=geometry[1], n_pixels=n_pixels)
        self.training_input_ = describe_images(images)
        if self.auto_context:
            self.context_forest_ = autocontext.fit_context(self, rows, images, label_list, X, y, tile_shape, n_pixels)
        log.info("gpuseg fit: %d labelled pixels, %d features in %.2f s, forest in %.2f s",
                 y.size, X.shape[1], t1 - t0, time.perf_counter() - t1)
        return self

    def fit_features(self, X, y, *, ndim=None, n_channels=None, n_pixels=None):
        """Train the forest on precomputed features of labelled pixels.

        Every fit starts afresh: a refit with features of another width
        replaces ``n_features_in_`` and the image geometry, as in scikit-learn.

        Parameters
        ----------
        X : float32 array of shape (n_samples, n_features)
            Features as :func:`gpuseg.multiscale_features` computes them, with
            this segmenter's feature parameters (NumPy or CuPy; rows on the
            device stay there).
        y : int array of shape (n_samples,)
            Classes (positive integers).
        ndim, n_channels : int, optional
            Spatial dimensions and channels of the images the features are
            of, so that the model can classify images and be saved. When not
            given they are inferred from ``n_features`` where exactly one
            geometry gives it (always for grayscale images with texture
            features); otherwise :meth:`predict`, :meth:`predict_proba` and
            :meth:`save` refuse, saying so, and the ``*_features`` methods work.
        n_pixels : int, optional
            Pixels of the images the rows were taken from, all together: with
            ``max_samples="auto"`` each tree then draws as :meth:`fit` on those
            images would (see :func:`gpuseg.training.auto_tree_samples`), so
            the forest is the same. Without it, up to 20,000 rows per tree.

        Returns
        -------
        self : Segmenter

        Raises
        ------
        ValueError
            ``X`` and ``y`` of different lengths, fewer than two classes,
            non-positive classes, or ``ndim``/``n_channels`` whose features
            are not ``n_features`` wide.
        """
        be = self._backend_module()
        X = be.xp.ascontiguousarray(be.asarray(X), dtype=np.float32)
        y = be.to_host(y)
        classes, forest = fit_forest(be, X, y, self.forest_params, n_pixels)
        geometry = image_geometry(self.feature_params, X.shape[1], self.channel_axis, ndim, n_channels)
        for name in ("ndim_", "n_channels_"):
            self.__dict__.pop(name, None)
        if geometry is not None:
            self.ndim_, self.n_channels_ = geometry
        self.n_features_in_ = X.shape[1]
        self.classes_ = classes
        self.forest_ = forest
        self.context_forest_ = None  # auto-context needs images: fit
        return self

    # -- prediction -------------------------------------------------------
    def _check_fitted(self):
        if not hasattr(self, "forest_"):
            raise RuntimeError(NOT_FITTED)

    def fit_predict(self, image, labels, *, tile_shape=None, progress=None):
        """Train on an image's scribbles and label every pixel of it, computing each tile's features once.

        The same as ``fit(image, labels).predict(image)``, label for label, but
        the tiles holding scribbles keep their features from training for the
        prediction, as long as they fit in a quarter of the tile memory budget
        (a NumPy or CuPy image; a model without auto-context), which saves
        their second computation. The tiles of larger images are computed
        again, as :meth:`predict` does, so memory stays bounded by the tile,
        but for the last scribbled one, whose features stay in the buffer
        that prediction then reuses.

        Parameters
        ----------
        image : array
            One image, as in :meth:`fit` (not a series).
        labels : integer array of shape ``S``
        tile_shape, progress
            As in :meth:`predict`; one tile shape serves both steps.

        Returns
        -------
        labels : integer array of shape ``S``
            As :meth:`predict` returns.

        Raises
        ------
        TypeError
            A list of images: train on a series with :meth:`fit`, then predict each.
        ValueError
            As :meth:`fit`.
        """
        if isinstance(image, (list, tuple)):
            raise TypeError("fit_predict takes one image; for a series, call fit(images, labels) and then "
                            "predict(image) for each image.")
        be = self._backend_module()
        if self.auto_context or _backend.is_dask_array(image) or not hasattr(image, "shape"):
            return self._fit(image, labels, tile_shape).predict(image, tile_shape=tile_shape, progress=progress)
        rows = TileFeatures(self.feature_params, self.channel_axis, be)
        spatial = spatial_shape(image.shape, self.channel_axis)
        n_channels = 1 if self.channel_axis is None else image.shape[self.channel_axis]
        if tile_shape is None:
            tile_shape = rows.default_tile_shape(spatial, self.feature_params.n_features(len(spatial), n_channels))
        cache = TileCache(be.memory_budget() / 4)
        self._fit(image, labels, tile_shape, cache)
        return self._predict(image, tile_shape, "labels", progress, cache)

    def _predict(self, image, tile_shape, kind: str, progress, cache=None):
        """Predict an image tile by tile into one output array: the host for a host input; tiles whose
        features ``cache`` (a TileCache) holds are classified from them."""
        if _backend.is_dask_array(image):
            from .lazy import predict_dask

            return predict_dask(self, image, kind=kind, tile_shape=tile_shape)
        predictor = self.predictor()
        plan = predictor.plan(image, tile_shape)
        xp = _backend.module_of(image)
        out = xp.empty(plan.spatial + (self.classes_.size,)) if kind == "proba" else \
            xp.empty(plan.spatial, self.label_dtype)
        show = progress if progress is not None else len(plan.tiles) > 4
        results = predictor.classify_tiles(image, plan.tiles, kind, cache)
        for tile, result in tqdm(results, total=len(plan.tiles), desc="gpuseg predict", unit="tile",
                                 disable=not show, leave=False):
            out[tile.write] = result
        return out

    def predict_proba(self, image, *, tile_shape=None, progress=None):
        """Probability of each class for every pixel.

        Parameters
        ----------
        image : array
            Spatial shape ``S`` like the training images (plus their channel
            axis); NumPy, CuPy, memory-mapped, Zarr, or Dask.
        tile_shape : tuple of int, optional
            Tile size without halo; default from free memory. The result does
            not depend on it.
        progress : bool, optional
            Show a progress bar (default: when there are more than 4 tiles).

        Returns
        -------
        proba : float32 array of shape ``S + (n_classes,)``
            Rows sum to 1; columns follow ``classes_``. CuPy for a CuPy input,
            a lazy Dask array for a Dask input, else NumPy (computed tile by
            tile on the device and copied back tile by tile).

        Warns
        -----
        UserWarning
            An ``(H, W, 3)`` or ``(H, W, 4)`` image with ``channel_axis=None``
            (taken as a volume; RGB needs ``channel_axis=-1``).
        """
        return self._predict(image, tile_shape, "proba", progress)

    def predict(self, image, *, tile_shape=None, progress=None):
        """Class label of every pixel: the class of highest mean probability.

        Parameters
        ----------
        image, tile_shape, progress
            As in :meth:`predict_proba`.

        Returns
        -------
        labels : integer array of shape ``S``
            Values from ``classes_``, dtype :attr:`label_dtype`.
            CuPy for a CuPy input, lazy Dask for a Dask input, else NumPy.
        """
        return self._predict(image, tile_shape, "labels", progress)

    @property
    def feature_names_(self) -> list:
        """See the class attributes; known for a model trained on images (``fit``) or loaded."""
        self._check_fitted()
        if not hasattr(self, "ndim_"):
            raise AttributeError("No feature names: this model was trained by fit_features "
                                 "on features of unknown geometry.")
        return self.feature_params.names(self.ndim_, self.n_channels_)

    @property
    def feature_importances_(self):
        """See the class attributes; raises AttributeError for a forest without impurity data."""
        self._check_fitted()
        return self.forest_.feature_importances()

    @property
    def label_dtype(self):
        """The smallest unsigned dtype that holds every class value."""
        return np.min_scalar_type(int(self.classes_.max()))

    def predict_proba_features(self, features):
        """Class probabilities from a precomputed feature stack.

        Parameters
        ----------
        features : float32 array of shape ``S + (n_features,)``
            As :func:`gpuseg.multiscale_features` returns it (any ``S``).

        Returns
        -------
        proba : float32 array of shape ``S + (n_classes,)``, same array type as the input.
        """
        self._check_fitted()
        return Predictor(self, _backend.module_of(features)).classify_features(features, "proba")

    def predict_features(self, features):
        """Class labels from a precomputed feature stack.

        Parameters
        ----------
        features : float32 array of shape ``S + (n_features,)``

        Returns
        -------
        labels : array of shape ``S`` and dtype :attr:`label_dtype`, same array type as the input.
        """
        self._check_fitted()
        return Predictor(self, _backend.module_of(features)).classify_features(features, "labels")

    def __getstate__(self):
        """Pickle (for Dask workers) without the resolved backend: each worker picks its own."""
        state = super().__getstate__()
        state.pop("_resolved_backend", None)
        return state

    # -- files --------------------------------------------------------------
    def model_meta(self) -> dict:
        """What a model file records besides the forest (JSON types): the one description of a fitted model.

        Returns
        -------
        meta : dict
            ``features`` (``FeatureParams.to_dict()``), ``channel_axis``,
            ``n_channels``, ``ndim``, ``classes``, ``auto_context`` (the keys of
            :data:`PREDICTS_WITH`), ``forest_params``, ``trained_on`` and
            ``training_input`` (dtype and range, see :mod:`gpuseg.guards`).

        Raises
        ------
        RuntimeError
            Unfitted, or fitted by ``fit_features`` without the image geometry.
        """
        self._check_fitted()
        if not hasattr(self, "ndim_"):
            raise RuntimeError("This model was trained by fit_features without the image geometry: pass ndim= and "
                               "n_channels= to fit_features (or train with fit) to save it or stream predictions.")
        return {
            "features": self.feature_params.to_dict(),
            "channel_axis": None if self.channel_axis is None else int(self.channel_axis),
            "n_channels": int(self.n_channels_),
            "ndim": int(self.ndim_),
            "classes": [int(c) for c in self.classes_],
            "auto_context": self.context_forest_ is not None,
            "forest_params": {k: json_value(v) for k, v in self.forest_params.items()},
            "trained_on": self._backend_module().name,
            "training_input": getattr(self, "training_input_", None),
        }

    @classmethod
    def from_model_meta(cls, meta: dict, forest, backend="auto", context=None) -> "Segmenter":
        """The fitted segmenter a :meth:`model_meta` and its forest (and auto-context's second) describe.

        Raises
        ------
        ValueError
            Metadata that is invalid or disagrees with the forest.
        """
        features = FeatureParams.from_dict(meta["features"])
        forest_params = {k: v for k, v in meta["forest_params"].items() if k in FOREST_DEFAULTS}
        if isinstance(forest_params.get("class_weight"), dict):
            forest_params["class_weight"] = {int(k): w for k, w in forest_params["class_weight"].items()}
        seg = cls(backend=backend, channel_axis=meta["channel_axis"], auto_context=context is not None,
                  **features.to_dict(), **forest_params)
        seg.classes_ = np.asarray(meta["classes"], dtype=np.int64)
        seg.n_channels_ = int(meta["n_channels"])
        seg.ndim_ = int(meta["ndim"])
        seg.n_features_in_ = features.n_features(seg.ndim_, seg.n_channels_)
        if seg.n_features_in_ != forest.n_features or seg.classes_.size != forest.n_classes or seg.ndim_ not in (2, 3):
            raise ValueError("it disagrees with the forest")
        autocontext.check_stages(forest, context, seg.n_features_in_)
        seg.forest_ = forest
        seg.context_forest_ = context
        if meta.get("training_input") is not None:
            seg.training_input_ = meta["training_input"]
        return seg

    def save(self, path):
        """Write the model to ``path`` (``.gpuseg`` appended if missing), atomically.

        Returns
        -------
        path : pathlib.Path
        """
        return save_model(path, self.model_meta(), self.forest_, self.context_forest_)
