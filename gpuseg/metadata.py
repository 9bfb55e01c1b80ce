"""What image files say about their axes and pixel sizes: OME-TIFF, ImageJ TIFF, OME-Zarr, PNG/JPEG.

One reader, :func:`read_metadata`, gives the axes (OME letters, one per
array axis, e.g. ``"TCZYX"``, ``"YXC"``) and the physical size of the spatial
axes; :func:`read_spacing` gives the sizes of the last spatial axes alone.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import NamedTuple

from .image_io import PICTURE_SUFFIXES, multiscales

SPATIAL = "ZYX"
_TIFF_LETTERS = {"S": "C"}  # tifffile's samples (RGB) are channels
_OME_ZARR_UNITS = {"micrometer": "um", "nanometer": "nm", "millimeter": "mm"}


class Metadata(NamedTuple):
    """Axes and calibration an image file declares.

    Attributes
    ----------
    axes : str or None
        OME letters (``T``, ``C``, ``Z``, ``Y``, ``X``), one per axis of the
        array :func:`gpuseg.image_io.open_image` returns; ``None`` when the
        file does not say (``.npy``, a bare Zarr array, a TIFF without
        OME/ImageJ axes).
    sizes : dict
        Physical size of a pixel per spatial letter present in the file, e.g.
        ``{"Y": 0.29, "X": 0.29}``.
    unit : str or None
        Their unit (``"um"``, ...), when the file names one.
    """

    axes: str | None
    sizes: dict
    unit: str | None


NOTHING = Metadata(None, {}, None)


def read_metadata(path, shape) -> Metadata:
    """The axes and pixel sizes that the file at ``path`` declares.

    Parameters
    ----------
    path : str or path-like
        An image file as :func:`gpuseg.image_io.open_image` reads it.
    shape : tuple of int
        The shape of the array it opens as (the axes are checked against it).

    Returns
    -------
    metadata : Metadata
        :data:`NOTHING` for formats without metadata, or axes that do not
        match ``shape``.
    """
    url = str(path) if isinstance(path, str) and "://" in path else None  # a Zarr image at a URL
    path = Path(path)
    suffix = path.suffix.lower()
    if url is not None:
        meta = _ome_zarr_metadata(url)
    elif suffix in (".tif", ".tiff"):
        meta = _tiff_metadata(path)
    elif suffix in PICTURE_SUFFIXES:
        meta = Metadata("YXC" if len(shape) == 3 and shape[-1] in (3, 4) else "YX", {}, None)
    elif path.is_dir():
        meta = _ome_zarr_metadata(path)
    else:
        meta = NOTHING
    if meta.axes is not None and len(meta.axes) != len(shape):
        return Metadata(None, meta.sizes, meta.unit)
    return meta


def read_spacing(path, ndim: int) -> tuple | None:
    """The physical size of a pixel along each of the last ``ndim`` spatial axes, when the file says it.

    Returns
    -------
    spacing : tuple of ``ndim`` floats, or None
        ``None`` when the file holds no positive size for one of those axes.
    """
    sizes = read_metadata(path, ()).sizes
    letters = SPATIAL[-ndim:]
    if any(not sizes.get(a, 0) > 0 for a in letters):
        return None
    return tuple(float(sizes[a]) for a in letters)


def _tiff_metadata(path: Path) -> Metadata:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        return tiff_metadata(tif)


def tiff_metadata(tif) -> Metadata:
    """The :class:`Metadata` of an open ``tifffile.TiffFile`` (its first series)."""
    series = tif.series[0]
    axes = "".join(_TIFF_LETTERS.get(a, a) for a in series.axes)
    if set(axes) - set("TCZYX") or len(set(axes)) != len(axes):
        axes = None  # tifffile's Q, I, ...: the file does not say
    if tif.ome_metadata:
        root = ET.fromstring(tif.ome_metadata)
        pixels = next((e for e in root.iter() if e.tag.endswith("Pixels")), None)
        if pixels is None:
            return Metadata(axes, {}, None)
        sizes = {a: float(pixels.get(f"PhysicalSize{a}")) for a in SPATIAL if pixels.get(f"PhysicalSize{a}")}
        unit = pixels.get("PhysicalSizeXUnit", "µm")
        return Metadata(axes, sizes, "um" if unit == "µm" else unit)
    if tif.imagej_metadata is not None:
        tags = tif.pages[0].tags
        sizes = {}
        for letter, name in (("Y", "YResolution"), ("X", "XResolution")):
            num, den = tags[name].value if name in tags else (0, 1)
            if num:
                sizes[letter] = den / num
        if tif.imagej_metadata.get("spacing") is not None:
            sizes["Z"] = float(tif.imagej_metadata["spacing"])
        unit = tif.imagej_metadata.get("unit")
        return Metadata(axes, sizes, None if unit in (None, "pixel") else _ascii_unit(unit))
    return Metadata(axes, {}, None)


def _ascii_unit(unit: str) -> str:
    return "um" if unit in ("micron", "\\u00B5m", "µm") else unit


def _ome_zarr_metadata(path) -> Metadata:
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except FileNotFoundError:
        return NOTHING
    found = multiscales(node.attrs) if isinstance(node, zarr.Group) else []
    if not found:
        return NOTHING
    ms = found[0]
    names = [(a if isinstance(a, str) else a.get("name", "")).upper() for a in ms.get("axes", [])]
    units = [None if isinstance(a, str) else a.get("unit") for a in ms.get("axes", [])]
    axes = "".join(names) if all(len(n) == 1 for n in names) and set(names) <= set("TCZYX") else None
    scale = [1.0] * len(names)
    for transforms in (ms["datasets"][0].get("coordinateTransformations", []), ms.get("coordinateTransformations", [])):
        for t in transforms:
            if t.get("type") == "scale":
                scale = [a * b for a, b in zip(scale, t["scale"])]
    sizes = {n: float(s) for n, s in zip(names, scale) if n in SPATIAL}
    unit = next((u for n, u in zip(names, units) if n in SPATIAL and u), None)
    return Metadata(axes, sizes, _OME_ZARR_UNITS.get(unit, unit))
