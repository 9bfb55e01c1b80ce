"""Physical pixel size from image files: OME-TIFF, ImageJ TIFF, OME-Zarr."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path


def read_spacing(path, ndim: int) -> tuple | None:
    """The physical size of a pixel along each of the last ``ndim`` axes, when the file says it.

    Parameters
    ----------
    path : str or path-like
        OME-TIFF (``PhysicalSizeZ/Y/X``), ImageJ TIFF (the ``spacing`` of its
        z-step and the X/Y resolution tags), or OME-Zarr (the ``scale`` of the
        first dataset, and of the multiscale, on its ``space`` axes).
    ndim : int
        Spatial dimensions of the image (2 or 3), the last axes of the file's.

    Returns
    -------
    spacing : tuple of ``ndim`` floats, or None
        ``None`` when the file holds no sizes for those axes (or another format).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        sizes = _tiff_sizes(path)
    elif path.is_dir():
        sizes = _ome_zarr_sizes(path)
    else:
        return None
    if sizes is None or len(sizes) < ndim or any(s is None or not s > 0 for s in sizes[-ndim:]):
        return None
    return tuple(float(s) for s in sizes[-ndim:])


def _tiff_sizes(path: Path):
    import tifffile

    with tifffile.TiffFile(path) as tif:
        if tif.ome_metadata:
            root = ET.fromstring(tif.ome_metadata)
            pixels = next((e for e in root.iter() if e.tag.endswith("Pixels")), None)
            if pixels is None:
                return None
            sizes = [pixels.get(f"PhysicalSize{a}") for a in "ZYX"]
            if int(pixels.get("SizeZ", "1")) == 1:
                sizes = sizes[1:]
            return [None if s is None else float(s) for s in sizes]
        if tif.imagej_metadata is not None:
            tags = tif.pages[0].tags
            xy = []
            for name in ("YResolution", "XResolution"):
                num, den = tags[name].value if name in tags else (0, 1)
                xy.append(den / num if num else None)
            z = tif.imagej_metadata.get("spacing")
            return ([float(z)] if z is not None else []) + xy
    return None


def _ome_zarr_sizes(path: Path):
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except FileNotFoundError:
        return None
    attrs = dict(node.attrs)
    multiscales = attrs.get("ome", {}).get("multiscales") or attrs.get("multiscales")
    if not multiscales:
        return None
    ms = multiscales[0]
    axes = [a if isinstance(a, str) else a.get("type", a.get("name")) for a in ms.get("axes", [])]
    scale = [1.0] * len(axes)
    for transforms in (ms["datasets"][0].get("coordinateTransformations", []), ms.get("coordinateTransformations", [])):
        for t in transforms:
            if t.get("type") == "scale":
                scale = [a * b for a, b in zip(scale, t["scale"])]
    space = [s for a, s in zip(axes, scale) if a in ("space", "z", "y", "x")]
    return space or None
