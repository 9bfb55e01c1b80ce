"""Multiscale per-pixel features: the backend-neutral driver.

The features are those of :func:`skimage.feature.multiscale_basic_features`:
for every channel and every sigma, the Gaussian-smoothed intensity, the Sobel
magnitude of the smoothed image and the eigenvalues of its Hessian (computed
with ``np.gradient`` twice), in that order. The backend modules supply the
three primitives (``gaussian``, ``sobel``, ``hessian_eigenvalues``); this
module decides what to compute and in which order, once for both backends.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterator

import numpy as np

from . import _backend
from ._validation import prepare_image, warn_if_rgb

__all__ = ["FeatureParams", "multiscale_basic_features", "multiscale_features"]

MAX_SIGMA = 1024.0
"""Largest sigma: its Gaussian reads 8193 pixels per axis, and a tile's halo is 4098 pixels."""
MAX_SIGMAS = 64
"""Most sigmas a feature set may use (one per octave from 0.5 to 1024 is 12)."""


@dataclass(frozen=True)
class FeatureParams:
    """Which features, at which scales.

    Attributes
    ----------
    intensity, edges, texture : bool
        Smoothed intensity; Sobel magnitude of it; Hessian eigenvalues of it.
    sigma_min, sigma_max : float
        Smallest and largest Gaussian sigma, in pixels; ``sigma_max`` at most
        :data:`MAX_SIGMA`.
    num_sigma : int or None
        Number of sigmas, log2-spaced between the two; ``None`` gives one per
        octave, ``int(log2(sigma_max) - log2(sigma_min) + 1)``. At most
        :data:`MAX_SIGMAS` either way.
    """

    intensity: bool = True
    edges: bool = True
    texture: bool = True
    sigma_min: float = 0.5
    sigma_max: float = 16.0
    num_sigma: int | None = None

    def __post_init__(self):
        """Store canonical types (``bool``, ``float``, ``int`` or ``None``): equal parameters are equal dicts."""
        for name, kind in (("intensity", bool), ("edges", bool), ("texture", bool), ("sigma_min", float),
                           ("sigma_max", float)):
            object.__setattr__(self, name, kind(getattr(self, name)))
        if self.num_sigma is not None:
            object.__setattr__(self, "num_sigma", int(self.num_sigma))
        if not (self.intensity or self.edges or self.texture):
            raise ValueError(
                "At least one of intensity, edges or texture must be True for features to be computed."
            )
        if not (np.isfinite(self.sigma_min) and np.isfinite(self.sigma_max)):
            raise ValueError("sigma_min and sigma_max must be finite numbers.")
        if not 0 < self.sigma_min <= self.sigma_max:
            raise ValueError(
                f"Need 0 < sigma_min <= sigma_max, got sigma_min={self.sigma_min}, sigma_max={self.sigma_max}."
            )
        if self.num_sigma is not None and int(self.num_sigma) < 1:
            raise ValueError(f"num_sigma must be a positive integer or None, got {self.num_sigma}.")
        if self.sigma_max > MAX_SIGMA:
            raise ValueError(
                f"sigma_max={self.sigma_max} is over {MAX_SIGMA} pixels: every pixel would read "
                f"{2 * int(4 * self.sigma_max + 0.5) + 1} neighbours per axis. Choose sigma_max <= {MAX_SIGMA} "
                "(structures that large are better segmented on a downsampled image)."
            )
        n = self.num_sigma if self.num_sigma is not None else np.log2(self.sigma_max) - np.log2(self.sigma_min) + 1
        if n > MAX_SIGMAS:
            raise ValueError(
                f"These settings give {int(n)} sigmas (sigma_min={self.sigma_min}, sigma_max={self.sigma_max}, "
                f"num_sigma={self.num_sigma}); at most {MAX_SIGMAS} are allowed. Raise sigma_min or lower num_sigma."
            )

    def sigmas(self) -> np.ndarray:
        """The Gaussian sigmas, as scikit-image computes them (float64, increasing)."""
        num = self.num_sigma
        if num is None:
            num = int(np.log2(self.sigma_max) - np.log2(self.sigma_min) + 1)
        return np.logspace(np.log2(self.sigma_min), np.log2(self.sigma_max), num=int(num), base=2, endpoint=True)

    def per_sigma(self, ndim: int) -> int:
        """Features per channel and sigma: intensity + edges + ``ndim`` eigenvalues."""
        return int(self.intensity) + int(self.edges) + (ndim if self.texture else 0)

    def n_features(self, ndim: int, n_channels: int = 1) -> int:
        """Length of the feature axis for an image of ``ndim`` spatial axes."""
        return n_channels * len(self.sigmas()) * self.per_sigma(ndim)

    def names(self, ndim: int, n_channels: int = 1) -> list:
        """Names of the features, in the order of the feature axis.

        Parameters
        ----------
        ndim : int
            Spatial dimensions of the image (2 or 3).
        n_channels : int
            Channels of the image.

        Returns
        -------
        names : list of str, ``n_features(ndim, n_channels)`` long
            ``"ch{c} σ={sigma} {kind}"`` with kind ``intensity``, ``edges`` or
            ``hessian-eig-{k}`` (k = 1 the largest eigenvalue), e.g.
            ``"ch0 σ=2.0 hessian-eig-1"``; sigmas written with as few digits as
            keep them apart (at least 3 significant).
        """
        kinds = (["intensity"] * self.intensity + ["edges"] * self.edges
                 + [f"hessian-eig-{k}" for k in range(1, ndim + 1)] * self.texture)
        sigmas = _sigma_labels(self.sigmas())
        return [f"ch{c} σ={s} {kind}" for c in range(n_channels) for s in sigmas for kind in kinds]

    def halo(self) -> int:
        """Pixels of context a tile needs on each side to give exact features.

        The Gaussian reads ``int(4 * sigma + 0.5)`` pixels either side (scikit-image's
        truncate=4), and the Hessian's gradient of the gradient two more (the Sobel
        stencil reads one, which the two cover).
        """
        return int(4.0 * float(self.sigmas()[-1]) + 0.5) + 2

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureParams":
        return cls(**{name: d[name] for name in cls.__dataclass_fields__})


def _sigma_labels(sigmas: np.ndarray) -> list:
    """Sigmas as short decimal strings (``2.0``, ``0.794``), with enough digits to be distinct."""
    for digits in range(3, 18):
        labels = [np.format_float_positional(s, precision=digits, fractional=False, trim="0") for s in sigmas]
        if len(set(labels)) == len(labels):
            break
    return labels


def iter_features(image, params: FeatureParams, be) -> Iterator:
    """Yield the feature images of a float32 channels-last image, in order.

    Parameters
    ----------
    image : array of shape ``spatial_shape + (n_channels,)``, float32
        Already scaled and checked (see ``prepare_image``).
    params : FeatureParams
    be : module
        The backend primitives (``gpuseg._cpu`` or ``gpuseg._gpu``).

    Yields
    ------
    feature : array of shape ``spatial_shape``, float32
        ``params.n_features(ndim, n_channels)`` of them: for each channel, for
        each sigma, intensity, edges, then the Hessian eigenvalues in
        decreasing order.
    """
    sigmas = params.sigmas()
    for c in range(image.shape[-1]):
        channel = be.ascontiguous(image[..., c])
        for sigma in sigmas:
            smoothed = be.gaussian(channel, float(sigma))
            if params.intensity:
                yield smoothed
            if params.edges:
                yield be.sobel(smoothed)
            if params.texture:
                yield from be.hessian_eigenvalues(smoothed)


def multiscale_features(
    image,
    intensity: bool = True,
    edges: bool = True,
    texture: bool = True,
    sigma_min: float = 0.5,
    sigma_max: float = 16,
    num_sigma: int | None = None,
    workers: int | None = None,
    *,
    channel_axis: int | None = None,
    num_workers: int | None = None,
    backend: str = "auto",
):
    """Local multiscale features of a 2D or 3D, grayscale or multichannel image.

    Also available as ``gpuseg.multiscale_basic_features``: the signature is
    :func:`skimage.feature.multiscale_basic_features`'s (cuCIM's on the GPU).
    On the CPU backend the values equal scikit-image's with the same arguments
    bit for bit (3D Hessian eigenvalues: within float32 rounding), computed
    faster; on the GPU backend (cuCIM) they agree within float32 rounding and
    are computed on the device.

    Parameters
    ----------
    image : ndarray or cupy.ndarray
        Spatial shape ``(rows, cols)`` or ``(planes, rows, cols)``, plus one
        channel axis where ``channel_axis`` is given. Integer images are scaled
        to [0, 1] (signed: [-1, 1]) as scikit-image's ``img_as_float32`` does;
        float images are used as they are.
    intensity, edges, texture : bool
        Gaussian-smoothed intensity; Sobel magnitude of the smoothed image;
        eigenvalues of its Hessian (``ndim`` of them).
    sigma_min, sigma_max : float
        Range of Gaussian sigmas in pixels.
    num_sigma : int, optional
        Number of sigmas, log2-spaced; default one per octave.
    workers : int, optional
        Accepted for scikit-image compatibility and ignored: the CPU backend
        uses every core through Numba, the GPU backend the device.
    channel_axis : int, optional
        Axis of ``image`` holding channels; ``None`` for a grayscale image.
    num_workers : int, optional
        cuCIM's (and older scikit-image's) name of ``workers``; ignored too.
    backend : {"auto", "cpu", "gpu"}
        Where to compute. See :func:`gpuseg._backend.resolve_backend`.

    Returns
    -------
    features : ndarray (CPU backend) or cupy.ndarray (GPU backend), float32
        Shape ``spatial_shape + (n_features,)`` with
        ``n_features = n_channels * n_sigmas * (intensity + edges + ndim * texture)``.
        For each channel, for each sigma: intensity, edges, eigenvalues; named
        by :meth:`FeatureParams.names`.

    Raises
    ------
    ValueError
        NaN or infinite values, a channel axis out of range, too few pixels,
        or no feature type selected.
    TypeError
        An image that is not numeric.

    Warns
    -----
    UserWarning
        An ``(H, W, 3)`` or ``(H, W, 4)`` image with ``channel_axis=None``: it
        is taken as a volume; pass ``channel_axis=-1`` for RGB.
    """
    del workers, num_workers  # accepted for compatibility only (see above)
    params = FeatureParams(intensity, edges, texture, sigma_min, sigma_max, num_sigma)
    be = _backend.backend_module(_backend.resolve_backend(backend))
    warn_if_rgb(image.shape, channel_axis)
    img = prepare_image(be.asarray(image), channel_axis, be)
    spatial = img.shape[:-1]
    out = be.empty(spatial + (params.n_features(len(spatial), img.shape[-1]),))
    for i, feature in enumerate(iter_features(img, params, be)):
        out[..., i] = feature
    return out


multiscale_basic_features = multiscale_features
"""scikit-image's (and cuCIM's) name of :func:`multiscale_features`: the same function."""
