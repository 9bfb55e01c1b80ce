"""The trainable segmenter: scribbles in, every pixel classified out."""

from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np
from tqdm.auto import tqdm

from . import _backend, autocontext
from ._validation import check_classes, check_dtype, check_labels, prepare_image, spatial_shape
from .features import DEFAULT_PRESET, PRESETS, FeatureParams, iter_features
from .model_io import read_model, save_model
from .tiling import channel_index, default_tile_shape, iter_tiles, labelled_points, memory_budget

log = logging.getLogger("gpuseg")

TREE_SAMPLES = 20_000
"""Bootstrap draws per tree with ``max_samples="auto"``: all scribbled pixels up to this many."""

FOREST_DEFAULTS = {
    "n_estimators": 50,
    "max_depth": 10,
    "max_samples": "auto",
    "max_features": "sqrt",
    "min_samples_leaf": 1,
    "class_weight": None,
    "random_state": None,
}


_FEATURE_ARGS = ("intensity", "edges", "texture", "sigma_min", "sigma_max", "num_sigma", "filters")


class Segmenter:
    """Pixel classifier trained on scribbles: multiscale features + a random forest.

    Parameters
    ----------
    backend : {"auto", "cpu", "gpu"}
        ``"auto"`` uses the GPU (CuPy, cuCIM, cuML) when one is usable, else the CPU.
    preset : str, optional
        A feature set by name from :data:`gpuseg.features.PRESETS`
        (``"compact"``, ``"skimage"``, ``"ilastik"``). Without a preset and
        without feature arguments the features are ``"compact"``'s (ilastik's
        six filters at sigmas 0.7, 1.6, 3.5, 10), chosen on the validation set.
    intensity, edges, texture, sigma_min, sigma_max, num_sigma, filters
        Features, as in :func:`gpuseg.multiscale_features` (with its defaults
        for those not given: scikit-image's features); not with ``preset``.
    spacing : tuple of float, optional
        Physical pixel size per spatial axis (see :class:`gpuseg.features.FeatureParams`),
        with any feature set; recorded in the model file.
    auto_context : bool
        Train a second forest on the features plus the first forest's class
        probabilities smoothed around each pixel (ilastik's auto-context; see
        :mod:`gpuseg.autocontext`), the training pixels' probabilities
        cross-fitted. Costs a second forest pass per pixel, and in ``fit``
        three first-stage forests over the scribbled tiles.
    **forest_params
        scikit-learn ``RandomForestClassifier`` parameters: ``n_estimators``,
        ``max_depth``, ``max_samples``, ``max_features``, ``min_samples_leaf``,
        ``class_weight``, ``random_state`` (mapped to cuML's on the GPU).
        Defaults: 50 trees of depth at most 10, each drawn from at most
        20,000 scribbled pixels (``max_samples="auto"``: a full bootstrap
        sample below that, ``20000 / n_labelled`` above it). Prediction cost
        grows with trees x depth and dominates on large images; 50 depth-10
        trees segment scribbled images as well as deeper, larger forests in
        scikit-image's and ilastik's experience. Fitting cost grows with the
        pixels each tree draws, and neighbouring scribbled pixels are alike:
        capping the draws keeps fitting time bounded however much is
        scribbled. On the benchmark images (``benchmarks/results/cpu-2core/``)
        these defaults label 0.1 to 0.8 points more pixels correctly than 50
        depth-10 trees drawing 5 % of the scribbles, and fit in 0.4 to 5 s
        from 512x512 to 4096x4096 (2 cores). Any other ``max_samples``
        value follows scikit-learn.

    Attributes
    ----------
    classes_ : ndarray of int64, shape (n_classes,)
        Label values seen in training, in increasing order.
    n_features_in_ : int
        Length of the feature vector.
    n_channels_ : int
        Channels of the training images.
    ndim_ : int
        Spatial dimensions of the training images (2 or 3).
    forest_ : gpuseg.forest.Forest
        The trained trees (the first stage with ``auto_context``).
    context_forest_ : gpuseg.forest.Forest or None
        The second stage (``auto_context``), reading ``n_features_in_`` features
        then :func:`gpuseg.autocontext.n_context` context features.
    """

    def __init__(self, *, backend="auto", preset=None, intensity=None, edges=None, texture=None, sigma_min=None,
                 sigma_max=None, num_sigma=None, filters=None, spacing=None, channel_axis=None, auto_context=False,
                 **forest_params):
        unknown = set(forest_params) - set(FOREST_DEFAULTS)
        if unknown:
            raise TypeError(
                f"Unknown forest parameter(s) {sorted(unknown)}; Segmenter accepts {sorted(FOREST_DEFAULTS)}."
            )
        if preset is not None and preset not in PRESETS:
            raise ValueError(f"Unknown feature preset {preset!r}; choose from {sorted(PRESETS)}.")
        given = [k for k, v in zip(_FEATURE_ARGS, (intensity, edges, texture, sigma_min, sigma_max, num_sigma,
                                                  filters)) if v is not None]
        if preset is not None and given:
            raise ValueError(f"Pass a feature preset or feature arguments, not both (preset={preset!r}, {given}).")
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
        self.channel_axis = channel_axis
        self.auto_context = auto_context
        self.forest_params = {**FOREST_DEFAULTS, **forest_params}

    # -- parameters -------------------------------------------------------
    @property
    def feature_params(self) -> FeatureParams:
        """The features: the preset's, else those of the feature arguments given, else :data:`DEFAULT_PRESET`'s."""
        given = {k: getattr(self, k) for k in _FEATURE_ARGS if getattr(self, k) is not None}
        if self.preset is not None or not given:
            return dataclasses.replace(PRESETS[self.preset or DEFAULT_PRESET], spacing=self.spacing)
        return FeatureParams(**given, spacing=self.spacing)

    def _halo(self) -> int:
        """A tile's halo: the features', plus the context smoothing's with auto-context."""
        return self.feature_params.halo() + (autocontext.context_radius() if self.auto_context else 0)

    def _backend_name(self) -> str:
        if not hasattr(self, "_resolved_backend"):
            self._resolved_backend = _backend.resolve_backend(self.backend)
        return self._resolved_backend

    def __repr__(self):
        changed = {k: v for k, v in self.forest_params.items() if FOREST_DEFAULTS[k] != v}
        args = ", ".join(f"{k}={v!r}" for k, v in {"backend": self.backend, **changed}.items())
        return f"Segmenter({args})"

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
        images, label_list = _as_series(image, labels)
        name = self._backend_name()
        be = _backend.backend_module(name)
        params = self.feature_params
        Xs, ys, geometry = [], [], None
        t0 = time.perf_counter()
        for img, lab in zip(images, label_list):
            check_dtype(img.dtype)
            spatial = spatial_shape(img.shape, self.channel_axis)
            n_channels = 1 if self.channel_axis is None else img.shape[self.channel_axis]
            if geometry is None:
                geometry = (len(spatial), n_channels)
            elif geometry != (len(spatial), n_channels):
                raise ValueError(
                    f"All training images must have the same dimensionality and channels; got "
                    f"{geometry[0]}D with {geometry[1]} channel(s) and {len(spatial)}D with {n_channels}."
                )
            if tuple(lab.shape) != spatial:
                check_labels(np.empty(lab.shape, np.int8), spatial)  # raises the shape error
            X, y = self._labelled_features(img, lab, spatial, params, be, name, tile_shape)
            Xs.append(X)
            ys.append(y)
        X = np.concatenate(Xs)
        y = np.concatenate(ys)
        classes = np.unique(y)
        check_classes(classes)
        self.ndim_, self.n_channels_ = geometry
        self.n_features_in_ = params.n_features(*geometry)
        t1 = time.perf_counter()
        self.fit_features(X, y)
        if self.auto_context:
            self._fit_context(images, label_list, X, y, be, name, tile_shape)
        log.info("gpuseg fit: %d labelled pixels, %d features in %.2f s, forest in %.2f s",
                 y.size, X.shape[1], t1 - t0, time.perf_counter() - t1)
        return self

    def fit_features(self, X, y):
        """Train the forest on precomputed features of labelled pixels.

        Parameters
        ----------
        X : float32 array of shape (n_samples, n_features)
            Features as :func:`gpuseg.multiscale_features` computes them.
        y : int array of shape (n_samples,)
            Classes (positive integers).

        Returns
        -------
        self : Segmenter
        """
        name = self._backend_name()
        be = _backend.backend_module(name)
        X = np.ascontiguousarray(_backend.to_host(X), dtype=np.float32)
        y = np.asarray(_backend.to_host(y))
        classes = np.unique(y)
        check_classes(classes)
        if np.any(classes <= 0):
            raise ValueError("Classes must be positive integers (0 means unlabelled).")
        self.classes_ = classes.astype(np.int64)
        if not hasattr(self, "n_features_in_"):
            self.n_features_in_ = X.shape[1]
        elif X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features; this segmenter expects {self.n_features_in_}.")
        self.forest_ = be.forest_fit(X, np.searchsorted(classes, y), self._fit_params(y.size), len(classes))
        self.context_forest_ = None
        self._device_forest = {}
        return self

    def _fit_params(self, n_samples: int) -> dict:
        """The forest parameters for ``n_samples`` rows: ``max_samples="auto"`` resolved, class weights by index."""
        params = dict(self.forest_params)
        if params["max_samples"] == "auto":
            params["max_samples"] = min(1.0, TREE_SAMPLES / n_samples)
        if isinstance(params["class_weight"], dict):  # keyed by label value; the forest sees class indices
            weights = {int(k): w for k, w in params["class_weight"].items()}
            params["class_weight"] = {i: weights.get(int(c), 1.0) for i, c in enumerate(self.classes_)}
        return params

    def _fit_context(self, images, label_list, X, y, be, name, tile_shape):
        """Train the second stage on the features and cross-fitted context of the labelled pixels (auto-context)."""
        K = len(self.classes_)
        yi = np.searchsorted(self.classes_, y)
        fold = np.concatenate([autocontext.label_folds(lab) for lab in label_list])
        params = self._fit_params(y.size)
        forests = autocontext.fit_fold_forests(X, yi, fold, params, K, be)
        firsts = autocontext.fold_stages(forests, self._stage(name, be, "forest_"), K, be)
        context = [self._labelled_context(img, lab, firsts, be, name, tile_shape) for img, lab in zip(images, label_list)]
        X2 = np.concatenate([X, np.concatenate(context)], axis=1)
        self.context_forest_ = be.forest_fit(X2, yi, params, K)
        self._device_forest = {}

    def _labelled_context(self, image, labels, firsts, be, name, tile_shape):
        """Cross-fitted context features of the labelled pixels of one image, rows in its C order."""
        params = self.feature_params
        spatial = tuple(labels.shape)
        if tile_shape is None:
            tile_shape = default_tile_shape(spatial, self.n_features_in_, self._halo(), memory_budget(name))
        rows, order = [], []
        for tile in iter_tiles(spatial, tile_shape, self._halo()):
            lab = check_labels(_backend.to_host(labels[tile.write]), tile.shape)
            points = labelled_points(lab)
            if points[0].size == 0:
                continue
            where = tuple(p + w.start for p, w in zip(points, tile.write))
            block = self._read_block(image, tile, be, name)
            rows.append(autocontext.labelled_context(block, tile.crop, points, autocontext.folds(where),
                                                     self._matrix_fn(be), firsts, len(self.classes_), params, be))
            order.append(np.ravel_multi_index(where, spatial))
        return np.concatenate(rows)[np.argsort(np.concatenate(order), kind="stable")]

    def _stage(self, name, be, which):
        """``X -> proba`` of the forest ``which`` (``"forest_"``, ``"context_forest_"``) on backend ``name``."""
        return lambda X: be.forest_predict_proba(self._forest_arrays(name, which), X)

    def _matrix_fn(self, be, scratch=None):
        """``(block, region, shape) -> X``: the feature-major matrix of a region of a block (in ``scratch`` if long enough)."""
        params = self.feature_params

        def matrix(block, region, shape):
            size = (self.n_features_in_, int(np.prod(shape)))
            fits = scratch is not None and scratch.size >= size[0] * size[1]
            X = scratch[:size[0] * size[1]].reshape(size) if fits else be.empty(size)
            for i, f in enumerate(iter_features(block, params, be)):
                X[i].reshape(shape)[...] = f[region]  # one copy (reshape(-1) of the crop would make a second)
            return X
        return matrix

    def _labelled_features(self, image, labels, spatial, params, be, name, tile_shape):
        """Features and classes of the labelled pixels, computed only on tiles that hold some.

        Rows come in the image's C order whatever the tiles, so the forest (whose
        bootstrap draws rows by position) does not depend on the tile shape.
        """
        halo = self._halo()
        n_channels = 1 if self.channel_axis is None else image.shape[self.channel_axis]
        n_feat = params.n_features(len(spatial), n_channels)
        if tile_shape is None:
            tile_shape = default_tile_shape(spatial, n_feat, halo, memory_budget(name))
        Xs, ys, order = [], [], []
        for tile in iter_tiles(spatial, tile_shape, halo):
            lab = check_labels(_backend.to_host(labels[tile.write]), tile.shape)
            points = labelled_points(lab)
            if points[0].size == 0:
                continue
            block = self._read_block(image, tile, be, name)
            core = tuple(p + c.start for p, c in zip(points, tile.crop))
            core = tuple(_backend.to_backend(c, name) for c in core)
            X = np.empty((points[0].size, n_feat), np.float32)
            for i, f in enumerate(iter_features(block, params, be)):
                X[:, i] = _backend.to_host(f[core])
            Xs.append(X)
            ys.append(lab[points])
            order.append(np.ravel_multi_index(tuple(p + w.start for p, w in zip(points, tile.write)), spatial))
        if not Xs:
            return np.empty((0, n_feat), np.float32), np.empty(0, np.int64)
        rows = np.argsort(np.concatenate(order), kind="stable")
        return np.concatenate(Xs)[rows], np.concatenate(ys)[rows]

    def _read_block(self, image, tile, be, name):
        raw = image[channel_index(tile.read, image.ndim, self.channel_axis)]
        return prepare_image(_backend.to_backend(raw, name), self.channel_axis, be)

    # -- prediction -------------------------------------------------------
    def _check_fitted(self):
        if not hasattr(self, "forest_"):
            raise RuntimeError("This Segmenter is not trained yet: call fit(image, labels) first, or gpuseg.load(path).")

    def _check_image(self, image) -> tuple:
        check_dtype(image.dtype)
        spatial = spatial_shape(image.shape, self.channel_axis)
        n_channels = 1 if self.channel_axis is None else image.shape[self.channel_axis]
        if len(spatial) != self.ndim_:
            raise ValueError(
                f"The model was trained on {self.ndim_}D images; this image is {len(spatial)}D "
                f"(shape {tuple(image.shape)}, channel_axis={self.channel_axis})."
            )
        if n_channels != self.n_channels_:
            raise ValueError(
                f"The model was trained on images with {self.n_channels_} channel(s); this image has "
                f"{n_channels} (shape {tuple(image.shape)}, channel_axis={self.channel_axis}). "
                "Convert the image, or train a model on images like it."
            )
        return spatial

    def _forest_arrays(self, name, which="forest_"):
        """The arrays of the forest ``which`` on backend ``name``, converted once."""
        cache = getattr(self, "_device_forest", None)
        if not isinstance(cache, dict):
            cache = self._device_forest = {}
        if (name, which) not in cache:
            cache[(name, which)] = getattr(self, which).arrays(name)
        return cache[(name, which)]

    def _feature_scratch(self, be, spatial, tile_shape):
        """A buffer for the feature matrix of any tile, to reuse from tile to tile.

        A fresh matrix per tile costs a page fault per 4 KiB at its first write
        (about a tenth of the CPU prediction time, measured on 4096x4096).

        Returns
        -------
        scratch : float32 1D array of the backend, ``n_features_in_ * prod(tile)`` long
        """
        pixels = int(np.prod([min(int(t), int(s)) for t, s in zip(tile_shape, spatial)]))
        return be.empty((self.n_features_in_ * pixels,))

    def _proba_of_block(self, block, crop, be, name, scratch=None):
        """Class probabilities of the pixels ``crop`` of a prepared block: (n_pixels, K) and ``C``.

        ``scratch`` (see :meth:`_feature_scratch`) holds the feature matrix when it is long enough.
        """
        shape = tuple(c.stop - c.start for c in crop)
        matrix = self._matrix_fn(be, scratch)
        if getattr(self, "context_forest_", None) is not None:
            return autocontext.two_stage_proba(block, crop, matrix, self._stage(name, be, "forest_"),
                                               self._stage(name, be, "context_forest_"), len(self.classes_),
                                               self.feature_params, be), shape
        return be.forest_predict_proba(self._forest_arrays(name), matrix(block, crop, shape)), shape

    def _proba_of_crop(self, block, crop, be, name, scratch=None):
        """Class probabilities of the region ``crop`` of a prepared block, halving it when memory runs out.

        A ``MemoryError`` (CuPy's ``OutOfMemoryError`` is one) splits the region in
        two along its longest axis and computes each half from the pixels within
        ``halo`` of it; the result is the same.

        Parameters
        ----------
        block : array of shape ``B + (n_channels,)``, float32
            Prepared image block of backend ``name`` (see ``prepare_image``); holds
            at least ``halo`` pixels around ``crop`` except at the image's edges.
        crop : tuple of slice
            Region of ``B`` to classify, of shape ``C``.
        be : module
            The backend primitives.
        name : {"cpu", "gpu"}
        scratch : array, optional
            Reusable feature matrix buffer (see :meth:`_feature_scratch`).

        Returns
        -------
        proba : float32 array of shape ``C + (n_classes,)``, of the backend.

        Raises
        ------
        MemoryError
            When even a region one pixel wide along every axis does not fit.
        """
        try:
            proba, shape = self._proba_of_block(block, crop, be, name, scratch)
            return proba.reshape(shape + (proba.shape[1],))
        except MemoryError:
            sizes = [c.stop - c.start for c in crop]
            axis = int(np.argmax(sizes))
            if sizes[axis] < 2:
                raise
            log.warning("gpuseg: out of memory on a tile of shape %s; splitting it in two", tuple(sizes))
        halo = self._halo()
        mid = crop[axis].start + sizes[axis] // 2
        halves = []
        for part in (slice(crop[axis].start, mid), slice(mid, crop[axis].stop)):
            sub = crop[:axis] + (part,) + crop[axis + 1:]
            window = tuple(slice(max(0, c.start - halo), min(n, c.stop + halo)) for c, n in zip(sub, block.shape))
            local = tuple(slice(c.start - w.start, c.stop - w.start) for c, w in zip(sub, window))
            halves.append(self._proba_of_crop(block[window], local, be, name, scratch))
        return be.xp.concatenate(halves, axis=axis)

    def _predict_crop(self, block, crop, proba, be, name, scratch=None):
        """Labels (``label_dtype``, shape ``C``) or probabilities (``C + (K,)``) of a region of a prepared block."""
        result = self._proba_of_crop(block, crop, be, name, scratch)
        if proba:
            return result
        classes = _backend.to_backend(self.classes_.astype(self.label_dtype), name)
        return classes[result.argmax(axis=-1)]

    def _run_tiles(self, image, tile_shape, proba, progress):
        """Predict an in-memory or array-like image tile by tile into one output array of the backend."""
        self._check_fitted()
        spatial = self._check_image(image)
        name = self._backend_name()
        be = _backend.backend_module(name)
        halo = self._halo()
        if tile_shape is None:
            tile_shape = default_tile_shape(spatial, self.n_features_in_, halo, memory_budget(name))
        out = be.empty(spatial + (len(self.classes_),)) if proba else be.empty(spatial, self.label_dtype)
        tiles = iter_tiles(spatial, tile_shape, halo)
        scratch = self._feature_scratch(be, spatial, tile_shape)
        show = progress if progress is not None else len(tiles) > 4
        for tile in tqdm(tiles, desc="gpuseg predict", unit="tile", disable=not show, leave=False):
            block = self._read_block(image, tile, be, name)
            out[tile.write] = self._predict_crop(block, tile.crop, proba, be, name, scratch)
        return _backend.like_input(out, image)

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
            a lazy Dask array for a Dask input, else NumPy.
        """
        if _is_dask(image):
            from .lazy import predict_dask

            return predict_dask(self, image, proba=True, tile_shape=tile_shape)
        return self._run_tiles(image, tile_shape, True, progress)

    def predict(self, image, *, tile_shape=None, progress=None):
        """Class label of every pixel: the class of highest mean probability.

        Parameters
        ----------
        image, tile_shape, progress
            As in :meth:`predict_proba`.

        Returns
        -------
        labels : integer array of shape ``S``
            Values from ``classes_``; smallest unsigned dtype that holds them.
            CuPy for a CuPy input, lazy Dask for a Dask input, else NumPy.
        """
        if _is_dask(image):
            from .lazy import predict_dask

            return predict_dask(self, image, proba=False, tile_shape=tile_shape)
        return self._run_tiles(image, tile_shape, False, progress)

    @property
    def label_dtype(self):
        return np.min_scalar_type(int(self.classes_.max()))

    def predict_proba_features(self, features):
        """Class probabilities from a precomputed feature stack.

        Parameters
        ----------
        features : float32 array of shape ``S + (n_features,)``
            As :func:`gpuseg.multiscale_features` returns it.

        Returns
        -------
        proba : float32 array of shape ``S + (n_classes,)``, same array type as the input.
        """
        self._check_fitted()
        if self.context_forest_ is not None:
            raise ValueError("An auto-context model classifies images (its second stage reads the first's "
                             "probabilities around each pixel), not feature stacks: use predict_proba(image).")
        if features.shape[-1] != self.n_features_in_:
            raise ValueError(f"features have {features.shape[-1]} columns; the model expects {self.n_features_in_}.")
        name = "gpu" if _backend.is_device_array(features) else "cpu"
        be = _backend.backend_module(name)
        X = be.ascontiguous(features.reshape(-1, features.shape[-1]).T.astype(np.float32))
        proba = be.forest_predict_proba(self._forest_arrays(name), X)
        return proba.reshape(features.shape[:-1] + (proba.shape[1],))

    def __getstate__(self):
        """Pickle (for Dask workers) without device arrays or the resolved backend: each worker picks its own."""
        state = dict(self.__dict__)
        state.pop("_device_forest", None)
        state.pop("_resolved_backend", None)
        return state

    # -- files --------------------------------------------------------------
    def save(self, path):
        """Write the model to ``path`` (``.gpuseg`` appended if missing), atomically.

        Returns
        -------
        path : pathlib.Path
        """
        self._check_fitted()
        meta = {
            "features": self.feature_params.to_dict(),
            "channel_axis": self.channel_axis,
            "n_channels": int(self.n_channels_),
            "ndim": int(self.ndim_),
            "classes": [int(c) for c in self.classes_],
            "forest_params": {k: _jsonable(v) for k, v in self.forest_params.items()},
            "trained_on": self._backend_name(),
            "auto_context": self.context_forest_ is not None,
        }
        return save_model(path, meta, self.forest_, self.context_forest_)


def load(path, backend="auto") -> Segmenter:
    """Load a model file written by :meth:`Segmenter.save`, on any backend.

    Parameters
    ----------
    path : str or path-like
    backend : {"auto", "cpu", "gpu"}

    Returns
    -------
    segmenter : Segmenter
        Trained, ready to ``predict``.

    Raises
    ------
    ValueError
        The file is not a gpuseg model (a pickle, another format, corrupt or
        truncated) or has an unknown format version. Nothing in it is executed.
    """
    meta, forest, context = read_model(path)
    try:
        features = FeatureParams.from_dict(meta["features"])
        seg = Segmenter(backend=backend, channel_axis=meta["channel_axis"], **features.to_dict(),
                        auto_context=context is not None,
                        **{k: v for k, v in meta["forest_params"].items() if k in FOREST_DEFAULTS})
        if isinstance(seg.forest_params["class_weight"], dict):
            seg.forest_params["class_weight"] = {int(k): w for k, w in seg.forest_params["class_weight"].items()}
        seg.classes_ = np.asarray(meta["classes"], dtype=np.int64)
        seg.n_channels_ = int(meta["n_channels"])
        seg.ndim_ = int(meta["ndim"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path} is not a usable gpuseg model file: its metadata is invalid ({exc}).") from None
    seg.n_features_in_ = features.n_features(seg.ndim_, seg.n_channels_)
    if seg.n_features_in_ != forest.n_features or seg.classes_.size != forest.n_classes or seg.ndim_ not in (2, 3):
        raise ValueError(f"{path} is not a usable gpuseg model file: its metadata and its forest disagree.")
    n_context = autocontext.n_context(seg.classes_.size)
    if context is not None and (context.n_features != seg.n_features_in_ + n_context
                                or context.n_classes != seg.classes_.size):
        raise ValueError(f"{path} is not a usable gpuseg model file: its two forests disagree.")
    seg.forest_ = forest
    seg.context_forest_ = context
    seg._device_forest = {}
    return seg


def _jsonable(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return v


def _is_dask(x) -> bool:
    return type(x).__module__.split(".")[0] == "dask"


def _as_series(image, labels):
    if isinstance(image, (list, tuple)):
        if not isinstance(labels, (list, tuple)) or len(labels) != len(image):
            raise ValueError("Pass one labels array per image: fit([img1, img2], [lab1, lab2]).")
        if not image:
            raise ValueError("fit needs at least one image.")
        return list(image), list(labels)
    return [image], [labels]
