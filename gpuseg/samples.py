"""Sample images with ground truth, built from textures bundled with scikit-image (no network)."""

from __future__ import annotations

import numpy as np

TEXTURES = ("brick", "grass", "gravel")


def texture_mosaic(shape=(512, 512), *, seed: int = 0, scribble_width: int = 3):
    """A mosaic of scikit-image's bundled textures, its ground truth and user-like scribbles.

    Regions are the cells of a random Voronoi partition; each cell shows one of
    the textures ``brick``, ``grass``, ``gravel`` (tiled to the image size),
    and its class is the texture's (1, 2, 3). Scribbles are a few short
    strokes drawn well inside cells, as a user would draw them.

    Parameters
    ----------
    shape : tuple of int
        ``(rows, cols)`` of the 2D image.
    seed : int
        Seed of the partition and of the strokes.
    scribble_width : int
        Stroke width in pixels.

    Returns
    -------
    image : uint8 ndarray, shape ``shape``
    truth : uint8 ndarray, shape ``shape``, classes 1..3
    scribbles : uint8 ndarray, shape ``shape``; 0 = unlabelled, else the class
    """
    import cv2
    from scipy import ndimage as ndi
    from skimage import data

    rng = np.random.default_rng(seed)
    rows, cols = shape
    textures = []
    for name in TEXTURES:
        t = getattr(data, name)()
        reps = (-(-rows // t.shape[0]), -(-cols // t.shape[1]))
        textures.append(np.tile(t, reps)[:rows, :cols])
    n_cells = 9
    seeds = rng.uniform((0, 0), (rows, cols), size=(n_cells, 2))
    yy, xx = np.mgrid[0:rows, 0:cols]
    cell = np.argmin((yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2, axis=-1)
    cell_class = np.arange(n_cells) % len(TEXTURES)
    rng.shuffle(cell_class)
    truth = (cell_class[cell] + 1).astype(np.uint8)
    image = np.choose(truth - 1, textures).astype(np.uint8)
    scribbles = np.zeros(shape, np.uint8)
    margin = max(8, min(rows, cols) // 32)
    for c in range(n_cells):
        inside = ndi.distance_transform_edt(cell == c) > margin
        points = np.argwhere(inside)
        if len(points) < 2:
            continue
        for _ in range(2):
            a, b = points[rng.integers(len(points), size=2)]
            stroke = np.zeros(shape, np.uint8)
            cv2.line(stroke, (int(a[1]), int(a[0])), (int(b[1]), int(b[0])), 1, scribble_width)
            stroke &= inside
            scribbles[stroke > 0] = truth[a[0], a[1]]
    return image, truth, scribbles


def overlay(image, labels, *, alpha: float = 0.45):
    """RGB picture of ``labels`` over a grayscale or RGB 2D ``image`` (uint8 (rows, cols, 3))."""
    from skimage.color import label2rgb
    from skimage.exposure import rescale_intensity

    img = np.asarray(image, np.float32)
    img = rescale_intensity(img, out_range=(0.0, 1.0))
    if img.ndim == 3:
        img = img.mean(axis=-1)
    rgb = label2rgb(np.asarray(labels), image=img, alpha=alpha, bg_label=0)
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8)
