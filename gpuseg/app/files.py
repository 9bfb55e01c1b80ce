"""Reading uploaded images and writing label images, with messages instead of tracebacks.

Every reader returns :class:`~gpuseg.app.frames.Frames`: ``(n_frames,) +
spatial_shape + (n_channels,)`` with ``spatial_shape`` 2D ``(rows, cols)`` or 3D
``(planes, rows, cols)``; one frame but for a TIFF whose OME/ImageJ axes hold a
``T``; one (grayscale) or three (RGB) channels, or the ``C`` of those axes.
"""

from __future__ import annotations

import io

import numpy as np

from .frames import Frames

MAX_PIXELS = 4096 * 4096  # features of this many pixels (all frames together) already take over a gigabyte


class UnreadableImage(ValueError):
    """An upload that is not an image gpuseg can segment; the message says why."""


def read_image(data: bytes, filename: str = "") -> Frames:
    """Decode PNG, JPEG or TIFF bytes into frames, channels last.

    Parameters
    ----------
    data : bytes
        The file's content.
    filename : str
        Only its extension is used, to pick the decoder.

    Returns
    -------
    image : Frames
        Of shape ``(n_frames,) + spatial_shape + (n_channels,)``: ``spatial_shape`` is
        ``(rows, cols)`` or, for a multi-page TIFF, ``(planes, rows, cols)``; ``n_frames`` the
        ``T`` and ``n_channels`` the ``C`` of a TIFF's OME/ImageJ axes (a ``TZCYX`` time-lapse
        gives ``(T, Z, Y, X, C)``, scikit-image's ``cells3d``, ``ZCYX``, ``(1, Z, Y, X, 2)``), else
        1 and 1 or 3 (RGB, alpha dropped). The dtype is the file's (bool, integer or float).

    Raises
    ------
    UnreadableImage
        Not an image, corrupt, too large (over ``MAX_PIXELS`` pixels, all frames together), or of
        a shape or type that cannot be segmented.
    """
    name = filename.lower()
    try:
        if name.endswith((".tif", ".tiff")) or data[:4] in (b"II*\x00", b"MM\x00*"):
            array, axes, rgb = _read_tiff(data)
        else:
            array, axes, rgb = _read_pillow(data)
    except UnreadableImage:
        raise
    except Exception as exc:  # every decoder failure becomes a message
        raise UnreadableImage(
            f"{filename or 'The upload'} could not be read as an image ({type(exc).__name__}: {exc}). "
            "Upload a PNG, JPEG or TIFF file."
        ) from None
    return _frames(array, axes, rgb, filename or "the upload")


def _read_tiff(data: bytes) -> tuple:
    """A TIFF's first series, its OME/ImageJ axes (None when the file does not say) and whether it is RGB."""
    import tifffile

    from ..metadata import tiff_metadata

    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        series = tif.series[0]
        _check_size(series.shape)
        rgb = tif.pages[0].photometric == tifffile.PHOTOMETRIC.RGB and "S" in series.axes
        return series.asarray(), tiff_metadata(tif).axes, rgb


def _read_pillow(data: bytes) -> tuple:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        _check_size((img.height, img.width))
        if img.mode in ("1", "L", "I", "I;16", "I;16B", "I;16L", "F"):
            return np.asarray(img), "YX", False
        return np.asarray(img.convert("RGB")), "YXC", True


def _check_size(shape) -> None:
    if int(np.prod(shape)) > MAX_PIXELS * 4:  # channels included; the exact check follows decoding
        raise UnreadableImage(
            f"The image has shape {tuple(shape)}: too large for the app ({MAX_PIXELS} pixels at most)."
        )


def _guess_axes(shape: tuple) -> str | None:
    """Axes of an array whose file does not name them: a last axis of 3 or 4 is colour, a third axis planes."""
    colour = len(shape) in (3, 4) and shape[-1] in (3, 4)
    spatial = len(shape) - colour
    return "ZYX"[-spatial:] + "C" * colour if spatial in (2, 3) else None


def _frames(array: np.ndarray, axes: str | None, rgb: bool, what: str) -> Frames:
    """The frames of a decoded array with OME letters ``axes`` (guessed when None), checked."""
    if array.dtype.kind not in "biuf":
        raise UnreadableImage(f"{what} has pixel type {array.dtype}; upload a grayscale or RGB image.")
    if axes is None:
        axes = _guess_axes(array.shape)
        rgb = "C" in (axes or "")
    size = dict(zip(axes or "", array.shape))
    spatial = [a for a in "ZYX" if size.get(a, 1) > 1 or a in "YX"]
    if axes is None or set(spatial) - set(size) or min(size[a] for a in spatial) < 3:
        raise UnreadableImage(
            f"{what} has shape {array.shape} (axes {axes or 'unknown'}); the app segments 2D images, 3D stacks "
            "and time-lapses of them with at least 3 pixels along every axis."
        )
    order = [a for a in "TZYXC" if a in size]
    array = np.transpose(array, [axes.index(a) for a in order])
    array = array.reshape((size.get("T", 1),) + tuple(size[a] for a in spatial) + (size.get("C", 1),))
    if rgb:
        array = array[..., :3]  # alpha dropped
    pixels = int(np.prod(array.shape[:-1]))
    if pixels > MAX_PIXELS:
        frames = f" ({array.shape[0]} frames of {int(np.prod(array.shape[1:-1]))})" if array.shape[0] > 1 else ""
        raise UnreadableImage(f"{what} has {pixels} pixels{frames}; the app takes at most {MAX_PIXELS}.")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise UnreadableImage(f"{what} holds NaN or infinite values; replace them and upload it again.")
    return Frames(array, rgb)


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes of a 2D uint8/uint16 array, or of an RGB(A) uint8 array of shape ``(rows, cols, 3 or 4)``."""
    import cv2

    if array.ndim == 3:
        array = array[..., [2, 1, 0, 3][: array.shape[-1]]]  # OpenCV writes BGR(A)
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(array), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise RuntimeError("OpenCV could not encode the PNG.")
    return buf.tobytes()


def encode_tiff(array: np.ndarray, axes: str | None = None) -> bytes:
    """TIFF bytes of a grayscale image whose axes are the OME letters ``axes`` in ``TZYX`` order.

    ``axes`` defaults to ``"YX"`` or ``"ZYX"`` by the dimensionality. 8- and 16-bit images are written as
    an ImageJ hyperstack (Fiji tells ``T`` from ``Z``), others (labels past 65535) as tifffile's TIFF
    with the axes in its description; :func:`read_image` reads the axes of both.
    """
    import tifffile

    buf = io.BytesIO()
    axes = axes or "ZYX"[-array.ndim:]
    tifffile.imwrite(buf, array, imagej=array.dtype in (np.uint8, np.uint16), photometric="minisblack",
                     metadata={"axes": axes})
    return buf.getvalue()
