"""The tile executor: features of tiles, and their classes, for every caller.

Everything that computes features tile by tile goes through this module:
``Segmenter.fit`` gathers the labelled rows with :meth:`TileFeatures.labelled_rows`;
``Segmenter.predict*``, :func:`gpuseg.stream.predict_to_zarr`, Dask blocks and
the app classify with :class:`Predictor`. There is one tile loop,
:meth:`Predictor.classify_tiles`; a caller's ``for`` over it is only its sink
(one output array, Zarr chunks, a Dask block), as in stardist's
``predict_instances_big``.

Memory on the device is bounded by the tile: a block is copied to the device,
its features fill one reusable buffer, and its result is copied back to the
host for a host input (for a device input it stays there).
"""

from __future__ import annotations

import functools
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np

from . import autocontext
from ._backend import backend_module, is_device_array, module_of, resolve_backend
from ._validation import check_dtype, check_labels, prepare_image, spatial_shape, warn_if_rgb
from .chunk_reuse import reuse_chunks
from .features import FeatureParams, iter_features
from .tiling import Tile, channel_index, check_tile_shape, default_tile_shape, iter_tiles, labelled_points

log = logging.getLogger("gpuseg")

KINDS = ("labels", "proba")
NOT_FITTED = "This Segmenter is not trained yet: call fit(image, labels) first, or gpuseg.load(path)."


class Plan(NamedTuple):
    """How an image is cut: its spatial shape ``S``, the tile shape, and the tiles in C order."""

    spatial: tuple
    tile_shape: tuple
    tiles: list


class TileFeatures:
    """Feature matrices of tiles on one backend: block reading, one reusable buffer per thread, labelled rows.

    Parameters
    ----------
    params : FeatureParams
    channel_axis : int or None
        Axis of the images holding channels.
    be : module
        The backend primitives (``gpuseg._cpu``, ``gpuseg._gpu``, or anything with their names).
    context : bool
        Tiles for auto-context: the halo grows by the context smoothing's
        (:func:`gpuseg.autocontext.context_radius`).
    """

    def __init__(self, params: FeatureParams, channel_axis, be, context: bool = False):
        self.params = params
        self.channel_axis = channel_axis
        self.be = be
        self.halo = params.halo() + (autocontext.context_radius() if context else 0)
        self._local = threading.local()

    def read_block(self, image, tile: Tile):
        """The read region of ``tile``, on the device, prepared: float32 of shape ``B + (n_channels,)``."""
        return self._prepare(self._read_raw(image, tile))

    def _read_raw(self, image, tile: Tile):
        """The read region of ``tile`` as ``image`` gives it (a host array for a Zarr image)."""
        return image[channel_index(tile.read, image.ndim, self.channel_axis)]

    def _prepare(self, raw):
        return prepare_image(self.be.asarray(raw), self.channel_axis, self.be)

    def default_tile_shape(self, spatial: tuple, n_features: int) -> tuple:
        """Tiles whose features fit the backend's memory budget (see :func:`gpuseg.tiling.default_tile_shape`)."""
        return default_tile_shape(spatial, n_features, self.halo, self.be.memory_budget())

    def feature_matrix(self, block, index, shape: tuple):
        """Feature-major matrix of some pixels of a prepared block, in this thread's reusable buffer.

        A fresh matrix per tile costs a page fault per 4 KiB at its first write
        (about a tenth of the CPU prediction time, measured on 4096x4096), so
        the buffer is kept, per thread and device, and grown when a tile needs more.

        Parameters
        ----------
        block : float32 array of shape ``B + (n_channels,)``
        index : tuple of slice or tuple of int arrays
            The pixels: a region of ``B`` or coordinate arrays, giving ``f[index]`` of shape ``shape``.
        shape : tuple of int

        Returns
        -------
        X : float32 array of shape ``(n_features, prod(shape))``, a view of the buffer
            Valid until the next call from this thread.
        """
        n_features = self.params.n_features(block.ndim - 1, block.shape[-1])
        size = n_features * int(np.prod(shape))
        device = self.be.device_id()
        held = getattr(self._local, "buffer", None)
        if held is None or held[0] != device or held[1].size < size:
            self._local.buffer = None  # free the old one first
            self._local.buffer = held = (device, self.be.empty((size,)))
        X = held[1][:size].reshape(n_features, -1)
        if all(isinstance(i, slice) for i in index):  # a box: the filters write into X's rows
            for _ in iter_features(block, self.params, self.be, index, X.reshape((n_features,) + tuple(shape))):
                pass
        else:
            for i, f in enumerate(iter_features(block, self.params, self.be)):
                self.be.assign(X[i].reshape(shape), f[index])  # one copy (reshape(-1) of a crop would make a second)
        return X

    def _adopt_buffer(self, X) -> None:
        """Make the buffer that ``X`` views (a matrix of another object's :meth:`feature_matrix`, no
        longer needed) this thread's, if this thread has none: no second buffer to allocate and touch."""
        base = getattr(X, "base", None)
        if getattr(self._local, "buffer", None) is None and base is not None and base.ndim == 1:
            self._local.buffer = (self.be.device_id(), base)

    def labelled_rows(self, image, labels, tile_shape=None, rows_of=None, cache=None) -> tuple:
        """Features and classes of the labelled pixels, computed only on tiles that hold some.

        Rows come in the image's C order whatever the tiles, so the forest (whose
        bootstrap draws rows by position) does not depend on the tile shape. They
        are gathered on the device and stay there.

        Parameters
        ----------
        image : array
            Spatial shape ``S`` plus the channel axis, any array supporting slicing.
        labels : integer array of shape ``S``
            0 = unlabelled.
        tile_shape : tuple of int, optional
            Default from the backend's memory budget.
        rows_of : callable ``(block, tile, points) -> matrix``, optional
            Other rows than the features: a column-per-pixel matrix of the
            backend for the labelled ``points`` (relative to the tile) of a
            tile's prepared block (auto-context's context features).
        cache : gpuseg.tile_cache.TileCache, optional
            Given, each labelled tile's whole feature matrix is computed (in
            this object's reusable buffer, as prediction computes it) and the
            rows are taken from it; it is kept, while the cache has room, for
            :meth:`Predictor.classify_tiles` of the same image. The last
            labelled tile's is kept too, beyond the room: it is the buffer
            itself (no copy), valid while no other matrix is computed here.

        Returns
        -------
        X : float32 array of the backend, shape ``(n_labelled, n_features)``
        y : int64 ndarray of shape ``(n_labelled,)``
        geometry : tuple of int
            ``(ndim, n_channels)`` of the image.

        Raises
        ------
        ValueError, TypeError
            An image or labels that cannot be used (see ``gpuseg._validation``).
        """
        check_dtype(image.dtype)
        warn_if_rgb(image.shape, self.channel_axis)
        spatial = spatial_shape(image.shape, self.channel_axis)
        n_channels = 1 if self.channel_axis is None else image.shape[self.channel_axis]
        labels = labels if hasattr(labels, "shape") else np.asarray(labels)  # nested lists too
        if tuple(labels.shape) != spatial:
            check_labels(np.empty(labels.shape, np.int8), spatial)  # raises the shape error
        n_features = self.params.n_features(len(spatial), n_channels)
        if tile_shape is None:
            tile_shape = self.default_tile_shape(spatial, n_features)
        parts, ys, order = [], [], []
        tiles = iter_tiles(spatial, tile_shape, self.halo)
        last = None if cache is None else max((i for i, t in enumerate(tiles) if labels[t.write].any()), default=None)
        for i, tile in enumerate(tiles):
            lab = check_labels(self.be.to_host(labels[tile.write]), tile.shape)
            points = labelled_points(lab)
            if points[0].size == 0:
                continue
            block = self.read_block(image, tile)
            if rows_of is not None:
                parts.append(rows_of(block, tile, points))
            elif cache is not None:
                # The tile's whole matrix, in this thread's buffer (the box path: no whole-block feature
                # images), as prediction will compute it; kept while the cache has room, and the last
                # labelled tile's in the buffer itself, which nothing writes again.
                whole = self.feature_matrix(block, tile.crop, tile.shape)
                if i == last or cache.has_room(whole.nbytes):
                    cache.put(tile, whole if i == last else whole.copy())
                parts.append(whole[:, self.be.asarray(np.ravel_multi_index(points, tile.shape))])
            else:
                core = tuple(self.be.asarray(p + c.start) for p, c in zip(points, tile.crop))
                parts.append(self.feature_matrix(block, core, (points[0].size,)).copy())
            ys.append(lab[points])
            order.append(np.ravel_multi_index(tuple(p + w.start for p, w in zip(points, tile.write)), spatial))
        if not parts:
            return self.be.empty((0, n_features)), np.empty(0, np.int64), (len(spatial), n_channels)
        rows = np.argsort(np.concatenate(order), kind="stable")
        X = self.be.xp.concatenate(parts, axis=1)[:, self.be.asarray(rows)]
        return self.be.ascontiguous(X.T), np.concatenate(ys)[rows], (len(spatial), n_channels)


class Predictor(TileFeatures):
    """A fitted model's classification of tiles, blocks and feature stacks on one backend.

    Built from the model's public attributes; the forest and the class table are
    put on a device once, the first time a tile is classified there. Pickles
    (for Dask workers) without device arrays or backend: a worker picks its own
    backend from the model's ``backend`` setting.

    Parameters
    ----------
    model : gpuseg.Segmenter
        Fitted (``forest_``, ``classes_``, ``n_features_in_``; ``ndim_`` and
        ``n_channels_`` to classify images).
    be : module
        The backend primitives.

    Raises
    ------
    RuntimeError
        An unfitted model.
    """

    def __init__(self, model, be):
        if not hasattr(model, "forest_"):
            raise RuntimeError(NOT_FITTED)
        self.context = getattr(model, "context_forest_", None)
        super().__init__(model.feature_params, model.channel_axis, be, context=self.context is not None)
        self.requested_backend = model.backend
        self.forest = model.forest_
        self.classes = np.asarray(model.classes_)
        self.label_dtype = model.label_dtype
        self.n_features = int(model.n_features_in_)
        self.ndim = getattr(model, "ndim_", None)
        self.n_channels = getattr(model, "n_channels_", None)
        self._on_device = {}

    def __getstate__(self):
        state = dict(self.__dict__)
        for name in ("be", "_local", "_on_device"):
            del state[name]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.be = backend_module(resolve_backend(self.requested_backend, quiet=True))
        self._local = threading.local()
        self._on_device = {}

    # -- images and tiles ---------------------------------------------------
    def check_image(self, image) -> tuple:
        """The spatial shape ``S`` of an image the model can classify.

        Raises
        ------
        ValueError
            Another dimensionality or channel count than the training images'.
        RuntimeError
            A model trained by ``fit_features`` without the image geometry.
        """
        check_dtype(image.dtype)
        warn_if_rgb(image.shape, self.channel_axis)
        spatial = spatial_shape(image.shape, self.channel_axis)
        n_channels = 1 if self.channel_axis is None else image.shape[self.channel_axis]
        if self.ndim is None:
            raise RuntimeError(
                f"This model was trained by fit_features on {self.n_features} feature columns that do not tell "
                "the images' geometry (none or several fit its feature parameters); to classify images, train it "
                "with fit(image, labels), or pass ndim= and n_channels= to fit_features."
            )
        if len(spatial) != self.ndim:
            raise ValueError(
                f"The model was trained on {self.ndim}D images; this image is {len(spatial)}D "
                f"(shape {tuple(image.shape)}, channel_axis={self.channel_axis})."
            )
        if n_channels != self.n_channels:
            raise ValueError(
                f"The model was trained on images with {self.n_channels} channel(s); this image has "
                f"{n_channels} (shape {tuple(image.shape)}, channel_axis={self.channel_axis}). "
                "Convert the image, or train a model on images like it."
            )
        return spatial

    def plan(self, image, tile_shape=None) -> Plan:
        """Check ``image`` and cut it into tiles of ``tile_shape`` (default: from the backend's memory budget)."""
        spatial = self.check_image(image)
        if tile_shape is None:
            tile_shape = self.default_tile_shape(spatial, self.n_features)
        tile_shape = check_tile_shape(tile_shape, len(spatial))
        return Plan(spatial, tile_shape, iter_tiles(spatial, tile_shape, self.halo))

    def classify_tiles(self, image, tiles, kind: str, cache=None):
        """Classify tiles of an image, one after the other: the tile loop.

        Parameters
        ----------
        image : array
            Checked by :meth:`check_image` (or a block of such an image); NumPy,
            CuPy, memory-mapped, Zarr, or anything supporting slicing.
        tiles : iterable of Tile
        kind : {"labels", "proba"}
        cache : gpuseg.tile_cache.TileCache, optional
            Feature matrices of some of these tiles, kept by
            :meth:`TileFeatures.labelled_rows` of this image: such a tile is
            classified from its matrix (same result), which is then dropped.
            Not for auto-context models. The tiles it holds come first.

        The region of the next tile of an image that is not in memory (Zarr,
        or any other array but NumPy's and CuPy's) is read on the host in a
        thread while this one is classified (its copy to the device and
        checks stay in the caller's thread); a chunked one's chunks are
        decoded once for the tiles whose halos reach them (see
        :mod:`gpuseg.chunk_reuse`).

        Yields
        ------
        tile : Tile
        result : array of shape ``C`` (labels, ``label_dtype``) or ``C + (n_classes,)`` (float32 probabilities)
            ``C`` is the tile's shape; CuPy for a CuPy image, else NumPy (copied back to the host tile by tile).
        """
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}.")
        if cache is not None and self.context is not None:
            raise ValueError("An auto-context model's second stage reads the first's probabilities around each "
                             "pixel: classify its tiles without a cache.")
        out = module_of(image)
        if cache is not None:  # kept tiles first: their matrices are freed before this buffer grows
            tiles = list(tiles)
            held = [cache.holds(tile) for tile in tiles]
            for tile in (t for t, h in zip(tiles, held) if h):
                X = cache.pop(tile)
                result = self._of_matrix(X, tile.shape, kind)
                self._adopt_buffer(X)
                yield tile, out.asarray(result)
            tiles = [t for t, h in zip(tiles, held) if not h]
        in_memory = isinstance(image, np.ndarray) or is_device_array(image)
        read = functools.partial(self._read_raw, image if in_memory else reuse_chunks(image))
        for tile, raw in ((t, read(t)) for t in tiles) if in_memory else _read_ahead(read, tiles):
            yield tile, out.asarray(self.classify(self._prepare(raw), tile.crop, kind))

    def classify(self, block, crop: tuple, kind: str):
        """Labels or probabilities of the region ``crop`` of a prepared block, on the device.

        A ``MemoryError`` (CuPy's ``OutOfMemoryError`` is one) splits the region in
        two along its longest axis and computes each half from the pixels within
        ``halo`` of it; the result is the same.

        Parameters
        ----------
        block : float32 array of shape ``B + (n_channels,)``
            From :meth:`read_block`; holds at least ``halo`` pixels around ``crop``
            except at the image's edges.
        crop : tuple of slice
            Region of ``B`` to classify, of shape ``C``.
        kind : {"labels", "proba"}

        Returns
        -------
        result : array of the backend, shape ``C`` or ``C + (n_classes,)``

        Raises
        ------
        MemoryError
            When even a region one pixel wide along every axis does not fit.
        """
        shape = tuple(c.stop - c.start for c in crop)
        try:
            if self.context is None:
                return self._of_matrix(self.feature_matrix(block, crop, shape), shape, kind)
            proba = autocontext.two_stage_proba(block, crop, self.feature_matrix, self.proba_of_matrix,
                                                self._proba_of_context, self.classes.size, self.params, self.be)
            proba = proba.reshape(shape + (self.classes.size,))
            return proba if kind == "proba" else self._device_arrays()[1][proba.argmax(axis=-1)]
        except MemoryError:
            axis = int(np.argmax(shape))
            if shape[axis] < 2:
                raise
            log.warning("gpuseg: out of memory on a tile of shape %s; splitting it in two", shape)
        mid = crop[axis].start + shape[axis] // 2
        halves = []
        for part in (slice(crop[axis].start, mid), slice(mid, crop[axis].stop)):
            sub = crop[:axis] + (part,) + crop[axis + 1:]
            window = tuple(slice(max(0, c.start - self.halo), min(n, c.stop + self.halo))
                           for c, n in zip(sub, block.shape))
            local = tuple(slice(c.start - w.start, c.stop - w.start) for c, w in zip(sub, window))
            halves.append(self.classify(block[window], local, kind))
        return self.be.xp.concatenate(halves, axis=axis)

    def _of_matrix(self, X, shape: tuple, kind: str):
        """Labels (``shape``) or probabilities (``shape + (n_classes,)``) of a feature-major matrix
        ``(n_features, prod(shape))`` of the backend; labels without the probabilities, through the
        backend's ``forest_predict_labels``."""
        if kind == "proba":
            return self.proba_of_matrix(X).reshape(shape + (self.classes.size,))
        if X.shape[1] == 0:
            return self.be.empty(shape, self.label_dtype)
        forest, classes, _ = self._device_arrays()
        return classes[self.be.forest_predict_labels(forest, X)].reshape(shape)

    # -- feature matrices and stacks ------------------------------------------
    def _device_arrays(self) -> tuple:
        """The forest's arrays, the class table (``label_dtype``) and the second stage's arrays (or ``None``)
        on the current device, put there once."""
        device = self.be.device_id()
        if device not in self._on_device:
            classes = self.be.asarray(self.classes.astype(self.label_dtype))
            context = None if self.context is None else self.context.arrays(self.be)
            self._on_device[device] = (self.forest.arrays(self.be), classes, context)
        return self._on_device[device]

    def _proba_of_context(self, X):
        """Auto-context's second stage on a feature-major matrix of features and context features."""
        return self.be.forest_predict_proba(self._device_arrays()[2], X)

    def proba_of_matrix(self, X):
        """Class probabilities ``(n, n_classes)`` of a feature-major matrix ``(n_features, n)`` of the backend.

        An empty matrix gives an empty result without a kernel launch.
        """
        if X.shape[1] == 0:
            return self.be.empty((0, self.classes.size))
        return self.be.forest_predict_proba(self._device_arrays()[0], X)

    def classify_features(self, features, kind: str):
        """Labels (``S``) or probabilities (``S + (n_classes,)``) of a feature stack ``S + (n_features,)``."""
        if self.context is not None:
            raise ValueError("An auto-context model classifies images (its second stage reads the first's "
                             "probabilities around each pixel), not feature stacks: use predict_proba(image).")
        if features.ndim < 1 or features.shape[-1] != self.n_features:
            raise ValueError(f"features have {features.shape[-1] if features.ndim else 0} columns; "
                             f"the model expects {self.n_features}.")
        stack = self.be.asarray(features)
        X = self.be.xp.ascontiguousarray(self.be.xp.moveaxis(stack, -1, 0), dtype=np.float32)  # the one copy
        return self._of_matrix(X.reshape(self.n_features, -1), stack.shape[:-1], kind)


def uncertainty(proba):
    """Where the forest is least sure: ``(1 - p_max) * K / (K - 1)``, 0 (certain) to 1 (even odds).

    Parameters
    ----------
    proba : float32 ndarray of shape ``S + (K,)``

    Returns
    -------
    float32 ndarray of shape ``S``
    """
    k = proba.shape[-1]
    return ((1.0 - proba.max(axis=-1)) * (k / (k - 1))).astype(np.float32)


def _read_ahead(read, tiles):
    """``(tile, read(tile))`` for each tile, the next one read in a thread while the caller works on this one."""
    tiles = iter(tiles)
    with ThreadPoolExecutor(1, thread_name_prefix="gpuseg-read") as pool:
        tile = next(tiles, None)
        pending = None if tile is None else pool.submit(read, tile)
        while tile is not None:
            following = next(tiles, None)
            block = pending.result()
            pending = None if following is None else pool.submit(read, following)
            yield tile, block
            tile = following
