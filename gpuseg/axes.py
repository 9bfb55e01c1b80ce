"""Named axes (OME letters ``T``, ``C``, ``Z``, ``Y``, ``X``): frames of an image as a model reads them.

A model classifies 2D or 3D images with or without a channel axis. An image
file may hold more: ``T`` (time points, classified one after the other), a
``C`` axis anywhere, a ``Z`` axis of one plane. :class:`Frames` cuts such an
image into frames in the model's own layout, read lazily, and says the axes
of the result. :func:`fit` and :func:`predict` are ``Segmenter.fit`` and
``Segmenter.predict``/``predict_proba`` for such images::

    labels = gpuseg.axes.predict(seg, movie, "TCYX")   # shape (T, Y, X)
"""

from __future__ import annotations

from itertools import product

import numpy as np

LETTERS = "TCZYX"
SPATIAL = "ZYX"


def check_axes(axes: str, shape: tuple) -> str:
    """``axes`` in upper case, checked against an array's ``shape``.

    Raises
    ------
    ValueError
        Letters other than ``TCZYX``, a repeated letter, no ``Y`` and ``X``, or
        another count of letters than of axes.
    """
    axes = str(axes).upper()
    if set(axes) - set(LETTERS) or len(set(axes)) != len(axes) or not {"Y", "X"} <= set(axes):
        raise ValueError(f"axes {axes!r}: give one letter of T, C, Z, Y, X per axis, each once, with Y and X "
                         "(e.g. TYX for a time-lapse, YXC for RGB, CZYX for a multichannel stack).")
    if len(axes) != len(shape):
        raise ValueError(f"axes {axes!r} name {len(axes)} axes; the image has {len(shape)} (shape {tuple(shape)}).")
    return axes


def model_layout(ndim: int, channel_axis) -> str:
    """The axes of the images a model of ``ndim`` spatial dimensions reads, e.g. ``"YXC"`` for ``channel_axis=-1``."""
    spatial = SPATIAL[-ndim:]
    if channel_axis is None:
        return spatial
    at = channel_axis % (ndim + 1)
    return spatial[:at] + "C" + spatial[at:]


class AxesView:
    """One frame of an array, its axes reordered, read lazily: slicing reads only the region asked for.

    Parameters
    ----------
    array : array-like
        NumPy, memory-mapped, Zarr, ... (anything supporting basic slicing).
    axes : str
        The array's axes.
    layout : str
        The view's axes, a subset of ``axes``, in the order wanted.
    fixed : dict
        Index of each other axis (letter → int).
    """

    def __init__(self, array, axes: str, layout: str, fixed: dict):
        self.array, self.axes, self.fixed = array, axes, fixed
        self.order = [axes.index(a) for a in layout]
        self.shape = tuple(int(array.shape[i]) for i in self.order)
        self.ndim = len(self.shape)
        self.dtype = array.dtype
        self._perm = [sorted(self.order).index(p) for p in self.order]

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (self.ndim - len(key))
        index = [slice(None)] * len(self.axes)
        for letter, i in self.fixed.items():
            index[self.axes.index(letter)] = i
        for k, at in zip(key, self.order):
            if not isinstance(k, slice):
                raise TypeError("an AxesView is indexed with slices only")
            index[at] = k
        return self.array[tuple(index)].transpose(self._perm)

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self[()], dtype=dtype)

    def over(self, array) -> AxesView:
        """The same frame of ``array``, an array of this one's shape (a reader of it, say)."""
        return AxesView(array, self.axes, "".join(self.axes[i] for i in self.order), self.fixed)


class Frames:
    """An image with named axes, cut into the frames a model of ``ndim`` dimensions and ``channel_axis`` reads.

    Axes the model does not read are looped over: ``T``, and ``Z`` or ``C`` of
    length 1 (``C`` is then dropped from the output, ``Z`` kept with length 1).

    Parameters
    ----------
    image : array-like
    axes : str
        OME letters, one per axis of ``image``.
    ndim : int
        The model's spatial dimensions (2 or 3).
    channel_axis : int or None
        The model's channel axis.

    Attributes
    ----------
    loop : str
        Axes looped over, kept in the output (``"T"``, ``"TZ"``, ``""``).
    loop_shape : tuple of int
    spatial : str
        The model's spatial axes (``"YX"`` or ``"ZYX"``).

    Raises
    ------
    ValueError
        An image the model cannot read frame by frame, with what to change.
    """

    def __init__(self, image, axes: str, ndim: int, channel_axis):
        self.image = image
        self.axes = check_axes(axes, image.shape)
        self.layout = model_layout(ndim, channel_axis)
        self.spatial = SPATIAL[-ndim:]
        size = dict(zip(self.axes, image.shape))
        missing = [a for a in self.layout if a not in size]
        if missing == ["Z"]:
            raise ValueError(f"The model is 3D; this image's axes {self.axes} have no Z. Give --axes (axes=) with a "
                             "Z, or use a 2D model.")
        if missing == ["C"]:
            raise ValueError(f"The model was trained on multichannel images; this image's axes {self.axes} have no "
                             "C. Give --axes (axes=) naming the channel axis C.")
        for letter in set(self.axes) - set(self.layout) - {"T"}:
            if size[letter] != 1:
                hint = ("the model is 2D: name that axis T to classify each plane (e.g. --axes TYX), or train a "
                        "3D model") if letter == "Z" else ("the model was trained on single-channel images: "
                                                          "pick one channel, or train on multichannel images")
                raise ValueError(f"This image's {letter} axis has {size[letter]} planes (axes {self.axes}, shape "
                                 f"{tuple(image.shape)}); {hint}.")
        self.loop = "".join(a for a in self.axes if a not in self.layout and a != "C")
        self.loop_shape = tuple(size[a] for a in self.loop)
        self._dropped = {a: 0 for a in self.axes if a not in self.layout and a not in self.loop}

    def __len__(self) -> int:
        return int(np.prod(self.loop_shape, dtype=np.int64))

    def __iter__(self):
        """``(index, frame)`` pairs: ``index`` into the loop axes, ``frame`` an :class:`AxesView` in the model's layout."""
        for index in self.indices():
            yield index, self.frame(index)

    def indices(self):
        """The frames' indices into the loop axes, in order."""
        return product(*map(range, self.loop_shape))

    def frame(self, index: tuple) -> AxesView:
        """The frame at ``index`` (into the loop axes), in the model's layout."""
        return AxesView(self.image, self.axes, self.layout, {**self._dropped, **dict(zip(self.loop, index))})

    def out_axes(self, proba: bool) -> str:
        """Axes of the result: the loop axes, the spatial axes, and ``C`` (classes, last) for probabilities."""
        return self.loop + self.spatial + ("C" if proba else "")


def frames_of(segmenter, image, axes: str) -> Frames:
    """:class:`Frames` of ``image`` for a trained segmenter."""
    return Frames(image, axes, segmenter.ndim_, segmenter.channel_axis)


def predict(segmenter, image, axes: str, *, proba=False, tile_shape=None, progress=None):
    """Labels or probabilities of an image with named axes, frame by frame over ``T``.

    Parameters
    ----------
    segmenter : gpuseg.Segmenter
        Trained.
    image : array-like
        Any array supporting slicing (NumPy, memory-mapped, Zarr).
    axes : str
        One OME letter per axis of ``image``, e.g. ``"TCYX"``: ``C`` is the
        channel axis (put where the model expects it), ``Z`` makes a frame 3D,
        ``T`` is looped over.
    proba : bool
        Probabilities instead of labels.
    tile_shape : tuple of int, optional
        As in ``Segmenter.predict``.
    progress : bool, optional
        As in ``Segmenter.predict`` (a bar per frame).

    Returns
    -------
    result : ndarray
        Axes ``Frames.out_axes(proba)``: the loop axes (``T``, and a ``Z`` of
        length 1 for a 2D model), then the spatial axes, then the classes for
        probabilities; e.g. ``(T, Y, X)`` labels for ``"TCYX"``.
    """
    frames = frames_of(segmenter, image, axes)
    out = None
    for index, frame in frames:
        result = segmenter.predict_proba(frame, tile_shape=tile_shape, progress=progress) if proba else \
            segmenter.predict(frame, tile_shape=tile_shape, progress=progress)
        if out is None:
            out = np.empty(frames.loop_shape + result.shape, result.dtype)
        out[index] = result
    return out


def training_frames(image, labels, axes: str, channel_axis) -> tuple:
    """The frames of an image with named axes and of its scribbles, as ``Segmenter.fit`` takes a series.

    Parameters
    ----------
    image : array-like
    labels : array-like
        Scribbles with the image's axes but ``C``.
    axes : str
        The image's axes (see :func:`predict`); a ``Z`` of more than one plane makes the frames 3D.
    channel_axis : int or None
        The segmenter's; must be set when ``axes`` holds a ``C`` of more than one channel.

    Returns
    -------
    images : list of AxesView
    scribbles : list of ndarray

    Raises
    ------
    ValueError
        Axes that do not fit the image, or channels without a ``channel_axis``.
    """
    axes = check_axes(axes, image.shape)
    size = dict(zip(axes, image.shape))
    if size.get("C", 1) > 1 and channel_axis is None:
        raise ValueError(f"axes {axes} hold {size['C']} channels: create the Segmenter with channel_axis=-1.")
    ndim = 3 if size.get("Z", 1) > 1 else 2
    images = [f for _, f in Frames(image, axes, ndim, channel_axis)]
    scribbles = [np.asarray(f) for _, f in Frames(labels, axes.replace("C", ""), ndim, None)]
    return images, scribbles


def fit(segmenter, image, labels, axes: str, *, tile_shape=None):
    """Train on an image with named axes: each ``T`` frame is one training image of a series.

    Parameters
    ----------
    segmenter : gpuseg.Segmenter
        Its ``channel_axis`` must be set when ``axes`` holds a ``C`` of more than one channel.
    image, labels, axes
        As in :func:`training_frames`.

    Returns
    -------
    segmenter : gpuseg.Segmenter
    """
    images, scribbles = training_frames(image, labels, axes, segmenter.channel_axis)
    return segmenter.fit(images, scribbles, tile_shape=tile_shape)
