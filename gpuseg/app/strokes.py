"""Scribbles: strokes as the figure draws and edits them, and the label image they make.

Coordinates: the figure shows the image so that its data coordinates are the
pixel coordinates of the full-resolution image (``x`` = column, ``y`` = row),
whatever the display scale, so stroke paths need no conversion.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class Stroke:
    """One scribble.

    Attributes
    ----------
    id : int
        Unique within the session; the figure names the stroke's shape ``s<id>``.
    plane : int
        Plane of a 3D stack it was drawn on (0 for a 2D image).
    label : int
        Class value (positive).
    points : ndarray of shape (n, 2), float64
        ``(x, y)`` = (column, row) in full-resolution pixels.
    path : str
        The SVG path as the figure holds it.
    width : float
        Line width in displayed pixels.
    frame : int
        Frame (time point) it was drawn on (0 for a still image).
    """

    id: int
    plane: int
    label: int
    points: np.ndarray
    path: str
    width: float
    frame: int = 0

    @property
    def where(self) -> tuple:
        """``(frame, plane)`` it was drawn on."""
        return self.frame, self.plane


_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


def parse_path(path: str) -> np.ndarray:
    """Vertices of a plotly ``drawopenpath`` SVG path (``M x,y L x,y ...``).

    Returns
    -------
    points : ndarray of shape (n, 2), float64
        ``(x, y)`` pairs, in the figure's data coordinates.

    Raises
    ------
    ValueError
        A path without any vertex or with an odd count of numbers.
    """
    numbers = re.findall(_NUMBER, path or "")
    if not numbers or len(numbers) % 2:
        raise ValueError(f"Not a drawn path: {path[:60]!r}")
    return np.asarray(numbers, dtype=np.float64).reshape(-1, 2)


_EDIT = re.compile(r"^shapes\[(\d+)\]\.path$")  # a relayout key editing one stroke's path


class Strokes(list):
    """A session's strokes, oldest first, as the figure's events draw, edit and erase them.

    Where a method takes ``plane`` and ``frame``, they are those of the figure: it shows the
    strokes of plane ``plane`` of frame ``frame``. Ids are never reused, even after :meth:`clear`.
    """

    def __init__(self):
        super().__init__()
        self._next_id = 0

    def on(self, plane: int, frame: int = 0) -> list:
        """The strokes drawn on a plane, oldest first."""
        return [s for s in self if s.where == (frame, plane)]

    def add(self, path: str, label: int, width: float, plane: int = 0, frame: int = 0) -> Stroke:
        """Append a stroke drawn on a plane with class ``label``; returns it."""
        stroke = Stroke(self._next_id, plane, int(label), parse_path(path), path, float(width), frame)
        self._next_id += 1
        self.append(stroke)
        return stroke

    def sync(self, shapes: list, plane: int, default_label: int, width: float, *, classes: list,
             frame: int = 0) -> bool:
        """Make the strokes of a plane what the figure's shapes say (after a draw or an erase).

        A shape named ``s<id>`` is an existing stroke (its path may have been
        edited); a shape named ``c<label>`` (or unnamed) was just drawn with
        that class (or ``default_label``; the first of ``classes``, the label
        values there are, for a label not among them). Strokes of the plane
        missing from ``shapes`` were erased; those of other planes and frames stay.

        Returns
        -------
        changed : bool
        """
        before = [(s.id, s.path) for s in self]
        by_id = {s.id: s for s in self.on(plane, frame)}
        kept = set()
        for shape in shapes:
            if shape.get("type", "path") != "path" or not shape.get("path"):
                continue
            name = str(shape.get("name") or "")
            if name[:1] == "s" and name[1:].isdigit() and int(name[1:]) in by_id:
                stroke = by_id[int(name[1:])]
                if stroke.path != shape["path"]:
                    stroke.points, stroke.path = parse_path(shape["path"]), shape["path"]
                kept.add(stroke.id)
            else:
                label = int(name[1:]) if name[:1] == "c" and name[1:].isdigit() else default_label
                label = label if label in classes else classes[0]
                kept.add(self.add(shape["path"], label, width, plane, frame).id)
        self[:] = [s for s in self if s.where != (frame, plane) or s.id in kept]
        return before != [(s.id, s.path) for s in self]

    def apply_figure_edits(self, relayout: dict, plane: int, default_label: int, width: float, *, classes: list,
                           frame: int = 0) -> bool:
        """Apply what a figure's ``relayoutData`` says of the strokes of the plane it shows: shapes drawn,
        erased (``shapes``, see :meth:`sync`) or edited (``shapes[i].path``); other keys (a zoom, a pan)
        change nothing.

        Returns
        -------
        changed : bool
        """
        changed = "shapes" in relayout and self.sync(relayout["shapes"], plane, default_label, width,
                                                     classes=classes, frame=frame)
        for key, value in relayout.items():
            match = _EDIT.match(key)
            if match:
                changed |= self.edit_path(plane, int(match.group(1)), value, frame)
        return changed

    def edit_path(self, plane: int, index: int, path: str, frame: int = 0) -> bool:
        """Apply a ``shapes[index].path`` edit of the figure showing a plane."""
        on_plane = self.on(plane, frame)
        if not 0 <= index < len(on_plane) or on_plane[index].path == path:
            return False
        on_plane[index].points, on_plane[index].path = parse_path(path), path
        return True

    def undo(self) -> bool:
        """Remove the latest stroke; False when there is none."""
        return self.pop() is not None if self else False


def rasterise(strokes, spatial_shape: tuple, scale: float, n_frames: int = 1) -> np.ndarray:
    """Label images of strokes drawn as thick polylines, one per frame; later strokes cover earlier ones.

    Parameters
    ----------
    strokes : sequence of Stroke
    spatial_shape : tuple
        ``(rows, cols)`` or ``(planes, rows, cols)`` of one frame.
    scale : float
        Full-resolution pixels per displayed pixel (a stroke's width is in displayed pixels).
    n_frames : int

    Returns
    -------
    labels : ndarray of shape ``(n_frames,) + spatial_shape``
        0 where nothing is drawn, else the stroke's class; uint8 for classes
        up to 255, else uint16 (int32 past 65535).
    """
    top = max((s.label for s in strokes), default=0)
    labels = np.zeros((n_frames,) + tuple(spatial_shape),
                      np.uint8 if top < 2**8 else np.uint16 if top < 2**16 else np.int32)
    planes = labels.reshape((n_frames, -1) + labels.shape[-2:])  # a view: (frames, planes, rows, cols)
    shift = 4  # sub-pixel precision of the vertices: 1/16 pixel
    for s in strokes:
        pts = np.round(s.points * (1 << shift)).astype(np.int32).reshape(-1, 1, 2)
        thickness = max(1, int(round(s.width * scale)))
        cv2.polylines(planes[s.frame, s.plane], [pts], False, int(s.label), thickness=thickness,
                      lineType=cv2.LINE_8, shift=shift)
    return labels
