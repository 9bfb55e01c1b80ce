"""From napari layers to what :class:`gpuseg.Segmenter` takes, and back: no Qt here.

An Image layer's data is the segmenter's image (its channel axis, if any, named
by the user or implied by an RGB layer); the result layers cover the image's
spatial axes and carry their ``scale`` and ``translate``, so they overlay it in
world coordinates, anisotropic voxels included.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ISOTROPY_NOTE = (
    "gpuseg's sigmas are in pixels along every axis (no per-axis sigma yet): an anisotropic "
    "scale is carried by the result layers but does not change the features."
)


@dataclass(frozen=True)
class ImageInput:
    """An Image layer as the segmenter sees it.

    Attributes
    ----------
    data : array
        The layer's data: NumPy, Dask, Zarr or any array that slices.
    channel_axis : int or None
        Axis of ``data`` holding channels (non-negative), ``None`` for grayscale.
    spatial_shape : tuple of int
        Shape of ``data`` without the channel axis (2D or 3D).
    scale, translate : tuple of float
        The layer's ``scale`` and ``translate`` on the spatial axes.
    """

    data: object
    channel_axis: int | None
    spatial_shape: tuple
    scale: tuple
    translate: tuple

    @property
    def lazy(self) -> bool:
        """Whether the data is not a NumPy array in memory (Dask, Zarr, ...): predict what is visible first."""
        return not isinstance(self.data, np.ndarray)

    @property
    def anisotropic(self) -> bool:
        return len(set(np.round(self.scale, 9))) > 1


def image_input(layer, channel_axis=None) -> ImageInput:
    """Describe an Image layer for the segmenter.

    Parameters
    ----------
    layer : napari.layers.Image
        Not multiscale (for a pyramid, its full-resolution level is used).
    channel_axis : int, optional
        Axis of ``layer.data`` holding channels; ``-1`` is implied for an RGB(A) layer.

    Returns
    -------
    ImageInput

    Raises
    ------
    ValueError
        The channel axis is out of range, or the image is not 2D or 3D without it.
    """
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    if channel_axis is None and getattr(layer, "rgb", False):
        channel_axis = -1
    ndim = len(data.shape)
    if channel_axis is not None:
        if not -ndim <= channel_axis < ndim:
            raise ValueError(f"Channel axis {channel_axis} is out of range for an image of shape {tuple(data.shape)}.")
        channel_axis %= ndim
    spatial = [i for i in range(ndim) if i != channel_axis]
    if len(spatial) not in (2, 3):
        raise ValueError(
            f"gpuseg segments 2D and 3D images; layer {layer.name!r} has shape {tuple(data.shape)}"
            + ("" if channel_axis is None else f" with channels on axis {channel_axis}")
            + ": choose its channel axis, or a 2D/3D layer."
        )
    # napari keeps no scale for the channel axis of an RGB layer; other layers have one per axis.
    scale = np.asarray(layer.scale, float)
    translate = np.asarray(layer.translate, float)
    axes = spatial if len(scale) == ndim else list(range(len(spatial)))
    return ImageInput(data, channel_axis, tuple(int(data.shape[i]) for i in spatial),
                      tuple(float(scale[i]) for i in axes), tuple(float(translate[i]) for i in axes))


def check_scribbles(scribbles, image: ImageInput) -> np.ndarray:
    """The scribbles as an integer array of the image's spatial shape.

    Raises
    ------
    ValueError
        Another shape than the image's spatial one.
    """
    scribbles = np.asarray(scribbles)
    if scribbles.shape != image.spatial_shape:
        raise ValueError(
            f"The scribbles have shape {scribbles.shape}; the image without its channel axis has shape "
            f"{image.spatial_shape}. Use 'New scribbles layer' to make one that fits."
        )
    return scribbles


def visible_region(layer, image: ImageInput, point, displayed) -> tuple:
    """Slices of the image's spatial axes that the canvas shows.

    Parameters
    ----------
    layer : napari.layers.Image
        Its ``corner_pixels`` (data coordinates of the level shown, updated on each draw) bound the
        displayed axes.
    image : ImageInput
        The layer as described by :func:`image_input`.
    point : sequence of float
        The viewer's world position (``viewer.dims.point``): the slice shown on the other axes.
    displayed : sequence of int
        The displayed axes of the layer's data (``viewer.dims.displayed`` for a layer of the viewer's ndim).

    Returns
    -------
    region : tuple of slice
        One per spatial axis. The whole extent of a displayed axis the canvas
        has not measured yet (no draw so far), one plane on the others.
    """
    data_point = np.asarray(layer.world_to_data(point), float)[-len(image.data.shape):]
    corners = np.asarray(layer.corner_pixels, float)
    drawn = corners.any()  # all zeros until the canvas first draws the layer
    lows, highs = corners[0], corners[1] + 1  # first and last pixel shown -> [low, high)
    if getattr(layer, "multiscale", False):  # of the level shown; the image is level 0
        factors = np.asarray(layer.downsample_factors[layer.data_level])[-corners.shape[1]:]
        lows, highs = lows * factors, highs * factors
    spatial = [i for i in range(len(image.data.shape)) if i != image.channel_axis]
    region = []
    for axis, size in zip(spatial, image.spatial_shape):
        if axis in displayed:
            lo, hi = int(np.floor(lows[axis])), int(np.ceil(highs[axis]))
            region.append(slice(max(0, lo), min(size, hi)) if drawn else slice(0, size))
        else:
            index = int(np.clip(np.round(data_point[axis]), 0, size - 1))
            region.append(slice(index, index + 1))
    return tuple(region)
