"""Test images with ground truth and user-like scribbles, made without a network.

An image is a mosaic of scikit-image's bundled textures: smooth random regions
(about a hundred pixels across, whatever the image size, as a larger field of
view would show), each filled with the texture of its class plus a little
noise. Scribbles are short strokes of a few pixels' width drawn inside the
regions, each in one plane of the last two axes as a user draws on a slice,
until about ``labelled_fraction`` of the pixels carry a label. 3D images are a
stack whose textures shift from plane to plane.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from skimage import data as skdata

TEXTURES = ("grass", "brick", "gravel")
"""Class ``k + 1`` is filled with ``skimage.data.<TEXTURES[k]>()``."""

COARSE = 8
"""Regions are drawn on a grid this many times coarser than the image."""

LABELLED_FRACTION = 0.02
STROKE_LENGTH = 48
STROKE_WIDTH = 3
BLOCK_ROWS = 512
"""Rows (of the first axis) filled at a time, which bounds the generator's memory."""


def _textures() -> np.ndarray:
    """The class textures as float32 in [0, 1], shape ``(n_classes, 512, 512)``."""
    return np.stack([getattr(skdata, name)()[:512, :512] for name in TEXTURES]).astype(np.float32) / 255


def coarse_regions(shape: tuple[int, ...], rng: np.random.Generator, n_classes: int = len(TEXTURES)) -> np.ndarray:
    """Class (0-based) of every cell of the coarse grid: argmax of smoothed noise per class."""
    coarse_shape = tuple(max(1, -(-n // COARSE)) for n in shape)
    noise = rng.standard_normal((n_classes,) + coarse_shape).astype(np.float32)
    sigma = (0,) + tuple(min(3.0, n / 8) for n in coarse_shape)
    return np.argmax(ndi.gaussian_filter(noise, sigma, mode="wrap"), axis=0).astype(np.uint8)


def _fill(shape, coarse, textures, rng) -> tuple[np.ndarray, np.ndarray]:
    """The image and its ground truth (classes ``1..K``), filled block by block."""
    image = np.empty(shape, np.float32)
    truth = np.empty(shape, np.uint8)
    size = textures.shape[-1]
    cols = np.arange(shape[-1])
    for start in range(0, shape[0], BLOCK_ROWS):
        stop = min(start + BLOCK_ROWS, shape[0])
        grids = np.meshgrid(*[np.arange(start, stop)] + [np.arange(n) for n in shape[1:]], indexing="ij", sparse=True)
        regions = coarse[tuple(g // COARSE for g in grids)]
        shift = sum(7 * (k + 1) * g for k, g in enumerate(grids[:-2])) if len(shape) > 2 else 0
        rows = (grids[-2] + shift) % size
        tex = textures[regions, rows, cols % size]
        image[start:stop] = tex + rng.normal(0, 0.05, tex.shape).astype(np.float32)
        truth[start:stop] = regions + 1
    return image, truth


def scribble(truth: np.ndarray, labelled_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Strokes labelled with the class under them (classes ``1..truth.max()``), clipped to stay inside that class.

    Each class gets the same number of strokes (at least 4, fewer for a class
    covering less than about ``1 / (16 n_classes)`` of the image), centred on
    random pixels of it.
    """
    shape = truth.shape
    n_classes = int(truth.max())
    per_class = max(4, int(labelled_fraction * truth.size / (STROKE_LENGTH * STROKE_WIDTH * n_classes)))
    candidates = np.stack([rng.integers(0, n, 16 * per_class * n_classes) for n in shape], axis=1)
    candidate_class = truth[tuple(candidates.T)]
    centres = np.concatenate([candidates[candidate_class == k][:per_class] for k in range(1, n_classes + 1)])
    n_strokes = len(centres)
    angle = rng.uniform(0, np.pi, n_strokes)
    direction = np.stack([np.sin(angle), np.cos(angle)], axis=1)
    normal = np.stack([-direction[:, 1], direction[:, 0]], axis=1)
    t = np.arange(STROKE_LENGTH) - STROKE_LENGTH / 2
    w = np.arange(STROKE_WIDTH) - (STROKE_WIDTH - 1) / 2
    plane = (
        centres[:, None, None, -2:]
        + t[None, :, None, None] * direction[:, None, None, :]
        + w[None, None, :, None] * normal[:, None, None, :]
    )
    coords = [np.broadcast_to(centres[:, None, None, k], plane.shape[:3]) for k in range(len(shape) - 2)]
    coords += [np.rint(plane[..., k]).astype(np.int64) for k in range(2)]
    coords = [c.reshape(n_strokes, -1) for c in coords]
    inside = np.all([(c >= 0) & (c < n) for c, n in zip(coords, shape)], axis=0)
    centre_class = np.broadcast_to(truth[tuple(centres.T)][:, None], inside.shape)[inside]
    idx = tuple(c[inside] for c in coords)
    same = truth[idx] == centre_class
    scribbles = np.zeros(shape, np.uint8)
    scribbles[tuple(i[same] for i in idx)] = centre_class[same]
    return scribbles


def make_image(
    shape: tuple[int, ...], *, labelled_fraction: float = LABELLED_FRACTION, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A textured test image with its ground truth and scribbles.

    Parameters
    ----------
    shape : tuple of int
        ``(rows, cols)`` or ``(planes, rows, cols)``.
    labelled_fraction : float
        Approximate fraction of pixels the scribbles label.
    seed : int
        Seed of the random generator; the same seed and shape give the same arrays.

    Returns
    -------
    image : ndarray of shape ``shape``, float32
        Values about in [0, 1].
    truth : ndarray of shape ``shape``, uint8
        Class of every pixel, ``1..len(TEXTURES)``.
    scribbles : ndarray of shape ``shape``, uint8
        ``0`` where unlabelled, else the class (equal to ``truth`` there).
    """
    if len(shape) not in (2, 3):
        raise ValueError(f"shape must be 2D or 3D, got {shape}")
    rng = np.random.default_rng(seed)
    image, truth = _fill(tuple(shape), coarse_regions(shape, rng), _textures(), rng)
    return image, truth, scribble(truth, labelled_fraction, rng)


def write_case(directory: Path, shape: tuple[int, ...], *, zarr_chunks: int | None = None) -> int:
    """Write ``image.npy``, ``truth.npy`` and ``scribbles.npy`` for ``shape`` into ``directory``.

    Parameters
    ----------
    directory : Path
        Created if missing.
    shape : tuple of int
        Passed to :func:`make_image`.
    zarr_chunks : int, optional
        Also write the image as a Zarr v3 array ``image.zarr`` with chunks of
        this edge length.

    Returns
    -------
    labelled_pixels : int
        Number of pixels the scribbles label.
    """
    directory.mkdir(parents=True, exist_ok=True)
    image, truth, scribbles = make_image(shape)
    np.save(directory / "image.npy", image)
    np.save(directory / "truth.npy", truth)
    np.save(directory / "scribbles.npy", scribbles)
    if zarr_chunks is not None:
        import zarr

        z = zarr.create_array(
            store=str(directory / "image.zarr"), shape=image.shape, chunks=(zarr_chunks,) * image.ndim, dtype="float32"
        )
        z[...] = image
    return int(np.count_nonzero(scribbles))
