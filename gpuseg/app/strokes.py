"""Scribbles: strokes as the figure draws them, and the label image they make.

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
