"""The validation set the feature defaults are chosen on: real and synthetic images with ground truth, offline.

Five images, 2D and 3D, none of them the standard benchmark's textures, each
scribbled at two densities (:data:`DENSITIES`):

``photo-mosaic``
    regions (smooth random shapes) filled with textures of four photographs
    bundled with scikit-image (``moon``, ``immunohistochemistry``, ``cell``,
    ``hubble_deep_field``), each scaled to the same mean and spread, so only
    texture tells them apart;
``coins``
    scikit-image's ``coins`` photograph; its truth is the segmentation of
    scikit-image's own gallery (Sobel elevation map, watershed from markers
    below 30 and above 150, holes filled), coins against background;
``nuclei-2d``
    synthetic fluorescent nuclei (ellipses with chromatin texture, varying
    brightness, uneven illumination), blurred by a PSF, with Poisson and read
    noise; classes background, nucleus, and the two-pixel rim inside each
    nucleus's border (what separates touching nuclei);
``vessels-2d``
    dark curvilinear vessels of varying width on a textured background,
    blurred and noisy (a retina or neurite image's difficulty: thin ridges);
``nuclei-3d``
    synthetic nuclei in a volume imaged with a z-step four times the pixel
    size (``spacing = (4, 1, 1)``): made on a fine isotropic grid, blurred by
    an axially elongated PSF, then every fourth plane kept.

``cells3d``, ``human_mitosis`` and ``kidney`` are not in scikit-image's wheel
(they are fetched over the network on first use), so the set does not use them.
Scribbles are :func:`benchmarks.data.scribble`'s strokes, drawn in planes of
the last two axes as a user draws on slices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from .data import COARSE, coarse_regions, scribble

DENSITIES = {"sparse": 0.002, "dense": 0.02}
"""Scribble densities: the approximate fraction of pixels labelled."""
PHOTOS = ("moon", "immunohistochemistry", "cell", "hubble_deep_field")


@dataclass
class Case:
    """One validation image.

    Attributes
    ----------
    name : str
    image : float32 ndarray, 2D or 3D
    truth : uint8 ndarray of the image's shape, classes ``1..K``
    spacing : tuple of float or None
        Physical pixel size per axis, as a file's metadata would give it.
    """

    name: str
    image: np.ndarray
    truth: np.ndarray
    spacing: tuple | None = None

    def scribbles(self, density: str, seed: int = 0) -> np.ndarray:
        """Strokes labelling about ``DENSITIES[density]`` of the pixels (0 = unlabelled)."""
        return scribble(self.truth, DENSITIES[density], np.random.default_rng(seed))


def _gray(name: str) -> np.ndarray:
    from skimage import data
    from skimage.color import rgb2gray

    img = getattr(data, name)()
    return (rgb2gray(img) if img.ndim == 3 else img / 255.0).astype(np.float32)


def photo_mosaic(shape=(512, 512), seed=0) -> Case:
    rng = np.random.default_rng(seed)
    textures = []
    for name in PHOTOS:
        t = _gray(name)[:512, :512]
        textures.append(np.tile((t - t.mean()) / t.std(), (-(-shape[0] // t.shape[0]), -(-shape[1] // t.shape[1]))))
    regions = coarse_regions(shape, rng, len(PHOTOS))
    truth = np.kron(regions, np.ones((COARSE, COARSE), np.uint8))[:shape[0], :shape[1]] + 1
    image = np.choose(truth - 1, [t[:shape[0], :shape[1]] for t in textures]) * 0.15 + 0.5
    return Case("photo-mosaic", image.astype(np.float32), truth.astype(np.uint8))


def coins() -> Case:
    from skimage import data, filters, segmentation

    image = data.coins()
    markers = np.zeros(image.shape, np.uint8)
    markers[image < 30] = 1
    markers[image > 150] = 2
    truth = segmentation.watershed(filters.sobel(image), markers)
    truth = (ndi.binary_fill_holes(truth == 2) + 1).astype(np.uint8)
    return Case("coins", (image / 255.0).astype(np.float32), truth)


def _nuclei(shape, n, radii, rng):
    """Label image of ``n`` ellipsoidal nuclei (later ones on top), and each one's brightness."""
    labels = np.zeros(shape, np.int32)
    ndim = len(shape)
    for k in range(1, n + 1):
        centre = [rng.uniform(0, s) for s in shape]
        semi = rng.uniform(*radii) * rng.uniform(0.6, 1.0, len(shape))
        rot = np.linalg.qr(rng.standard_normal((len(shape), len(shape))))[0]
        box = tuple(slice(max(0, int(c - radii[1] - 1)), min(s, int(c + radii[1] + 2))) for c, s in zip(centre, shape))
        coords = [(np.arange(b.start, b.stop) - c).reshape((-1,) + (1,) * (ndim - 1 - i))
                  for i, (b, c) in enumerate(zip(box, centre))]
        dist = sum(sum(rot[i, j] * coords[j] for j in range(len(shape))) ** 2 / semi[i] ** 2
                   for i in range(len(shape)))
        labels[box][dist <= 1] = k
    return labels, rng.uniform(0.35, 1.0, n + 1)


def _microscope(clean, psf_sigma, photons, rng):
    """Blur by a Gaussian PSF, then Poisson noise at ``photons`` per unit and read noise."""
    blurred = ndi.gaussian_filter(clean, psf_sigma)
    noisy = rng.poisson(np.clip(blurred, 0, None) * photons) / photons + rng.normal(0, 0.02, clean.shape)
    return noisy.astype(np.float32)


def _fluorescence(labels, brightness, rng):
    texture = ndi.gaussian_filter(rng.standard_normal(labels.shape), 1.5)
    texture /= texture.std()
    illumination = 1 + 0.3 * ndi.gaussian_filter(rng.standard_normal(labels.shape), 60) * 40
    return (0.08 + (labels > 0) * brightness[labels] * (1 + 0.25 * texture)) * illumination


def nuclei_2d(shape=(512, 512), seed=0) -> Case:
    rng = np.random.default_rng(seed)
    labels, brightness = _nuclei(shape, 90, (9, 20), rng)
    image = _microscope(_fluorescence(labels, brightness, rng), 1.5, 60, rng)
    rim = (labels > 0) & ~ndi.binary_erosion(labels > 0, iterations=2)
    rim |= (labels > 0) & (ndi.grey_dilation(labels, size=3) != ndi.grey_erosion(labels, size=3)) & \
        ndi.binary_dilation(rim, iterations=2)
    truth = np.where(labels > 0, np.where(rim, 3, 2), 1).astype(np.uint8)
    return Case("nuclei-2d", image, truth)


def vessels_2d(shape=(512, 512), seed=0) -> Case:
    rng = np.random.default_rng(seed)
    vessel = np.zeros(shape, bool)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    for _ in range(22):
        p = rng.uniform(0, shape[0], 2)
        angle = rng.uniform(0, 2 * np.pi)
        width = rng.uniform(1.0, 3.5)
        turns = ndi.gaussian_filter1d(rng.normal(0, 0.25, 400), 8)
        for step in range(400):
            angle += turns[step]
            p = p + 1.5 * np.array([np.sin(angle), np.cos(angle)])
            if not (0 <= p[0] < shape[0] and 0 <= p[1] < shape[1]):
                break
            lo = np.maximum(0, (p - width - 1).astype(int))
            hi = np.minimum(shape, (p + width + 2).astype(int))
            sub = (slice(lo[0], hi[0]), slice(lo[1], hi[1]))
            vessel[sub] |= (yy[sub] - p[0]) ** 2 + (xx[sub] - p[1]) ** 2 <= width**2
    background = 0.6 + 0.12 * ndi.gaussian_filter(rng.standard_normal(shape), 6) * 6
    clean = background - 0.3 * vessel
    return Case("vessels-2d", _microscope(clean, 1.0, 200, rng), np.where(vessel, 2, 1).astype(np.uint8))


def nuclei_3d(shape=(24, 128, 128), z_step=4, seed=0) -> Case:
    rng = np.random.default_rng(seed)
    fine = (shape[0] * z_step,) + tuple(shape[1:])
    labels, brightness = _nuclei(fine, 45, (8, 15), rng)
    image = _microscope(_fluorescence(labels, brightness, rng), (3.0, 1.2, 1.2), 60, rng)[::z_step]
    truth = np.where(labels[::z_step] > 0, 2, 1).astype(np.uint8)
    return Case("nuclei-3d", image, truth, spacing=(float(z_step), 1.0, 1.0))


def cases(small: bool = False) -> list:
    """The validation set; ``small`` halves every edge (a quick run)."""
    f = 2 if small else 1
    return [photo_mosaic((512 // f, 512 // f)), coins(), nuclei_2d((512 // f, 512 // f)),
            vessels_2d((512 // f, 512 // f)), nuclei_3d((24 // f, 128 // f, 128 // f))]
