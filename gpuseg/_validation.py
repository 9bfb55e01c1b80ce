"""Checks of user input, each failing with a message that names the problem and the fix."""

from __future__ import annotations

import warnings

import numpy as np

MIN_SIDE = 3  # np.gradient of np.gradient needs a few pixels along every axis
MAX_CLASS = 2**63 - 1  # classes are int64


def spatial_shape(shape: tuple, channel_axis: int | None) -> tuple:
    """Spatial part of an image shape, after checking ``channel_axis`` and ``ndim``."""
    ndim = len(shape)
    if channel_axis is not None:
        if isinstance(channel_axis, bool) or not isinstance(channel_axis, (int, np.integer)):
            raise TypeError(f"channel_axis must be an integer or None, got {channel_axis!r}.")
        if not -ndim <= channel_axis < ndim:
            raise ValueError(
                f"channel_axis={channel_axis} is out of range for an image with {ndim} axes "
                f"(shape {tuple(shape)}); use an axis in [{-ndim}, {ndim - 1}], or None for a grayscale image."
            )
        axis = channel_axis % ndim
        spatial = tuple(s for i, s in enumerate(shape) if i != axis)
    else:
        spatial = tuple(shape)
    if len(spatial) not in (2, 3):
        hint = " If one axis holds channels (e.g. RGB), pass channel_axis." if channel_axis is None else ""
        raise ValueError(
            f"Expected a 2D or 3D image (plus a channel axis if channel_axis is given), got spatial shape "
            f"{spatial} from shape {tuple(shape)}.{hint}"
        )
    if min(spatial) < MIN_SIDE:
        raise ValueError(
            f"The image is too small: spatial shape {spatial}; every spatial axis needs at least "
            f"{MIN_SIDE} pixels. If an axis of length {min(spatial)} holds channels, pass channel_axis."
        )
    return spatial


def warn_if_rgb(shape: tuple, channel_axis: int | None) -> None:
    """Warn that an ``(H, W, 3)`` or ``(H, W, 4)`` image without ``channel_axis`` is taken as a volume."""
    if channel_axis is None and len(shape) == 3 and shape[-1] in (3, 4) and min(shape[:2]) >= 16:
        warnings.warn(
            f"The image of shape {tuple(shape)} looks like RGB(A) but is taken as a 3D volume of {shape[0]} "
            f"planes of {shape[1]}x{shape[2]}, because channel_axis is None; pass channel_axis=-1 if its "
            "last axis holds colour channels.", UserWarning, stacklevel=3)


def check_dtype(dtype) -> None:
    if np.dtype(dtype).kind not in "biuf":
        raise TypeError(
            f"The image has dtype {np.dtype(dtype)}; gpuseg needs a real-valued image "
            "(bool, integer or float). Convert it, e.g. with image.astype(np.float32)."
        )


def prepare_image(image, channel_axis, be):
    """Check an image and return it scaled to float32, channels last.

    Parameters
    ----------
    image : array (of the backend ``be``)
        Spatial shape 2D or 3D, with a channel axis at ``channel_axis``.
    channel_axis : int or None
    be : module
        Backend primitives.

    Returns
    -------
    image : float32 array of shape ``spatial_shape + (n_channels,)``
    """
    check_dtype(image.dtype)
    spatial_shape(image.shape, channel_axis)
    if channel_axis is None:
        image = image[..., None]
    else:
        image = be.xp.moveaxis(image, channel_axis, -1)
    image = be.as_float32(image)
    if not be.all_finite(image):
        raise ValueError(
            "The image holds NaN or infinite values; replace them first "
            "(e.g. np.nan_to_num(image)) or crop them away."
        )
    return image


def check_labels(labels, spatial: tuple) -> np.ndarray:
    """Check scribble labels (host array) and return them as int64.

    ``0`` is unlabelled; classes are positive integers. Raises if the shape differs
    from the image's spatial shape, if values are negative or not whole numbers,
    or if fewer than two classes are scribbled.
    """
    labels = np.asarray(labels)
    if labels.shape != tuple(spatial):
        raise ValueError(
            f"labels have shape {labels.shape} but the image's spatial shape is {tuple(spatial)}; "
            "draw the scribbles on an array of the image's shape (without its channel axis)."
        )
    if labels.dtype.kind not in "biuf":
        raise TypeError(f"labels must be an integer array, got dtype {labels.dtype}.")
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise ValueError(
                "labels must be whole numbers (0 = unlabelled, 1..K = classes); "
                "got non-integer values. Convert with labels.astype(int) after fixing them."
            )
    if labels.dtype.kind in "if" and labels.size and labels.min() < 0:
        raise ValueError(
            f"labels must be >= 0 (0 = unlabelled, positive = classes); found {labels.min()}."
        )
    if labels.dtype.kind in "uf" and labels.size and labels.max() >= MAX_CLASS + 1:
        raise ValueError(
            f"labels must be at most 2**63 - 1 (gpuseg stores classes as int64); found {labels.max()}. "
            "Number the classes 1, 2, ... instead."
        )
    return labels.astype(np.int64, copy=False)


def check_classes(classes: np.ndarray) -> None:
    """Refuse training data without at least two scribbled classes."""
    if classes.size == 0:
        raise ValueError(
            "No labelled pixel: labels are all 0 (unlabelled). Scribble at least two classes "
            "with values 1, 2, ..."
        )
    if classes.size == 1:
        raise ValueError(
            f"Only one class ({int(classes[0])}) is scribbled; a classifier needs at least two. "
            "Scribble another class (another positive value) too."
        )


def image_series(image, labels) -> tuple:
    """``(images, labels)`` as two lists of equal length: one image and its labels, or a series of them."""
    if isinstance(image, (list, tuple)):
        if not isinstance(labels, (list, tuple)) or len(labels) != len(image):
            raise ValueError("Pass one labels array per image: fit([img1, img2], [lab1, lab2]).")
        if not image:
            raise ValueError("fit needs at least one image.")
        return list(image), list(labels)
    return [image], [labels]
