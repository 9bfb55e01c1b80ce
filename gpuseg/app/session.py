"""One browser tab's work: its image, classes, strokes, cached features and model.

Nothing here imports Dash, so every step can be tested, and timed, as plain
Python. The speed of the app rests on three things:

* the feature stack of an image is computed once per image and feature
  parameters and kept in a :class:`FeatureCache` shared by all sessions
  (two tabs on the same image share it);
* training gathers the features of the scribbled pixels only (at most
  ``MAX_TRAIN_PER_CLASS`` per class, drawn at random);
* after a stroke the forest predicts the pixels of the *displayed* image
  only, a strided sample of the full-resolution feature stack; the full
  resolution is predicted for downloads.

:meth:`Session.refresh` is what the app does after every change before it
redraws, and what :func:`gpuseg.app.latency.measure_stroke_to_overlay` times.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from .._backend import backend_module, resolve_backend
from ..features import FeatureParams, multiscale_features
from ..segmenter import Segmenter
from .display import PALETTE, colour_prediction, display_scale, downsample, png_source, to_display_uint8
from .store import FeatureCache
from .strokes import Stroke, parse_path, rasterise

_EDIT = re.compile(r"^shapes\[(\d+)\]\.path$")  # a relayout key editing one stroke's path
MAX_CLASSES = 256  # classes an uploaded model may bring: each is a row of the page's class list
MAX_TRAIN_PER_CLASS = 3_000  # pixels along one stroke are alike: more only slows training
LIVE_FOREST = {"n_estimators": 32, "max_depth": 10, "max_samples": 0.5, "random_state": 0}


@dataclass
class ImageClass:
    """A class the user scribbles, drawn in ``color``; ``value`` is its label value (positive)."""

    name: str
    color: str
    value: int = field(default=0, compare=False)


@dataclass
class Session:
    """What one browser tab works on: its image, classes, strokes, features and model.

    Parameters
    ----------
    image : ndarray of shape ``spatial_shape + (n_channels,)``
        ``n_channels`` 1 or 3; see :func:`gpuseg.app.files.read_image`.
    name : str
        Shown in the page and used for download names.
    cache : FeatureCache
    backend : {"auto", "cpu", "gpu"}
    """

    image: np.ndarray
    name: str
    cache: FeatureCache
    backend: str = "auto"
    params: FeatureParams = field(default_factory=FeatureParams)
    classes: list = field(default_factory=lambda: [ImageClass("background", PALETTE[0], 1),
                                                   ImageClass("foreground", PALETTE[1], 2)])
    strokes: list = field(default_factory=list)
    model: Segmenter | None = None
    model_source: str = ""  # "scribbles" or the uploaded file's name
    proba: np.ndarray | None = None  # displayed plane's class probabilities (rows, cols, K)
    proba_plane: int = 0
    timings: dict = field(default_factory=dict)
    message: str = ""
    shown_tokens: tuple = (0, 0)  # the (image, model) upload counters the page last drew
    recovered: str = ""  # a dropped session's strokes (see SessionStore), for download
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _next_id: int = 0

    def __post_init__(self):
        self.backend = resolve_backend(self.backend, quiet=True)
        self.be = backend_module(self.backend)
        self.set_image(self.image, self.name)

    def set_image(self, image: np.ndarray, name: str) -> None:
        """Work on another image: strokes are dropped; a model is kept if it fits the image."""
        digest = hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=16).hexdigest()
        self.image, self.name, self.strokes, self.proba = image, name, [], None
        self._key = (digest, image.shape, str(image.dtype))
        if self.model is not None and (self.model.n_channels_, self.model.ndim_) != (image.shape[-1], image.ndim - 1):
            self.forget_model()

    # -- the image ---------------------------------------------------------
    @property
    def spatial_shape(self) -> tuple:
        return self.image.shape[:-1]

    @property
    def n_planes(self) -> int:
        return self.spatial_shape[0] if len(self.spatial_shape) == 3 else 1

    @property
    def scale(self) -> int:
        return display_scale(self.spatial_shape)

    @property
    def channel_axis(self) -> int | None:
        return -1 if self.image.shape[-1] > 1 else None

    def plane(self, z: int) -> np.ndarray:
        """Full-resolution ``(rows, cols, channels)`` plane ``z`` (the image itself when 2D)."""
        return self.image[z] if self.image.ndim == 4 else self.image

    def display_image(self, z: int = 0) -> np.ndarray:
        """Displayed RGB uint8 image of plane ``z``, of shape ``(ceil(rows/scale), ceil(cols/scale), 3)``."""
        plane = downsample(to_display_uint8(self.plane(z)), self.scale)
        return np.repeat(plane, 3, axis=-1) if plane.shape[-1] == 1 else plane

    # -- features ----------------------------------------------------------
    def features(self):
        """Full-resolution feature stack ``spatial_shape + (n_features,)``, computed once and cached."""
        image = self.image if self.channel_axis is not None else self.image[..., 0]

        def compute():
            return multiscale_features(image, channel_axis=self.channel_axis, backend=self.backend,
                                       **self.params.to_dict())

        start = time.perf_counter()
        stack, cached = self.cache.get((self._key, self.params, self.backend), compute)
        if not cached:
            self.timings["features"] = time.perf_counter() - start
        elif "features" not in self.timings:
            self.timings["features"] = None  # computed earlier, for this image or another session
        return stack

    def display_features(self, z: int = 0):
        """Features at the displayed pixels of plane ``z``: the block centres, ``(rows', cols', n_features)``."""
        stack = self.features()
        plane = stack[z] if stack.ndim == 4 else stack
        half = self.scale // 2
        return plane[half::self.scale, half::self.scale]

    # -- strokes -----------------------------------------------------------
    def labels(self) -> np.ndarray:
        """Full-resolution scribble labels of ``spatial_shape`` (see :func:`~gpuseg.app.strokes.rasterise`)."""
        return rasterise(self.strokes, self.spatial_shape, self.scale)

    def add_stroke(self, path: str, label: int, width: float, plane: int = 0) -> Stroke:
        """Append a stroke drawn on ``plane`` with class ``label``; returns it."""
        stroke = Stroke(self._next_id, plane, int(label), parse_path(path), path, float(width))
        self._next_id += 1
        self.strokes.append(stroke)
        return stroke

    def sync_shapes(self, shapes: list, plane: int, default_label: int, width: float) -> bool:
        """Make the strokes of ``plane`` what the figure's shapes say (after a draw or an erase).

        A shape named ``s<id>`` is an existing stroke (its path may have been
        edited); a shape named ``c<label>`` (or unnamed) was just drawn with
        that class (or ``default_label``). Strokes of ``plane`` missing from
        ``shapes`` were erased.

        Returns
        -------
        changed : bool
        """
        before = [(s.id, s.path) for s in self.strokes]
        by_id = {s.id: s for s in self.strokes if s.plane == plane}
        kept = set()
        for shape in shapes:
            if shape.get("type", "path") != "path" or not shape.get("path"):
                continue
            name = str(shape.get("name") or "")
            if name[:1] == "s" and name[1:].isdigit() and int(name[1:]) in by_id:
                stroke = by_id[int(name[1:])]
                if stroke.path != shape["path"]:
                    stroke.points, stroke.path = parse_path(shape["path"]), shape["path"]
                kept.add(stroke.id)
            else:
                label = int(name[1:]) if name[:1] == "c" and name[1:].isdigit() else default_label
                label = label if label in self.class_values() else self.class_values()[0]
                kept.add(self.add_stroke(shape["path"], label, width, plane).id)
        self.strokes = [s for s in self.strokes if s.plane != plane or s.id in kept]
        return before != [(s.id, s.path) for s in self.strokes]

    def apply_figure_edits(self, relayout: dict, plane: int, default_label: int, width: float) -> bool:
        """Apply what a figure's ``relayoutData`` says of the strokes of ``plane``: shapes drawn, erased
        (``shapes``) or edited (``shapes[i].path``); other keys (a zoom, a pan) change nothing.

        Returns
        -------
        changed : bool
        """
        changed = "shapes" in relayout and self.sync_shapes(relayout["shapes"], plane, default_label, width)
        for key, value in relayout.items():
            match = _EDIT.match(key)
            if match:
                changed |= self.edit_path(plane, int(match.group(1)), value)
        return changed

    def edit_path(self, plane: int, index: int, path: str) -> bool:
        """Apply a ``shapes[index].path`` edit of the figure showing ``plane``."""
        on_plane = [s for s in self.strokes if s.plane == plane]
        if not 0 <= index < len(on_plane) or on_plane[index].path == path:
            return False
        on_plane[index].points, on_plane[index].path = parse_path(path), path
        return True

    def undo(self) -> bool:
        """Remove the latest stroke; False when there is none."""
        return self.strokes.pop() is not None if self.strokes else False

    def clear(self) -> None:
        """Remove every stroke and the model trained on them."""
        self.strokes = []
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
        self.model, self.model_source, self.proba = None, "", None

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
        """Fit a forest on the scribbled pixels' cached features.

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
        stack = self.features()
        rows = stack.reshape(-1, stack.shape[-1])[self.be.asarray(index)]
        model = Segmenter(backend=self.backend, channel_axis=self.channel_axis, **self.params.to_dict(),
                          **LIVE_FOREST)
        self.model = model.fit_features(rows, labels[index], ndim=len(self.spatial_shape),
                                        n_channels=self.image.shape[-1])
        self.model_source = "scribbles"
        self.timings["train"] = time.perf_counter() - start
        self.timings["train_pixels"] = int(index.size)
        self.message = ""
        return True

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
        channels, ndim = self.image.shape[-1], len(self.spatial_shape)
        if model.n_channels_ != channels or model.ndim_ != ndim:
            raise ValueError(
                f"{source} was trained on {model.ndim_}D images with {model.n_channels_} channel(s); "
                f"this image is {ndim}D with {channels}."
            )
        known = set(self.class_values())
        for value in model.classes_:
            if int(value) not in known:
                self.add_class(value=int(value))
        self.params = model.feature_params
        self.model, self.model_source, self.proba = model, source, None

    def top_features(self, n: int = 5) -> list:
        """The model's ``n`` most important features (mean decrease in impurity), most important first.

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

    def predict_display(self, z: int = 0) -> np.ndarray | None:
        """Class probabilities of the displayed pixels of plane ``z``, kept in ``proba``.

        Returns
        -------
        proba : float32 ndarray of shape ``(rows', cols', n_classes)``, or None without a model.
        """
        if self.model is None:
            self.proba = None
            return None
        start = time.perf_counter()
        self.proba = self.be.to_host(self.model.predict_proba_features(self.display_features(z)))
        self.proba_plane = z
        self.timings["predict"] = time.perf_counter() - start
        return self.proba

    def predict_full(self) -> np.ndarray:
        """Full-resolution segmentation: label values of ``spatial_shape``, in the model's ``label_dtype``.

        Raises
        ------
        RuntimeError
            Without a model.
        """
        if self.model is None:
            raise RuntimeError("No model yet: scribble at least two classes, or upload a model.")
        return self.be.to_host(self.model.predict_features(self.features()))

    def overlay(self, view: str = "segmentation", label: int = 1) -> np.ndarray | None:
        """RGB uint8 image of the displayed plane's prediction, or None without one (see
        :func:`~gpuseg.app.display.colour_prediction` for ``view`` and ``label``)."""
        if self.proba is None:
            return None
        colors = {c.value: c.color for c in self.classes}
        return colour_prediction(self.proba, self.model.classes_, colors, view, label)

    def refresh(self, plane: int = 0, *, retrain: bool = True, full: bool = False, view: str = "segmentation",
                label: int = 1) -> str | None:
        """Bring the prediction up to date after a change and encode the overlay: what the app does before
        it redraws.

        Parameters
        ----------
        plane : int
            The plane shown.
        retrain : bool
            Strokes or feature parameters changed: train again (or, without strokes, clear).
        full : bool
            A new image, model or plane: the features are computed (or taken from the cache) first.
        view, label
            As in :meth:`overlay`.

        Returns
        -------
        overlay : str or None
            ``data:`` URI of the overlay PNG; None without a prediction. With ``retrain``,
            ``timings["stroke_to_overlay"]`` holds the seconds from training to this URI.
        """
        if full:
            self.features()  # computed once, here, so that the first stroke is quick
        start = time.perf_counter()
        if retrain and self.strokes:
            self.train()
        elif retrain:
            self.clear()
        if self.model is not None and (retrain or full or self.proba is None):
            self.predict_display(plane)
        elif self.model is None:
            self.proba = None
        rgb = self.overlay(view, label)
        source = None if rgb is None else png_source(rgb)
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
