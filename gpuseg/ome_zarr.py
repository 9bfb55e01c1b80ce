"""OME-NGFF 0.5 metadata of gpuseg's Zarr outputs: axes, multiscales, ``image-label``, ``labels/``, the pyramid.

Labels are an OME-Zarr labels image (``image-label`` metadata, colours per
class, a nearest-neighbour pyramid); probabilities an OME-Zarr image whose
``c`` axis holds the classes. Arrays carry ``dimension_names``. Axes come in
OME order: ``t``, ``c``, then ``z``, ``y``, ``x``.
"""

from __future__ import annotations

import numpy as np
import zarr

VERSION = "0.5"
ORDER = "TCZYX"
PYRAMID_MIN = 256
"""Levels are added, halving Y and X, until both are at most this long."""
_UNITS = {"um": "micrometer", "nm": "nanometer", "mm": "millimeter", "micrometer": "micrometer",
          "nanometer": "nanometer", "millimeter": "millimeter"}
_TYPES = {"T": "time", "C": "channel", "Z": "space", "Y": "space", "X": "space"}


def ome_order(axes: str) -> str:
    """``axes`` sorted as OME-NGFF orders them (``T``, ``C``, ``Z``, ``Y``, ``X``)."""
    return "".join(a for a in ORDER if a in axes)


def _axes(axes: str, unit) -> list:
    result = []
    for a in axes:
        entry = {"name": a.lower(), "type": _TYPES[a]}
        if _TYPES[a] == "space" and _UNITS.get(unit):
            entry["unit"] = _UNITS[unit]
        result.append(entry)
    return result


def _scale(axes: str, sizes: dict, level: int) -> list:
    return [float(sizes.get(a, 1.0)) * (2**level if a in "YX" else 1) for a in axes]


def pyramid_shapes(shape: tuple, axes: str) -> list:
    """Shapes of the levels: level 0 ``shape``, then Y and X halved (rounded up) until both are at most :data:`PYRAMID_MIN`."""
    shapes = [tuple(shape)]
    yx = [axes.index("Y"), axes.index("X")]
    while any(shapes[-1][i] > PYRAMID_MIN for i in yx):
        shapes.append(tuple(-(-n // 2) if i in yx else n for i, n in enumerate(shapes[-1])))
    return shapes


def create(store, axes: str, shape: tuple, chunks: tuple, dtype, *, sizes: dict, unit, attrs: dict,
           classes=None, source=None):
    """Create an empty OME-Zarr 0.5 image (probabilities) or labels image (``classes`` given) at ``store``.

    Parameters
    ----------
    store : str
        Directory of the new group.
    axes : str
        The arrays' axes, in OME order (see :func:`ome_order`).
    shape, chunks, dtype
        Of level ``0``; other levels (labels only) are chunked alike.
    sizes : dict
        Physical size per axis letter (missing: 1).
    unit : str or None
        Spatial unit (``"um"``, ``"micrometer"``, ...).
    attrs : dict
        Stored as the group's ``gpuseg`` attribute.
    classes : sequence of int, optional
        Label values: makes a labels image, with a colour per class.
    source : str, optional
        The ``image-label`` source, relative path of the image labelled (e.g. ``"../../"``).

    Returns
    -------
    group : zarr.Group
    """
    levels = pyramid_shapes(shape, axes) if classes is not None else [tuple(shape)]
    multiscale = {
        "name": "gpuseg labels" if classes is not None else "gpuseg probabilities",
        "axes": _axes(axes, unit),
        "datasets": [{"path": str(k), "coordinateTransformations": [{"type": "scale", "scale": _scale(axes, sizes, k)}]}
                     for k in range(len(levels))],
    }
    ome = {"version": VERSION, "multiscales": [multiscale]}
    if classes is not None:
        ome["image-label"] = {"version": VERSION, "colors": [{"label-value": int(c), "rgba": list(rgba)}
                                                             for c, rgba in zip(classes, class_colours(len(classes)))]}
        if source is not None:
            ome["image-label"]["source"] = {"image": source}
    group = zarr.create_group(store=store, attributes={"ome": ome, "gpuseg": attrs})
    names = [a.lower() for a in axes]
    for k, level in enumerate(levels):
        group.create_array(str(k), shape=level, chunks=tuple(min(c, n) for c, n in zip(chunks, level)), dtype=dtype,
                           fill_value=0, dimension_names=names)
    return group


def fill_pyramid(group, axes: str) -> None:
    """Write levels ``1..`` of a labels image from level ``0``, nearest neighbour (every other Y and X pixel), chunk by chunk."""
    yx = {axes.index("Y"), axes.index("X")}
    k = 1
    while str(k) in group:
        prev, level = group[str(k - 1)], group[str(k)]
        grid = [range(0, n, c) for n, c in zip(level.shape, level.chunks)]
        for starts in np.ndindex(*[len(g) for g in grid]):
            dst = tuple(slice(g[i], min(g[i] + c, n)) for g, i, c, n in zip(grid, starts, level.chunks, level.shape))
            src = tuple(slice(2 * s.start, 2 * s.stop, 2) if d in yx else s for d, s in enumerate(dst))
            level[dst] = prev[src]
        k += 1


def write_pyramid_part(levels, axes: str, where: tuple, values) -> None:
    """Write into levels ``1..`` of a labels image what a region of level ``0`` gives them (as :func:`fill_pyramid` does).

    Level ``k`` holds level ``0``'s pixel ``(..., 2**k * y, 2**k * x)`` at
    ``(..., y, x)``: the pixels of the region whose Y and X are multiples of ``2**k``.

    Parameters
    ----------
    levels : sequence of zarr.Array
        Levels ``1, 2, ...``.
    axes : str
        The arrays' axes (OME letters, with ``Y`` and ``X``).
    where : tuple of int or slice
        The region of level ``0``, one entry per axis (slices with a start and a stop).
    values : ndarray
        ``level0[where]``: one axis per slice of ``where``.
    """
    yx = {axes.index("Y"), axes.index("X")}
    for k, level in enumerate(levels, start=1):
        step = 2**k
        dst, src = [], []
        for d, w in enumerate(where):
            if isinstance(w, slice) and d in yx:
                first = -(-w.start // step)
                dst.append(slice(first, -(-w.stop // step)))
                src.append(slice(first * step - w.start, None, step))
            else:
                dst.append(w)
                if isinstance(w, slice):
                    src.append(slice(None))
        if all(s.stop > s.start for s in dst if isinstance(s, slice)):
            level[tuple(dst)] = values[tuple(src)]


def add_to_labels_group(image_group_path, name: str) -> None:
    """List ``name`` in the ``labels`` group of an OME-Zarr image (creating the group)."""
    labels = zarr.open_group(f"{image_group_path}/labels", mode="a")
    ome = dict(labels.attrs.get("ome", {}))
    names = list(ome.get("labels", []))
    if name not in names:
        names.append(name)
    labels.attrs["ome"] = {**ome, "version": VERSION, "labels": names}


def class_colours(n: int) -> list:
    """``n`` distinct RGBA colours (0..255), cycling through twelve."""
    base = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (255, 225, 25), (145, 30, 180), (70, 240, 240),
            (245, 130, 48), (240, 50, 230), (210, 245, 60), (250, 190, 190), (0, 128, 128), (170, 110, 40)]
    return [base[i % len(base)] + (255,) for i in range(n)]
