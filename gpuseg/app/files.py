"""Reading uploaded images and writing label images, with messages instead of tracebacks.

Every reader returns a channels-last array: ``spatial_shape + (n_channels,)``
with ``spatial_shape`` 2D ``(rows, cols)`` or 3D ``(planes, rows, cols)``: one
(grayscale) or three (RGB) channels, or the channels a TIFF's OME/ImageJ axes name.
"""

from __future__ import annotations

import io

import numpy as np

MAX_PIXELS = 4096 * 4096  # features of this many pixels already take over a gigabyte


class UnreadableImage(ValueError):
    """An upload that is not an image gpuseg can segment; the message says why."""


def read_image(data: bytes, filename: str = "") -> np.ndarray:
    """Decode PNG, JPEG or TIFF bytes into a channels-last array.

    Parameters
    ----------
    data : bytes
        The file's content.
    filename : str
        Only its extension is used, to pick the decoder.

    Returns
    -------
    image : ndarray of shape ``spatial_shape + (n_channels,)``
        ``spatial_shape`` is ``(rows, cols)`` or, for a multi-page TIFF,
        ``(planes, rows, cols)``; ``n_channels`` 1, 3 (RGB) or the ``C`` of a
        TIFF's OME/ImageJ axes (a ``ZCYX`` stack gives ``(Z, Y, X, C)``). The
        dtype is the file's (bool, integer or float).

    Raises
    ------
    UnreadableImage
        Not an image, corrupt, too large, a time-lapse, or of a shape or type that cannot be segmented.
    """
    name = filename.lower()
    try:
        if name.endswith((".tif", ".tiff")) or data[:4] in (b"II*\x00", b"MM\x00*"):
            array, channels = _read_tiff(data)
        else:
            array, channels = _read_pillow(data), None
    except UnreadableImage:
        raise
    except Exception as exc:  # every decoder failure becomes a message
        raise UnreadableImage(
            f"{filename or 'The upload'} could not be read as an image ({type(exc).__name__}: {exc}). "
            "Upload a PNG, JPEG or TIFF file."
        ) from None
    return _channels_last(array, filename or "the upload", channels)


def _read_tiff(data: bytes) -> tuple:
    """A TIFF's first series, and whether its last axis holds channels (``None``: the file does not say).

    With OME or ImageJ axes (e.g. ``ZCYX``, the layout of scikit-image's ``cells3d``) the
    channels go last and axes of length 1 are dropped; a time-lapse is refused.
    """
    import tifffile

    from ..metadata import tiff_metadata

    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        shape = tif.series[0].shape
        _check_size(shape)
        array, axes = tif.series[0].asarray(), tiff_metadata(tif).axes
    if axes is None:
        return array, None
    size = dict(zip(axes, array.shape))
    if size.get("T", 1) > 1:
        raise UnreadableImage(
            f"The TIFF holds {size['T']} time points (axes {axes}); the app segments one image or stack. "
            "Upload one time point, or segment the time-lapse with `gpuseg predict` (frame by frame)."
        )
    keep = [a for a in axes if a in "ZYX" and (size[a] > 1 or a != "Z")]
    array = np.transpose(array, [axes.index(a) for a in keep + [a for a in axes if a not in keep]])
    array = array.reshape(array.shape[:len(keep)] + (-1,))  # T and Z of length 1, and C, last
    return array if array.shape[-1] > 1 else array[..., 0], array.shape[-1] > 1


def _read_pillow(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        _check_size((img.height, img.width))
        if img.mode in ("1", "L", "I", "I;16", "I;16B", "I;16L", "F"):
            return np.asarray(img)
        return np.asarray(img.convert("RGB"))


def _check_size(shape) -> None:
    if int(np.prod(shape)) > MAX_PIXELS * 4:  # channels included; the exact check follows decoding
        raise UnreadableImage(
            f"The image has shape {tuple(shape)}: too large for the app ({MAX_PIXELS} pixels at most)."
        )


def _channels_last(array: np.ndarray, what: str, channels=None) -> np.ndarray:
    """Give a decoded array one trailing channel axis: the file's channels, or 1 or 3 (RGB) guessed from the shape."""
    if array.dtype.kind not in "biuf":
        raise UnreadableImage(f"{what} has pixel type {array.dtype}; upload a grayscale or RGB image.")
    if channels is not None:
        array = array if channels else array[..., None]
    elif array.ndim >= 3 and array.shape[-1] in (3, 4):
        array = array[..., :3]  # RGB, alpha dropped
    else:
        array = array[..., None]
    spatial = array.shape[:-1]
    if len(spatial) not in (2, 3) or min(spatial) < 3:
        raise UnreadableImage(
            f"{what} has shape {array.shape[:-1]} (channels aside); the app segments 2D images and 3D stacks "
            "with at least 3 pixels along every axis."
        )
    if int(np.prod(spatial)) > MAX_PIXELS:
        raise UnreadableImage(f"{what} has {int(np.prod(spatial))} pixels; the app takes at most {MAX_PIXELS}.")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise UnreadableImage(f"{what} holds NaN or infinite values; replace them and upload it again.")
    return array


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes of a 2D uint8/uint16 array, or of an RGB(A) uint8 array of shape ``(rows, cols, 3 or 4)``."""
    import cv2

    if array.ndim == 3:
        array = array[..., [2, 1, 0, 3][: array.shape[-1]]]  # OpenCV writes BGR(A)
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(array), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise RuntimeError("OpenCV could not encode the PNG.")
    return buf.tobytes()


def encode_tiff(array: np.ndarray) -> bytes:
    """TIFF bytes of a 2D image or a 3D stack (one page per plane)."""
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, array)
    return buf.getvalue()
