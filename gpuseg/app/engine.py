"""The app's engine: per-session state, cached features, strokes, training and prediction.

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

Coordinates: the figure shows the image so that its data coordinates are the
pixel coordinates of the full-resolution image (``x`` = column, ``y`` = row),
whatever the display scale, so stroke paths need no conversion.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import cv2
import numpy as np

from .. import _backend
from ..features import FeatureParams, multiscale_features
from ..segmenter import Segmenter

COLORS = {"red": "#e6194b", "green": "#3cb44b", "blue": "#4363d8", "orange": "#f58231", "purple": "#911eb4",
          "cyan": "#42d4f4", "magenta": "#f032e6", "lime": "#bfef45", "pink": "#fabed4", "teal": "#469990",
          "brown": "#9a6324", "maroon": "#800000"}
PALETTE = tuple(COLORS.values())
DISPLAY_MAX = 640  # longest side of the displayed image, in its pixels
MAX_TRAIN_PER_CLASS = 3_000  # pixels along one stroke are alike: more only slows training
LIVE_FOREST = {"n_estimators": 32, "max_depth": 10, "max_samples": 0.5, "random_state": 0}


@dataclass
class ImageClass:
    """A class the user scribbles: its label value is its position in the list plus one."""

    name: str
    color: str


@dataclass
class Stroke:
    """One scribble.

    Attributes
    ----------
    id : int
        Unique within the session; the figure names the stroke's shape ``s<id>``.
    plane : int
        Plane of a 3D stack it was drawn on (0 for a 2D image).
    label : int
        Class value, 1..K.
    points : ndarray of shape (n, 2), float64
        ``(x, y)`` = (column, row) in full-resolution pixels.
    path : str
        The SVG path as the figure holds it.
    width : float
        Line width in displayed pixels.
    """

    id: int
    plane: int
    label: int
    points: np.ndarray
    path: str
    width: float


_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


def parse_path(path: str) -> np.ndarray:
    """Vertices of a plotly ``drawopenpath`` SVG path (``M x,y L x,y ...``).

    Returns
    -------
    points : ndarray of shape (n, 2), float64
        ``(x, y)`` pairs, in the figure's data coordinates.

    Raises
    ------
    ValueError
        A path without any vertex or with an odd count of numbers.
    """
    numbers = re.findall(_NUMBER, path or "")
    if not numbers or len(numbers) % 2:
        raise ValueError(f"Not a drawn path: {path[:60]!r}")
    return np.asarray(numbers, dtype=np.float64).reshape(-1, 2)


def rasterise(strokes, spatial_shape: tuple, scale: float) -> np.ndarray:
    """Label image of strokes drawn as thick polylines; later strokes cover earlier ones.

    Parameters
    ----------
    strokes : iterable of Stroke
    spatial_shape : tuple
        ``(rows, cols)`` or ``(planes, rows, cols)``.
    scale : float
        Full-resolution pixels per displayed pixel (a stroke's width is in displayed pixels).

    Returns
    -------
    labels : uint8 ndarray of shape ``spatial_shape``
        0 where nothing is drawn, else the stroke's class.
    """
    labels = np.zeros(spatial_shape, np.uint8)
    planes = labels if labels.ndim == 3 else labels[None]
    shift = 4  # sub-pixel precision of the vertices: 1/16 pixel
    for s in strokes:
        pts = np.round(s.points * (1 << shift)).astype(np.int32).reshape(-1, 1, 2)
        thickness = max(1, int(round(s.width * scale)))
        cv2.polylines(planes[s.plane], [pts], False, int(s.label), thickness=thickness,
                      lineType=cv2.LINE_8, shift=shift)
    return labels


class FeatureCache:
    """Feature stacks by (image, parameters, backend), least recently used dropped past a byte budget.

    Parameters
    ----------
    max_bytes : int
        Budget for all stacks together; one stack larger than it is still kept
        (alone), since the session that asked for it needs it.
    """

    def __init__(self, max_bytes: int = 4 << 30):
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key, compute):
        """The stack for ``key``, from ``compute()`` when not cached; and whether it was cached."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key], True
        value = compute()
        with self._lock:
            self._items[key] = value
            while len(self._items) > 1 and sum(v.nbytes for v in self._items.values()) > self.max_bytes:
                self._items.popitem(last=False)
        return value, False

    def __len__(self):
        return len(self._items)


def display_scale(spatial_shape: tuple, display_max: int = DISPLAY_MAX) -> int:
    """Integer downsampling factor that fits an image's rows and columns in ``display_max``."""
    return max(1, -(-max(spatial_shape[-2:]) // display_max))


def to_display_uint8(image: np.ndarray) -> np.ndarray:
    """Scale a channels-last image to uint8 for display (min to max, per image)."""
    if image.dtype == np.uint8:
        return image
    lo, hi = float(image.min()), float(image.max())
    out = (image.astype(np.float32) - lo) * (255.0 / (hi - lo) if hi > lo else 0.0)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def downsample(plane: np.ndarray, scale: int) -> np.ndarray:
    """Block means of a ``(rows, cols, channels)`` uint8 plane; edge blocks padded by replication."""
    if scale == 1:
        return plane
    rows, cols = (-(-n // scale) for n in plane.shape[:2])
    padded = np.pad(plane, ((0, rows * scale - plane.shape[0]), (0, cols * scale - plane.shape[1]), (0, 0)),
                    mode="edge")
    blocks = padded.reshape(rows, scale, cols, scale, -1).mean(axis=(1, 3))
    return (blocks + 0.5).astype(np.uint8)


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
    classes: list = field(default_factory=lambda: [ImageClass("background", PALETTE[0]),
                                                   ImageClass("foreground", PALETTE[1])])
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
        self.backend = _backend.resolve_backend(self.backend, quiet=True)
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
        """Full-resolution scribble labels (uint8, ``spatial_shape``)."""
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
                label = min(max(label, 1), len(self.classes))
                kept.add(self.add_stroke(shape["path"], label, width, plane).id)
        self.strokes = [s for s in self.strokes if s.plane != plane or s.id in kept]
        return before != [(s.id, s.path) for s in self.strokes]

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

    def forget_model(self) -> None:
        self.model, self.model_source, self.proba = None, "", None

    # -- classes -----------------------------------------------------------
    def add_class(self, name: str | None = None) -> int:
        """Add a class with the next palette colour; returns its label value."""
        k = len(self.classes)
        self.classes.append(ImageClass(name or f"class {k + 1}", PALETTE[k % len(PALETTE)]))
        return k + 1

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
        rows = stack.reshape(-1, stack.shape[-1])[_backend.to_backend(index, self.backend)]
        model = Segmenter(backend=self.backend, channel_axis=self.channel_axis, **self.params.to_dict(),
                          **LIVE_FOREST)
        # fit_features sees feature rows only; the image geometry a model file records is set as fit() sets it.
        model.ndim_, model.n_channels_ = len(self.spatial_shape), self.image.shape[-1]
        self.model = model.fit_features(rows, labels[index])
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
            The model was trained on images of another dimensionality or channel count.
        """
        channels, ndim = self.image.shape[-1], len(self.spatial_shape)
        if model.n_channels_ != channels or model.ndim_ != ndim:
            raise ValueError(
                f"{source} was trained on {model.ndim_}D images with {model.n_channels_} channel(s); "
                f"this image is {ndim}D with {channels}."
            )
        while len(self.classes) < int(model.classes_.max()):
            self.add_class()
        self.params = model.feature_params
        self.model, self.model_source, self.proba = model, source, None

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
        self.proba = _backend.to_host(self.model.predict_proba_features(self.display_features(z)))
        self.proba_plane = z
        self.timings["predict"] = time.perf_counter() - start
        return self.proba

    def predict_full(self) -> np.ndarray:
        """Full-resolution segmentation, label values in ``spatial_shape`` (uint8).

        Raises
        ------
        RuntimeError
            Without a model.
        """
        if self.model is None:
            raise RuntimeError("No model yet: scribble at least two classes, or upload a model.")
        proba = _backend.to_host(self.model.predict_proba_features(self.features()))
        return self.model.classes_.astype(np.uint8)[np.argmax(proba, axis=-1)]

    def overlay(self, view: str = "segmentation", label: int = 1) -> np.ndarray | None:
        """RGB uint8 image of the displayed plane's prediction, or None without one.

        Parameters
        ----------
        view : {"segmentation", "probability", "uncertainty"}
            Class colours; the probability of class ``label`` (viridis); or the
            forest's uncertainty ``(1 - p_max) * K / (K - 1)`` (magma).
        label : int
            The class whose probability is shown.
        """
        if self.proba is None:
            return None
        proba, classes = self.proba, self.model.classes_
        if view == "probability":
            k = np.searchsorted(classes, label)
            p = proba[..., k] if k < classes.size and classes[k] == label else np.zeros(proba.shape[:-1], np.float32)
            return _colormap(p, "viridis")
        if view == "uncertainty":
            n = proba.shape[-1]
            return _colormap((1.0 - proba.max(axis=-1)) * n / (n - 1), "magma")
        lut = np.array([_rgb(self.classes[min(int(c), len(self.classes)) - 1].color) for c in classes], np.uint8)
        return lut[np.argmax(proba, axis=-1)]


def _balanced_sample(index: np.ndarray, labels: np.ndarray, per_class: int) -> np.ndarray:
    """At most ``per_class`` of ``index`` for each class, drawn with a fixed seed, in increasing order."""
    rng = np.random.default_rng(0)
    keep = []
    for c in np.unique(labels):
        members = index[labels == c]
        keep.append(members if members.size <= per_class else rng.choice(members, per_class, replace=False))
    return np.sort(np.concatenate(keep))


def _rgb(color: str) -> tuple:
    color = color.lstrip("#")
    return tuple(int(color[i:i + 2], 16) for i in (0, 2, 4))


_LUTS: dict = {}


def _colormap(values: np.ndarray, name: str) -> np.ndarray:
    """RGB uint8 of values in [0, 1] through a plotly sequential colour scale."""
    if name not in _LUTS:
        from plotly.colors import sample_colorscale, sequential

        scale = {"viridis": sequential.Viridis, "magma": sequential.Magma}[name]
        colors = sample_colorscale(scale, np.linspace(0, 1, 256), colortype="tuple")
        _LUTS[name] = np.round(np.asarray(colors) * 255).astype(np.uint8)
    index = np.clip(np.asarray(values) * 255 + 0.5, 0, 255).astype(np.uint8)
    return _LUTS[name][index]


class SessionStore:
    """Sessions by id, bounded by count, memory and idle time; a dropped session's tab is told, and its strokes kept.

    When a session is made, sessions idle for over ``max_idle_s`` are dropped
    first, then the least recently used while more than ``max_sessions`` are
    kept or their images and overlays take over ``max_bytes`` (an image shared
    by sessions counted once); the one being made is never dropped. A dropped
    session leaves a note (a few kilobytes: why, its classes and strokes as
    JSON, see :func:`work_record`); the next request of its tab gets a new
    session whose ``message`` says what happened and whose ``recovered`` holds
    that record, for the tab to download.

    Parameters
    ----------
    factory : callable
        ``factory() -> Session`` for an id not (or no longer) stored.
    max_sessions : int
    max_bytes : int
    max_idle_s : float
    clock : callable
        Seconds, increasing (``time.monotonic``).
    """

    MAX_NOTES = 1024

    def __init__(self, factory, max_sessions: int = 32, max_bytes: int = 2 << 30, max_idle_s: float = 4 * 3600,
                 clock=time.monotonic):
        self.factory = factory
        self.max_sessions = int(max_sessions)
        self.max_bytes = int(max_bytes)
        self.max_idle_s = float(max_idle_s)
        self.clock = clock
        self._sessions: OrderedDict = OrderedDict()  # id -> [session, last use]
        self._notes: OrderedDict = OrderedDict()  # id of a dropped session -> (why, record)
        self._lock = threading.Lock()

    def get(self, session_id: str) -> Session:
        """The session of ``session_id``, created (with the starting image) when missing."""
        now = self.clock()
        with self._lock:
            if session_id in self._sessions:
                entry = self._sessions[session_id]
                entry[1] = now
                self._sessions.move_to_end(session_id)
                return entry[0]
        session = self.factory()
        with self._lock:
            if session_id in self._sessions:  # another request of the tab made it meanwhile
                return self._sessions[session_id][0]
            note = self._notes.pop(session_id, None)
            if note is not None:
                why, record = note
                session.recovered = record
                session.message = (f"This tab's previous session was closed by the server ({why}): its image and "
                                   f"model are gone. Its {len(json.loads(record)['strokes'])} strokes were kept: "
                                   "'strokes (JSON)' downloads them.")
            self._sessions[session_id] = [session, now]
            self._evict(now, keep=session_id)
        return session

    def _evict(self, now: float, keep: str) -> None:
        for sid, (session, used) in list(self._sessions.items()):
            if sid != keep and now - used > self.max_idle_s:
                self._drop(sid, f"idle for over {self.max_idle_s / 3600:g} h")
        while len(self._sessions) > 1 and (len(self._sessions) > self.max_sessions or self.nbytes() > self.max_bytes):
            oldest = next(sid for sid in self._sessions if sid != keep)
            self._drop(oldest, f"the server keeps at most {self.max_sessions} sessions and "
                               f"{self.max_bytes / 2**30:g} GiB of images; this one was the least recently used")

    def _drop(self, session_id: str, why: str) -> None:
        session, _ = self._sessions.pop(session_id)
        if session.strokes:
            self._notes[session_id] = (why, work_record(session))
            while len(self._notes) > self.MAX_NOTES:
                self._notes.popitem(last=False)

    def nbytes(self) -> int:
        """Bytes of the stored sessions' images and overlays, each image counted once."""
        images = {id(s.image): s.image.nbytes for s, _ in self._sessions.values()}
        overlays = sum(s.proba.nbytes for s, _ in self._sessions.values() if s.proba is not None)
        return sum(images.values()) + overlays

    def __contains__(self, session_id):
        return session_id in self._sessions

    def __len__(self):
        return len(self._sessions)


def work_record(session) -> str:
    """A session's scribbling work as JSON: image name, classes and strokes (plane, label, SVG path, width).

    A session that recovered a dropped one's record holds it under ``"recovered"``.
    """
    from dataclasses import asdict

    record = {
        "image": session.name,
        "classes": [asdict(c) for c in session.classes],
        "strokes": [{"plane": s.plane, "label": s.label, "path": s.path, "width": s.width} for s in session.strokes],
    }
    if session.recovered:
        record["recovered"] = json.loads(session.recovered)
    return json.dumps(record)


def stroke_to_overlay(session: Session, path: str, label: int, width: float = 8.0, plane: int = 0) -> float:
    """Add a stroke and do what the app does before showing the new overlay; seconds taken.

    Rasterise the strokes, train on the scribbled pixels' cached features,
    predict the displayed pixels and colour them (PNG encoding included).
    """
    from .files import encode_png

    start = time.perf_counter()
    session.add_stroke(path, label, width, plane)
    if session.train():
        session.predict_display(plane)
        encode_png(session.overlay())
    elapsed = time.perf_counter() - start
    session.timings["stroke_to_overlay"] = elapsed
    return elapsed


def measure_stroke_to_overlay(image, *, channel_axis=None, backend: str = "auto", repeats: int = 3,
                              width: float = 8.0) -> float:
    """Median seconds from a new stroke to its overlay, features already cached (as in the app).

    Two strokes of two classes are drawn first (untimed) along the top and
    bottom quarters of the image, together with the feature stack; then
    ``repeats`` strokes, alternating classes, are each timed by
    :func:`stroke_to_overlay`.

    Parameters
    ----------
    image : ndarray
        2D ``(rows, cols)`` image, plus a channel axis at ``channel_axis``.
    channel_axis : int, optional
    backend : {"auto", "cpu", "gpu"}
    repeats : int
    width : float
        Stroke width in displayed pixels.

    Returns
    -------
    seconds : float
    """
    image = np.asarray(image)
    image = image[..., None] if channel_axis is None else np.moveaxis(image, channel_axis, -1)
    session = Session(image, "benchmark", FeatureCache(), backend)
    rows, cols = session.spatial_shape[-2:]

    def line(frac_row, start, stop):
        ys = np.full(12, frac_row * rows)
        xs = np.linspace(start * cols, stop * cols, 12)
        return "M" + "L".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys))

    session.features()
    session.add_stroke(line(0.25, 0.1, 0.9), 1, width)
    session.add_stroke(line(0.75, 0.1, 0.9), 2, width)
    times = [stroke_to_overlay(session, line(0.3 + 0.4 * (i % 2) + 0.02 * i, 0.2, 0.8), 1 + i % 2, width)
             for i in range(repeats)]
    return float(np.median(times))
