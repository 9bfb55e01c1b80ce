"""What the page shows: the image scaled for display, and the prediction coloured over it."""

from __future__ import annotations

import base64
import io

import numpy as np

from ..predictor import uncertainty

COLORS = {"red": "#e6194b", "green": "#3cb44b", "blue": "#4363d8", "orange": "#f58231", "purple": "#911eb4",
          "cyan": "#42d4f4", "magenta": "#f032e6", "lime": "#bfef45", "pink": "#fabed4", "teal": "#469990",
          "brown": "#9a6324", "maroon": "#800000"}
PALETTE = tuple(COLORS.values())
DISPLAY_MAX = 640  # longest side of the displayed image, in its pixels


def display_scale(spatial_shape: tuple, display_max: int = DISPLAY_MAX) -> int:
    """Integer downsampling factor that fits an image's rows and columns in ``display_max``."""
    return max(1, -(-max(spatial_shape[-2:]) // display_max))


def channel_limits(data: np.ndarray, rgb: bool = False) -> np.ndarray:
    """The range of each channel of a channels-last image that the display maps to 0..255.

    Parameters
    ----------
    data : ndarray of shape ``(..., n_channels)``
        The whole image (all its frames and planes), so that every plane is shown alike.
    rgb : bool
        A colour picture: one range for its three channels, so that its colours stay.

    Returns
    -------
    limits : float64 ndarray of shape ``(n_channels, 2)``
        ``(lo, hi)`` per channel: ``(0, 255)`` for uint8, else the channel's minimum and maximum.
    """
    if data.dtype == np.uint8:
        return np.tile([0.0, 255.0], (data.shape[-1], 1))
    flat = data.reshape(-1, data.shape[-1])
    lo, hi = flat.min(axis=0).astype(np.float64), flat.max(axis=0).astype(np.float64)
    if rgb:
        lo, hi = np.full_like(lo, lo.min()), np.full_like(hi, hi.max())
    return np.stack([lo, hi], axis=1)


def to_display_uint8(image: np.ndarray, limits: np.ndarray) -> np.ndarray:
    """Scale a channels-last image to uint8 for display: channel ``c`` from ``limits[c]`` to 0..255 (uint8 as it is)."""
    if image.dtype == np.uint8:
        return image
    lo, span = limits[:, 0], limits[:, 1] - limits[:, 0]
    gain = np.divide(255.0, span, out=np.zeros_like(span), where=span > 0)
    out = (image.astype(np.float32) - lo.astype(np.float32)) * gain.astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def picture(plane: np.ndarray, limits: np.ndarray, channel: int | None, scale: int) -> np.ndarray:
    """The RGB uint8 picture shown of one plane.

    Parameters
    ----------
    plane : ndarray of shape ``(rows, cols, n_channels)``
    limits : ndarray of shape ``(n_channels, 2)``
        See :func:`channel_limits`.
    channel : int or None
        Show this channel in grey; None: the composite, the first (up to) three channels as red,
        green and blue (one channel in grey, an RGB picture in its colours).
    scale : int
        Downsampling factor (see :func:`display_scale`).

    Returns
    -------
    rgb : uint8 ndarray of shape ``(ceil(rows / scale), ceil(cols / scale), 3)``
    """
    chosen = [channel] if channel is not None else list(range(min(3, plane.shape[-1])))
    shown = downsample(to_display_uint8(plane[..., chosen], limits[chosen]), scale)
    if len(chosen) == 1:
        return np.repeat(shown, 3, axis=-1)
    return np.pad(shown, ((0, 0), (0, 0), (0, 3 - len(chosen))))


def downsample(plane: np.ndarray, scale: int) -> np.ndarray:
    """Block means of a ``(rows, cols, channels)`` uint8 plane; edge blocks padded by replication."""
    if scale == 1:
        return plane
    rows, cols = (-(-n // scale) for n in plane.shape[:2])
    padded = np.pad(plane, ((0, rows * scale - plane.shape[0]), (0, cols * scale - plane.shape[1]), (0, 0)),
                    mode="edge")
    blocks = padded.reshape(rows, scale, cols, scale, -1).mean(axis=(1, 3))
    return (blocks + 0.5).astype(np.uint8)


def png_source(rgb: np.ndarray) -> str:
    """``data:`` URI of a PNG of an RGB(A) uint8 image."""
    from .files import encode_png  # files reads images into Frames, whose pictures are drawn here

    return "data:image/png;base64," + base64.b64encode(encode_png(rgb)).decode()


def palette_png_source(index: np.ndarray, palette: np.ndarray) -> str:
    """``data:`` URI of the PNG of ``palette[index]``, written as a palette (indexed-colour) PNG.

    The pixels are those of ``png_source(palette[index])``; with one byte per pixel instead
    of three an overlay is encoded several times faster, into fewer bytes.

    Parameters
    ----------
    index : integer ndarray of shape ``(rows, cols)``
        Values ``0 .. len(palette) - 1``.
    palette : uint8 ndarray of shape ``(n_colours, 3)``
        At most 256 colours; more are written as RGB.
    """
    if palette.shape[0] > 256:
        return png_source(palette[index])
    from PIL import Image  # scikit-image's dependency, which reads uploads too

    picture = Image.fromarray(np.ascontiguousarray(index, dtype=np.uint8))
    picture.putpalette(palette.astype(np.uint8).tobytes())  # makes it a palette image
    buf = io.BytesIO()
    picture.save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def colour_prediction(proba: np.ndarray, classes: np.ndarray, colors: dict, view: str = "segmentation",
                      label: int = 1) -> np.ndarray:
    """RGB uint8 image of class probabilities: ``palette[index]`` of :func:`prediction_palette`."""
    index, palette = prediction_palette(proba, classes, colors, view, label)
    return palette[index]


def prediction_palette(proba: np.ndarray, classes: np.ndarray, colors: dict, view: str = "segmentation",
                       label: int = 1) -> tuple:
    """Class probabilities as a picture of palette indices and the palette's colours.

    Parameters
    ----------
    proba : float32 ndarray of shape ``(rows, cols, n_classes)``
    classes : int ndarray of shape ``(n_classes,)``
        The class value of each column.
    colors : dict
        ``#rrggbb`` colour of class values; a class without one is drawn in grey.
    view : {"segmentation", "probability", "uncertainty"}
        Class colours; the probability of class ``label`` (viridis); or the
        forest's uncertainty ``(1 - p_max) * K / (K - 1)`` (magma).
    label : int
        The class whose probability is shown.

    Returns
    -------
    index : integer ndarray of shape ``(rows, cols)``
        The class of each pixel (its column in ``proba``), or its value on a 256-step colour scale.
    palette : uint8 ndarray of shape ``(n_colours, 3)``
        RGB of each index: ``n_classes`` colours, or 256.
    """
    if view == "probability":
        k = np.searchsorted(classes, label)
        p = proba[..., k] if k < classes.size and classes[k] == label else np.zeros(proba.shape[:-1], np.float32)
        return _colormap_index(p), _colormap("viridis")
    if view == "uncertainty":
        return _colormap_index(uncertainty(proba)), _colormap("magma")
    palette = np.array([_rgb(colors.get(int(c), "#808080")) for c in classes], np.uint8).reshape(-1, 3)
    return np.argmax(proba, axis=-1), palette


def _rgb(color: str) -> tuple:
    color = color.lstrip("#")
    return tuple(int(color[i:i + 2], 16) for i in (0, 2, 4))


_LUTS: dict = {}


def _colormap(name: str) -> np.ndarray:
    """The 256 RGB uint8 colours of a plotly sequential colour scale, ``(256, 3)``, from 0 to 1."""
    if name not in _LUTS:
        from plotly.colors import sample_colorscale, sequential

        scale = {"viridis": sequential.Viridis, "magma": sequential.Magma}[name]
        colors = sample_colorscale(scale, np.linspace(0, 1, 256), colortype="tuple")
        _LUTS[name] = np.round(np.asarray(colors) * 255).astype(np.uint8)
    return _LUTS[name]


def _colormap_index(values: np.ndarray) -> np.ndarray:
    """The step (uint8) of values in [0, 1] on a 256-step colour scale."""
    return np.clip(np.asarray(values) * 255 + 0.5, 0, 255).astype(np.uint8)
