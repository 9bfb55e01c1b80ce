"""An input opened for prediction: its array, the axes it has (given, or read from the file), its frames for the model."""

from __future__ import annotations

import os
from typing import NamedTuple

from .axes import Frames, frames_of, model_layout
from .guards import warn_if_unlike_training
from .image_io import open_image_and_multiscale
from .metadata import NOTHING, Metadata, read_metadata

__all__ = ["Source", "open_source"]


class Source(NamedTuple):
    """An input opened for prediction: its array, its frames for the model, and the file's calibration."""

    path: object
    array: object
    frames: Frames
    metadata: Metadata
    ome: object


def open_source(segmenter, image, axes=None) -> Source:
    """Open ``image`` (a path, a URL or an array) and cut it into the model's frames.

    The axes are ``axes`` when given, else what the file declares
    (:func:`gpuseg.metadata.read_metadata`), else the model's own layout
    (e.g. ``YXC``) when the image has as many axes.

    Raises
    ------
    ValueError
        Axes that are not given, not in the file and not guessable, or an image
        the model cannot read (see :class:`gpuseg.axes.Frames`).
    """
    path = image if isinstance(image, (str, os.PathLike)) else None
    array, ome = open_image_and_multiscale(path) if path is not None else (image, None)
    meta = read_metadata(path, array.shape) if path is not None else NOTHING
    layout = model_layout(segmenter.ndim_, segmenter.channel_axis)
    if axes is None:
        axes = meta.axes or (layout if len(layout) == len(array.shape) else None)
    if axes is None:
        raise ValueError(f"{path if path is not None else 'The image'} (shape {tuple(array.shape)}) does not say "
                         f"its axes, and the model reads {layout} images; give them with --axes (axes=), e.g. "
                         f"T{layout} for a time series.")
    frames = frames_of(segmenter, array, axes)
    warn_if_unlike_training(segmenter, next(iter(frames))[1], path if path is not None else "the image")
    return Source(path, array, frames, meta, ome)
