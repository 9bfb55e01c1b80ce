"""Checks that catch likely mistakes: data unlike the training data, an image and its scribbles swapped.

A model records the dtype and intensity range of its training images
(:func:`describe_images`, stored in the model file as ``training_input``);
:func:`warn_if_unlike_training` warns with an :class:`InputMismatchWarning`
when an image to classify has another dtype or a clearly different range (an
integer image is scaled to [0, 1] and a float one is not, so a uint16 model
labels a float32 copy of its own data wrongly). Silence it with
``warnings.simplefilter("ignore", gpuseg.guards.InputMismatchWarning)``, or
``--no-input-check`` on the command line.
"""

from __future__ import annotations

import warnings

import numpy as np

from ._backend import module_of

SAMPLE = 256
"""Side of the central region whose values stand for an image's range."""
RANGE_FACTOR = 10.0
"""A range this many times wider or narrower than the training range, or disjoint from it, is "clearly different"."""
MAX_CLASSES = 255
SWAPPED = "are the image and the scribbles swapped?"


class InputMismatchWarning(UserWarning):
    """An image to classify is unlike the images the model was trained on."""


def sample_range(image) -> tuple:
    """Minimum and maximum of the finite values of a central region of ``image`` (at most :data:`SAMPLE` per axis)."""
    index = tuple(slice(max(0, n // 2 - SAMPLE // 2), max(0, n // 2 - SAMPLE // 2) + SAMPLE) for n in image.shape)
    values = module_of(image).to_host(image[index]).astype(np.float64, copy=False)
    values = values[np.isfinite(values)]
    return (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)


def describe_images(images) -> dict:
    """``{"dtype": ..., "range": [lo, hi]}`` of training images (their central regions' values)."""
    ranges = [sample_range(im) for im in images]
    return {"dtype": str(np.dtype(images[0].dtype)),
            "range": [min(r[0] for r in ranges), max(r[1] for r in ranges)]}


def warn_if_unlike_training(segmenter, image, name="the image") -> None:
    """Warn (:class:`InputMismatchWarning`) when ``image`` has another dtype or a clearly different range than training.

    Models saved before gpuseg recorded their training input are not checked.
    """
    trained = getattr(segmenter, "training_input_", None)
    if trained is None:
        return
    dtype = str(np.dtype(image.dtype))
    lo, hi = trained["range"]
    a, b = sample_range(image)
    span, trained_span = b - a, hi - lo
    different_range = span > 0 and (b < lo or a > hi or (  # a constant sample (blank background) says nothing
        trained_span > 0 and not 1 / RANGE_FACTOR <= span / trained_span <= RANGE_FACTOR))
    if dtype != trained["dtype"] or different_range:
        warnings.warn(
            f"{name} is {dtype} with values in [{a:g}, {b:g}]; the model was trained on {trained['dtype']} images "
            f"with values in [{lo:g}, {hi:g}], and may label it wrongly (integer images are scaled to [0, 1], "
            "float ones are not). Convert it like the training images, or silence this with --no-input-check "
            "(warnings.simplefilter('ignore', gpuseg.guards.InputMismatchWarning)).",
            InputMismatchWarning, stacklevel=3)


def check_scribbles(labels, name: str) -> None:
    """Refuse a label image that looks like an image: over :data:`MAX_CLASSES` classes, or more than 5 % of its labelled pixels.

    Raises
    ------
    ValueError
        Naming the count and asking :data:`SWAPPED`.
    """
    values = module_of(labels).to_host(labels[()])
    labelled = values[values != 0]
    n_classes = np.unique(labelled).size
    if n_classes > MAX_CLASSES or n_classes > 0.05 * labelled.size:
        raise ValueError(f"{name} has {n_classes} distinct label values on {labelled.size} labelled pixels, "
                         f"which looks like an image, not scribbles: {SWAPPED} (train takes IMAGE LABELS pairs).")
