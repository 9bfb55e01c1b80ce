"""The app's stroke-to-overlay latency, measured on the path the app runs (:meth:`Session.refresh`)."""

from __future__ import annotations

import numpy as np

from .frames import Frames
from .session import Session
from .store import FeatureCache


def measure_stroke_to_overlay(image, *, channel_axis=None, backend: str = "auto", repeats: int = 3,
                              width: float = 8.0) -> float:
    """Median seconds from a new stroke to its overlay, features already cached (as in the app).

    The image is shown first (its features computed, as when the app shows it)
    and two strokes of two classes are drawn along its top and bottom quarters,
    all untimed; then ``repeats`` strokes, alternating classes, are each added and timed by
    :meth:`Session.refresh`, as the app does it.

    Parameters
    ----------
    image : ndarray
        2D ``(rows, cols)`` image, plus a channel axis at ``channel_axis``.
    channel_axis : int, optional
    backend : {"auto", "cpu", "gpu"}
    repeats : int
    width : float
        Stroke width in displayed pixels.

    Returns
    -------
    seconds : float
    """
    image = np.asarray(image)
    image = image[..., None] if channel_axis is None else np.moveaxis(image, channel_axis, -1)
    session = Session(Frames(image[None]), "benchmark", FeatureCache(), backend)
    rows, cols = session.spatial_shape[-2:]

    def line(frac_row, start, stop):
        ys = np.full(12, frac_row * rows)
        xs = np.linspace(start * cols, stop * cols, 12)
        return "M" + "L".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys))

    session.refresh(retrain=False, full=True)  # the image shown: its features computed
    session.strokes.add(line(0.25, 0.1, 0.9), 1, width)
    session.strokes.add(line(0.75, 0.1, 0.9), 2, width)
    times = []
    for i in range(repeats):
        session.strokes.add(line(0.3 + 0.4 * (i % 2) + 0.02 * i, 0.2, 0.8), 1 + i % 2, width)
        session.refresh()
        times.append(session.timings["stroke_to_overlay"])
    return float(np.median(times))
