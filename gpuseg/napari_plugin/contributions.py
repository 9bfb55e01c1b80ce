"""The manifest's reader and sample data (the widget is in :mod:`gpuseg.napari_plugin.widget`)."""

from __future__ import annotations

from pathlib import Path

from .. import load
from ..samples import texture_mosaic
from .layers import image_input


def get_reader(path):
    """napari reader hook: a function that applies the ``.gpuseg`` model at ``path``, or None.

    Opening a model file classifies the selected Image layer (or, if none is
    selected, the top one) of the current viewer with it and adds the labels as
    a Labels layer over that image. A Dask or Zarr image gives lazy labels,
    computed by napari for the slices it shows.
    """
    if isinstance(path, list) or not str(path).endswith(".gpuseg"):
        return None
    return _apply_model


def _apply_model(path):
    """Labels of the current viewer's image by the model at ``path``, as napari layer data.

    Raises
    ------
    ValueError
        No viewer or no Image layer to apply the model to, or the file is not a gpuseg model.
    """
    import napari
    from napari.layers import Image

    segmenter = load(path)
    viewer = napari.current_viewer()
    images = [] if viewer is None else [layer for layer in viewer.layers if isinstance(layer, Image)]
    if not images:
        raise ValueError(f"Open an image first: {Path(path).name} is a gpuseg model, applied to an open image.")
    active = viewer.layers.selection.active
    layer = active if isinstance(active, Image) else images[-1]
    image = image_input(layer, segmenter.channel_axis)
    labels = segmenter.predict(image.data)
    name = f"{layer.name} ({Path(path).stem})"
    return [(labels, {"name": name, "scale": image.scale, "translate": image.translate, "opacity": 0.5}, "labels")]


def texture_mosaic_sample():
    """gpuseg's texture mosaic (512x512): the image, user-like scribbles and the ground truth (hidden), as layer data."""
    image, truth, scribbles = texture_mosaic((512, 512))
    return [
        (image, {"name": "texture mosaic"}, "image"),
        (scribbles, {"name": "scribbles"}, "labels"),  # before the truth: the widget's first choice
        (truth, {"name": "truth", "visible": False}, "labels"),
    ]
