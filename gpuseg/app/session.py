"""One browser tab's work: its image, classes, strokes, cached features and model.

Nothing here imports Dash, so every step can be tested, and timed, as plain
Python. The speed of the app rests on three things:

* the feature stack of an image is computed once per frame (time point) and
  feature parameters, when first needed, and kept in a :class:`FeatureCache`
  shared by all sessions (two tabs on the same image share it);
* training gathers the features of the scribbled pixels only (at most
  ``MAX_TRAIN_PER_CLASS`` per class, drawn at random from all frames); on the
  CPU the overlay after a stroke shows a preview, the first ``PREVIEW_TREES``
  trees of the ``LIVE_FOREST`` that downloads use (scikit-learn draws each
  tree's seed in turn from ``random_state``, so a forest of fewer trees is the
  first trees of the larger one), and the full forest is trained when a
  download first asks for it (:meth:`Session.full_model`);
* after a stroke the forest predicts the pixels of the *displayed* plane of
  the displayed frame only, a strided sample of that frame's full-resolution
  feature stack (kept feature-major in the :class:`FeatureCache`, as the
  forest reads it), its probabilities kept for the last ``KEPT_VIEWS`` planes
  shown until the model changes; the full resolution is predicted for
  downloads, by the full forest.

:meth:`Session.refresh` is what the app does after every change before it
redraws, and what :func:`gpuseg.app.latency.measure_stroke_to_overlay` times.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from .._backend import backend_module, resolve_backend
from ..features import FeatureParams, multiscale_features
from ..segmenter import Segmenter
from .display import PALETTE, colour_prediction, display_scale, palette_png_source, prediction_palette
from .frames import Frames
from .store import FeatureCache
from .strokes import Strokes, rasterise

MAX_CLASSES = 256  # classes an uploaded model may bring: each is a row of the page's class list
MAX_TRAIN_PER_CLASS = 3_000  # pixels along one stroke are alike: more only slows training
LIVE_FOREST = {"n_estimators": 32, "max_depth": 10, "max_samples": 0.5, "random_state": 0}
PREVIEW_TREES = 16  # on the CPU, the overlay after a stroke shows the first 16 of LIVE_FOREST's trees
KEPT_VIEWS = 8  # predictions of displayed planes kept per session: going back to a frame shows it at once


@dataclass
class ImageClass:
    """A class the user scribbles, drawn in ``color``; ``value`` is its label value (positive)."""

    name: str
    color: str
    value: int = field(default=0, compare=False)


@dataclass
class Session:
    """What one browser tab works on: its image, classes, strokes, features and model.

    Where a method takes ``plane`` and ``frame``, they say what the page shows: plane ``plane``
    (0 for a 2D image) of frame ``frame`` (0 for a still image).

    Parameters
    ----------
    image : Frames
        ``(n_frames,) + spatial_shape + (n_channels,)``; see :func:`gpuseg.app.files.read_image`.
    name : str
        Shown in the page and used for download names.
    cache : FeatureCache
    backend : {"auto", "cpu", "gpu"}
    """

    image: Frames
    name: str
    cache: FeatureCache
    backend: str = "auto"
    params: FeatureParams = field(default_factory=FeatureParams)
    classes: list = field(default_factory=lambda: [ImageClass("background", PALETTE[0], 1),
                                                   ImageClass("foreground", PALETTE[1], 2)])
    strokes: Strokes = field(default_factory=Strokes)
    model: Segmenter | None = None  # the forest whose predictions are shown (see full_model)
    model_source: str = ""  # "scribbles" or the uploaded file's name
    proba: np.ndarray | None = None  # displayed plane's class probabilities (rows, cols, K)
    proba_at: tuple = (0, 0)  # the (frame, plane) of proba
    views: OrderedDict = field(default_factory=OrderedDict, repr=False)  # (frame, plane) -> proba, latest last
    timings: dict = field(default_factory=dict)
    message: str = ""
    shown_tokens: tuple = (0, 0)  # the (image, model) upload counters the page last drew
    recovered: str = ""  # a dropped session's strokes (see SessionStore), for download
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _full: Segmenter | None = field(default=None, init=False, repr=False)  # what downloads use, once trained
    _training: tuple | None = field(default=None, init=False, repr=False)  # a preview's (feature rows, labels)

    def __post_init__(self):
        self.backend = resolve_backend(self.backend, quiet=True)
        self.be = backend_module(self.backend)
        self.set_image(self.image, self.name)

    def set_image(self, image: Frames, name: str) -> None:
        """Work on another image: strokes are dropped; a model is kept if it fits the image."""
        self.image, self.name = image, name
        self.strokes.clear()
        if self.model is not None and (self.model.n_channels_, self.model.ndim_) == self._geometry():
            self.proba = None  # its predictions were of the other image
            self.views.clear()
        else:
            self.forget_model()

    # -- the image ---------------------------------------------------------
    @property
    def spatial_shape(self) -> tuple:
        """``(rows, cols)`` or ``(planes, rows, cols)`` of one frame."""
        return self.image.spatial_shape

    @property
    def n_planes(self) -> int:
        return self.image.n_planes

    @property
    def n_frames(self) -> int:
        return self.image.n_frames

    @property
    def scale(self) -> int:
        return display_scale(self.spatial_shape)

    def _geometry(self) -> tuple:
        """``(n_channels, ndim)`` of the image, as a model has them (``n_channels_``, ``ndim_``)."""
        return self.image.n_channels, len(self.spatial_shape)

    def display_image(self, plane: int = 0, frame: int = 0, channel: int | None = None) -> np.ndarray:
        """Displayed RGB uint8 picture of a plane, of shape ``(ceil(rows/scale), ceil(cols/scale), 3)``.

        ``channel`` picks the channel shown in grey; None shows the composite (see
        :meth:`Frames.picture <gpuseg.app.frames.Frames.picture>`). Training uses every channel whatever is shown.
        """
        return self.image.picture(frame, plane, channel, self.scale)

    # -- features ----------------------------------------------------------
    def features(self, frame: int = 0):
        """Full-resolution feature stack of a frame, ``spatial_shape + (n_features,)``, computed once and cached."""
        def compute():
            return multiscale_features(self.image.frame(frame), channel_axis=self.image.channel_axis,
                                       backend=self.backend, **self.params.to_dict())

        start = time.perf_counter()
        stack, cached = self.cache.get((self.image.key(frame), self.params, self.backend), compute)
        if not cached:
            self.timings["features"] = time.perf_counter() - start
        elif "features" not in self.timings:
            self.timings["features"] = None  # computed earlier, for this image or another session
        return stack

    def display_features(self, plane: int = 0, frame: int = 0):
        """Features at the displayed pixels of a plane: the block centres, ``(rows', cols', n_features)``.

        A view of a feature-major array (features first, C-contiguous), gathered from the frame's stack
        once per plane and kept in the cache: the layout the forest reads, so predicting it copies nothing.
        """
        def gather():
            stack = self.features(frame)
            shown = stack[plane] if stack.ndim == 4 else stack
            half = self.scale // 2
            return self.be.xp.ascontiguousarray(self.be.xp.moveaxis(shown[half::self.scale, half::self.scale], -1, 0))

        major, _ = self.cache.get(("shown", self.image.key(frame), plane, self.params, self.backend), gather)
        return self.be.xp.moveaxis(major, 0, -1)

    # -- strokes -----------------------------------------------------------
    def labels(self) -> np.ndarray:
        """Full-resolution scribble labels of every frame, ``(n_frames,) + spatial_shape``
        (see :func:`~gpuseg.app.strokes.rasterise`)."""
        return rasterise(self.strokes, self.spatial_shape, self.scale, self.n_frames)

    def clear(self) -> None:
        """Remove every stroke and the model trained on them."""
        self.strokes.clear()
        if self.model_source == "scribbles":
            self.forget_model()

    def use_features(self, params: FeatureParams) -> bool:
        """Compute other features from now on; an uploaded model (made for other features) is dropped.

        Returns
        -------
        changed : bool
            True: the classifier must be trained again.
        """
        self.params = params
        if self.model_source not in ("", "scribbles"):
            self.forget_model()
            self.message = "The uploaded model uses other features; it is no longer applied."
        return True

    def forget_model(self) -> None:
        self._use_model(None, "")

    def _use_model(self, model: Segmenter | None, source: str, training: tuple | None = None) -> None:
        """Predict with ``model`` (from ``source``) from now on: the predictions of the displayed planes are dropped.

        ``training``: ``model`` is a preview, and these ``(feature rows, labels)`` train the full forest
        that :meth:`full_model` gives; None: ``model`` is the full model.
        """
        self.model, self.model_source, self.proba = model, source, None
        self._full, self._training = (None, training) if training is not None else (model, None)
        self.views.clear()

    def full_model(self) -> Segmenter:
        """The model that downloads, saving and full-resolution labels use.

        Trained on scribbles on the CPU, what the page shows is a preview, the first
        ``PREVIEW_TREES`` trees of this ``LIVE_FOREST``: its remaining trees are trained here, on the
        same feature rows, the first time it is asked for after a training (all its trees, since
        scikit-learn gives the first ones the same seeds again), and kept until the model changes.
        Otherwise (an uploaded model, the GPU) it is :attr:`model` itself.

        Raises
        ------
        RuntimeError
            Without a model.
        """
        if self.model is None:
            raise RuntimeError("No model yet: scribble at least two classes, or upload a model.")
        if self._full is None:
            from sklearn.base import clone

            start = time.perf_counter()
            rows, labels = self._training
            self._full = clone(self.model).set_params(**LIVE_FOREST).fit_features(
                rows, labels, ndim=self.model.ndim_, n_channels=self.model.n_channels_)
            self.timings["train_full"] = time.perf_counter() - start
        return self._full

    @property
    def shows_preview(self) -> bool:
        """Whether the forest shown is a preview, fewer trees than :meth:`full_model`'s."""
        return self._training is not None

    @property
    def views_nbytes(self) -> int:
        """Bytes of the kept predictions of displayed planes."""
        return sum(p.nbytes for p in self.views.values())

    @property
    def training_nbytes(self) -> int:
        """Bytes of the feature rows a preview was trained on, kept for :meth:`full_model`."""
        return 0 if self._training is None else int(self._training[0].nbytes)

    # -- classes -----------------------------------------------------------
    def class_values(self) -> list:
        """The label values of the classes, in the order they are listed."""
        return [c.value for c in self.classes]

    def class_of(self, value: int) -> ImageClass:
        """The class of label ``value``; the first class for a value without one."""
        return next((c for c in self.classes if c.value == value), self.classes[0])

    def add_class(self, name: str | None = None, value: int | None = None) -> int:
        """Add a class with the next palette colour (and the next free value by default); returns its value."""
        k = len(self.classes)
        value = max(self.class_values()) + 1 if value is None else int(value)
        self.classes.append(ImageClass(name or f"class {value}", PALETTE[k % len(PALETTE)], value))
        return value

    # -- training and prediction ------------------------------------------
    def train(self) -> bool:
        """Fit a forest on the scribbled pixels' cached features, those of every frame with strokes.

        Each frame is one image of the training series, as in ``Segmenter.fit([frame0, frame1, ...], ...)``:
        its own features, from the cache or computed now. On the CPU the forest is the preview, the
        first ``PREVIEW_TREES`` trees of ``LIVE_FOREST`` (see :meth:`full_model`); on the GPU all of them.

        Returns
        -------
        trained : bool
            False (with ``message`` saying why) when fewer than two classes are scribbled.
        """
        labels = self.labels().reshape(-1)
        index = np.flatnonzero(labels)
        present = np.unique(labels[index])
        if present.size < 2:
            self.message = "Scribble at least two classes to train the classifier."
            if self.model_source == "scribbles":
                self.forget_model()
            return False
        start = time.perf_counter()
        index = _balanced_sample(index, labels[index], MAX_TRAIN_PER_CLASS)
        rows, labels = self._rows(index), labels[index]
        forest = dict(LIVE_FOREST, n_estimators=PREVIEW_TREES) if self.backend == "cpu" else LIVE_FOREST
        model = Segmenter(backend=self.backend, channel_axis=self.image.channel_axis, **self.params.to_dict(),
                          **forest)
        channels, ndim = self._geometry()
        self._use_model(model.fit_features(rows, labels, ndim=ndim, n_channels=channels), "scribbles",
                        None if forest is LIVE_FOREST else (rows, labels))
        self.timings["train"] = time.perf_counter() - start
        self.timings["train_pixels"] = int(index.size)
        self.message = ""
        return True

    def _rows(self, index: np.ndarray):
        """Feature rows ``(index.size, n_features)`` of increasing flat indices into :meth:`labels`."""
        size = int(np.prod(self.spatial_shape))
        frame_of = index // size
        rows = []
        for t in np.unique(frame_of):
            stack = self.features(int(t))
            rows.append(stack.reshape(-1, stack.shape[-1])[self.be.asarray(index[frame_of == t] - t * size)])
        return self.be.xp.concatenate(rows)

    def apply_model(self, model: Segmenter, source: str) -> None:
        """Use an uploaded model: take its feature parameters and make room for its classes.

        Raises
        ------
        ValueError
            The model was trained on images of another dimensionality or channel count,
            or has more than ``MAX_CLASSES`` classes.
        """
        if model.classes_.size > MAX_CLASSES:
            raise ValueError(f"{source} has {model.classes_.size} classes; the app shows at most {MAX_CLASSES}. "
                             "Use it with gpuseg predict or the Python API.")
        channels, ndim = self._geometry()
        if (model.n_channels_, model.ndim_) != (channels, ndim):
            frames = f" (each of its {self.n_frames} frames)" if self.n_frames > 1 else ""
            raise ValueError(
                f"{source} was trained on {model.ndim_}D images with {model.n_channels_} channel(s); "
                f"this image{frames} is {ndim}D with {channels} channel(s)."
            )
        known = set(self.class_values())
        for value in model.classes_:
            if int(value) not in known:
                self.add_class(value=int(value))
        self.params = model.feature_params
        self._use_model(model, source)

    def top_features(self, n: int = 5) -> list:
        """The shown model's ``n`` most important features (mean decrease in impurity), most important first.

        Returns
        -------
        top : list of (str, float)
            Feature name and its share of the forest's impurity decrease; empty
            without a model or for one whose forest carries no impurity data.
        """
        if self.model is None:
            return []
        try:
            importances = self.model.feature_importances_
            names = self.model.feature_names_
        except AttributeError:
            return []
        order = np.argsort(-importances, kind="stable")[:n]  # ties in feature order
        return [(names[i], float(importances[i])) for i in order]

    def predict_display(self, plane: int = 0, frame: int = 0) -> np.ndarray | None:
        """Class probabilities of the displayed pixels of a plane, in ``proba`` (and its place in ``proba_at``).

        Predicted once per model: the last ``KEPT_VIEWS`` planes shown are kept in ``views``.

        Returns
        -------
        proba : float32 ndarray of shape ``(rows', cols', n_classes)``, or None without a model.
        """
        if self.model is None:
            self.proba = None
            return None
        start = time.perf_counter()
        at = (frame, plane)
        if at not in self.views:
            self.views[at] = self.be.to_host(self.model.predict_proba_features(self.display_features(plane, frame)))
            while len(self.views) > KEPT_VIEWS:
                self.views.popitem(last=False)
        self.views.move_to_end(at)
        self.proba, self.proba_at = self.views[at], at
        self.timings["predict"] = time.perf_counter() - start
        return self.proba

    def predict_full(self, frame: int = 0) -> np.ndarray:
        """Full-resolution segmentation of a frame: label values of ``spatial_shape``, in the model's
        ``label_dtype`` (what ``full_model().predict`` gives for ``image.frame(frame)``).

        Raises
        ------
        RuntimeError
            Without a model.
        """
        return self.be.to_host(self.full_model().predict_features(self.features(frame)))

    def overlay(self, view: str = "segmentation", label: int = 1) -> np.ndarray | None:
        """RGB uint8 image of the displayed plane's prediction, or None without one (see
        :func:`~gpuseg.app.display.colour_prediction` for ``view`` and ``label``)."""
        if self.proba is None:
            return None
        return colour_prediction(self.proba, self.model.classes_, self._colors(), view, label)

    def _colors(self) -> dict:
        return {c.value: c.color for c in self.classes}

    def refresh(self, plane: int = 0, *, frame: int = 0, retrain: bool = True, full: bool = False,
                view: str = "segmentation", label: int = 1) -> str | None:
        """Bring the prediction up to date after a change and encode the overlay: what the app does before
        it redraws.

        Parameters
        ----------
        plane, frame : int
            The plane shown, and its frame.
        retrain : bool
            Strokes or feature parameters changed: train again (or, without strokes, clear).
        full : bool
            A new image, model, plane or frame: the frame's features, and those of the shown pixels
            (:meth:`display_features`), are computed (or taken from the cache) first.
        view, label
            As in :meth:`overlay`.

        Returns
        -------
        overlay : str or None
            ``data:`` URI of the overlay PNG; None without a prediction. With ``retrain``,
            ``timings["stroke_to_overlay"]`` holds the seconds from training to this URI.
        """
        if full:
            self.display_features(plane, frame)  # computed once, here (with the features), for a quick first stroke
        start = time.perf_counter()
        if retrain and self.strokes:
            self.train()
        elif retrain:
            self.clear()
        if self.model is not None and (retrain or self.proba is None or self.proba_at != (frame, plane)):
            self.predict_display(plane, frame)
        elif self.model is None:
            self.proba = None
        source = None
        if self.proba is not None:  # overlay()'s picture, as a palette PNG
            index, palette = prediction_palette(self.proba, self.model.classes_, self._colors(), view, label)
            source = palette_png_source(index, palette)
        if retrain:
            self.timings["stroke_to_overlay"] = time.perf_counter() - start
        return source


def _balanced_sample(index: np.ndarray, labels: np.ndarray, per_class: int) -> np.ndarray:
    """At most ``per_class`` of ``index`` for each class, drawn with a fixed seed, in increasing order."""
    rng = np.random.default_rng(0)
    keep = []
    for c in np.unique(labels):
        members = index[labels == c]
        keep.append(members if members.size <= per_class else rng.choice(members, per_class, replace=False))
    return np.sort(np.concatenate(keep))
