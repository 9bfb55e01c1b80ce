"""Multiscale per-pixel features: the backend-neutral driver.

By default the features are those of :func:`skimage.feature.multiscale_basic_features`:
for every channel and every sigma, the Gaussian-smoothed intensity, the Sobel
magnitude of the smoothed image and the eigenvalues of its Hessian (computed
with ``np.gradient`` twice), in that order. ``FeatureParams.filters`` adds
ilastik's Gaussian-derivative filters (:data:`FILTERS`), each at its own
sigmas, after them; ``spacing`` makes the smoothing isotropic in physical units.
The backend modules supply the primitives (``gaussian`` with a derivative
order, ``sobel``, ``hessian_eigenvalues``, ``symmetric_eigenvalues``); this
module decides what to compute and in which order, once for both backends.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Iterator

import numpy as np

from . import _backend
from ._validation import prepare_image, warn_if_rgb
from .filters import FILTERS, ILASTIK_SIGMAS, filter_halo, filter_kinds, filter_width, filters_at, gaussian_radius

__all__ = ["DEFAULT_PRESET", "FILTERS", "PRESETS", "FeatureParams", "feature_set", "multiscale_basic_features",
           "multiscale_features"]

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
    filters : tuple of (str, tuple of float)
        ilastik's filters (names from :data:`FILTERS`) and the sigmas of each,
        computed after the three above; a ``{name: sigmas}`` dict is accepted
        and stored canonically (in :data:`FILTERS` order, sigmas increasing).
    spacing : tuple of float or None
        Physical size of a pixel along each spatial axis (e.g. ``(4, 1, 1)``
        for a z-step four times the pixel size). Sigmas are then in units of
        the finest axis and shrink along coarser ones, so the smoothing is
        isotropic in space; the filters' derivatives are per physical unit.
        Sobel and ``np.gradient`` (edges, texture) stay per pixel, as in
        scikit-image. ``None``: isotropic pixels.
    """

    intensity: bool = True
    edges: bool = True
    texture: bool = True
    sigma_min: float = 0.5
    sigma_max: float = 16.0
    num_sigma: int | None = None
    filters: tuple = ()
    spacing: tuple | None = None

    def __post_init__(self):
        """Store canonical types (``bool``, ``float``, ``int`` or ``None``): equal parameters are equal dicts."""
        for name, kind in (("intensity", bool), ("edges", bool), ("texture", bool), ("sigma_min", float),
                           ("sigma_max", float)):
            object.__setattr__(self, name, kind(getattr(self, name)))
        if self.num_sigma is not None:
            object.__setattr__(self, "num_sigma", int(self.num_sigma))
        filters = self.filters.items() if isinstance(self.filters, dict) else self.filters
        by_name = {}
        for name, sigmas in filters:
            if name not in FILTERS:
                raise ValueError(f"Unknown filter {name!r}; choose from {FILTERS}.")
            sigmas = tuple(sorted({float(x) for x in np.atleast_1d(sigmas)}))
            if not all(np.isfinite(x) and 0 < x <= MAX_SIGMA for x in sigmas) or len(sigmas) > MAX_SIGMAS:
                raise ValueError(f"The sigmas of {name!r} must be at most {MAX_SIGMAS} positive numbers up to "
                                 f"{MAX_SIGMA}, got {sigmas}.")
            if sigmas:
                by_name[name] = by_name.get(name, ()) + sigmas
        object.__setattr__(self, "filters", tuple((n, tuple(sorted(set(by_name[n])))) for n in FILTERS if n in by_name))
        if self.spacing is not None:
            spacing = tuple(float(x) for x in self.spacing)
            if not all(np.isfinite(x) and x > 0 for x in spacing):
                raise ValueError(f"spacing must hold positive finite numbers, got {self.spacing}.")
            object.__setattr__(self, "spacing", spacing)
        if not (self.intensity or self.edges or self.texture or self.filters):
            raise ValueError(
                "At least one of intensity, edges, texture or a filter must be selected for features to be computed."
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
        """scikit-image's features per channel and sigma: intensity + edges + ``ndim`` eigenvalues."""
        return int(self.intensity) + int(self.edges) + (ndim if self.texture else 0)

    def filter_sigmas(self) -> list:
        """The filters' sigmas, increasing, each with the filters computed at it (in :data:`FILTERS` order)."""
        at = {}
        for name, sigmas in self.filters:
            for sigma in sigmas:
                at.setdefault(sigma, []).append(name)
        return sorted(at.items())

    def n_features(self, ndim: int, n_channels: int = 1) -> int:
        """Length of the feature axis for an image of ``ndim`` spatial axes."""
        per_filter = sum(len(sigmas) * filter_width(name, ndim) for name, sigmas in self.filters)
        return n_channels * (len(self.sigmas()) * self.per_sigma(ndim) + per_filter)

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
            ``"ch0 σ=2.0 hessian-eig-1"``, then the filters' kinds: ``gaussian``,
            ``laplacian``, ``gradient-magnitude``, ``dog``, ``structure-eig-{k}``,
            ``hessian-of-gaussian-eig-{k}``; sigmas written with as few digits as
            keep them apart (at least 3 significant).
        """
        kinds = (["intensity"] * self.intensity + ["edges"] * self.edges
                 + [f"hessian-eig-{k}" for k in range(1, ndim + 1)] * self.texture)
        sigmas = _sigma_labels(self.sigmas()) if kinds else []
        at = self.filter_sigmas()
        labels = dict(zip([s for s, _ in at], _sigma_labels(np.array([s for s, _ in at]))))
        filters = [(labels[s], kind) for s, names in at for name in names for kind in filter_kinds(name, ndim)]
        return [name for c in range(n_channels) for name in
                [f"ch{c} σ={s} {kind}" for s in sigmas for kind in kinds] + [f"ch{c} σ={s} {k}" for s, k in filters]]

    def halo(self) -> int:
        """Pixels of context a tile needs on each side to give exact features.

        scikit-image's features: the Gaussian reads ``int(4 * sigma + 0.5)``
        pixels either side (truncate=4), and the Hessian's gradient of the
        gradient two more (the Sobel stencil reads one, which the two cover).
        Filters: the Gaussian's (or its derivative's) radius at their sigma;
        the structure tensor adds the radius of its outer scale. A coarser axis
        (``spacing``) has smaller sigmas, so needs no more than this.
        """
        halo = gaussian_radius(self.sigmas()[-1]) + 2 if self.per_sigma(1) else 0
        return max([halo] + [filter_halo(name, sigmas[-1]) for name, sigmas in self.filters])

    def axis_sigmas(self, sigma: float, ndim: int) -> tuple:
        """``sigma`` (in units of the finest axis) per axis of an ``ndim``-D image, from ``spacing``."""
        return tuple(float(sigma) / r for r in self._relative_spacing(ndim))

    def _relative_spacing(self, ndim: int) -> tuple:
        if self.spacing is None:
            return (1.0,) * ndim
        if len(self.spacing) != ndim:
            raise ValueError(f"spacing {self.spacing} must have one entry per spatial axis of a {ndim}D image.")
        finest = min(self.spacing)
        return tuple(x / finest for x in self.spacing)

    def to_dict(self) -> dict:
        """JSON-ready parameters (what a model file stores)."""
        d = {name: getattr(self, name) for name in ("intensity", "edges", "texture", "sigma_min", "sigma_max",
                                                      "num_sigma")}
        d["filters"] = {name: list(sigmas) for name, sigmas in self.filters}
        d["spacing"] = None if self.spacing is None else list(self.spacing)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureParams":
        """Inverse of :meth:`to_dict`; ``filters`` and ``spacing`` may be missing (older model files)."""
        return cls(**{name: d[name] for name in cls.__dataclass_fields__ if name in d or name not in _ADDED})


_ADDED = ("filters", "spacing")
"""Fields that model files written before them lack."""


def _sigma_labels(sigmas: np.ndarray) -> list:
    """Sigmas as short decimal strings (``2.0``, ``0.794``), with enough digits to be distinct."""
    for digits in range(3, 18):
        labels = [np.format_float_positional(s, precision=digits, fractional=False, trim="0") for s in sigmas]
        if len(set(labels)) == len(labels):
            break
    return labels


COMPACT_SIGMAS = (0.7, 1.6, 3.5, 10.0)

PRESETS = {
    "skimage": FeatureParams(),
    "ilastik": FeatureParams(intensity=False, edges=False, texture=False,
                             filters={"gaussian": ILASTIK_SIGMAS,
                                      **{name: ILASTIK_SIGMAS[1:] for name in FILTERS[1:]}}),
    "compact": FeatureParams(intensity=False, edges=False, texture=False,
                             filters={name: COMPACT_SIGMAS for name in FILTERS}),
}
"""Feature sets by name: ``"skimage"`` is :func:`skimage.feature.multiscale_basic_features`'s
default (24 features in 2D); ``"ilastik"`` is ilastik's full standard set at its default
scales (49); ``"compact"`` is ilastik's six filters at four of its scales (32), the
:class:`~gpuseg.Segmenter`'s default, chosen on the validation set
(``python -m benchmarks --scenario accuracy``)."""
DEFAULT_PRESET = "compact"


def feature_set(preset: str | None = None, spacing=None, **arguments) -> FeatureParams:
    """The features of a preset, or of the feature arguments not ``None``, else :data:`DEFAULT_PRESET`'s.

    Parameters
    ----------
    preset : str, optional
        A key of :data:`PRESETS`.
    spacing : tuple of float, optional
        Added to any of them.
    **arguments
        ``FeatureParams`` fields (``None``: not given); missing ones take
        ``FeatureParams``'s defaults (scikit-image's features).

    Raises
    ------
    ValueError
        An unknown preset, or a preset with feature arguments.
    """
    given = {k: v for k, v in arguments.items() if v is not None}
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"Unknown feature preset {preset!r}; choose from {sorted(PRESETS)}.")
    if preset is not None and given:
        raise ValueError(f"Pass a feature preset or feature arguments, not both (preset={preset!r}, {sorted(given)}).")
    if given:
        return FeatureParams(**given, spacing=spacing)
    return replace(PRESETS[preset or DEFAULT_PRESET], spacing=spacing)


def iter_features(image, params: FeatureParams, be, region=None, out=None) -> Iterator:
    """Yield the feature images of a float32 channels-last image, in order.

    Parameters
    ----------
    image : array of shape ``spatial_shape + (n_channels,)``, float32
        Already scaled and checked (see ``prepare_image``).
    params : FeatureParams
    be : module
        The backend primitives (``gpuseg._cpu`` or ``gpuseg._gpu``).
    region : tuple of slice, optional
        The box of the spatial axes to yield (default: all of it), each value
        that of the whole image: the filters read the whole image, and the
        derivative ones compute the box alone on the CPU (the GPU crops cuCIM's
        whole result).
    out : array of shape ``(n_features,) + region shape``, optional
        Where the features go, feature ``i`` into ``out[i]`` (the derivative
        filters write there directly); the yielded arrays are its slots then.

    Yields
    ------
    feature : array of the region's shape, float32
        ``params.n_features(ndim, n_channels)`` of them: for each channel, for
        each sigma, intensity, edges, then the Hessian eigenvalues in
        decreasing order; then for each of ``params.filter_sigmas()``, its
        filters in :data:`FILTERS` order (eigenvalues decreasing).
    """
    ndim = image.ndim - 1
    sigmas = params.sigmas() if params.per_sigma(ndim) else ()
    slots = iter(out) if out is not None else itertools.repeat(None)  # each feature's slot of out

    def stored(feature):
        """``feature``'s region, in its slot when there is one."""
        crop = feature if region is None else feature[tuple(region)]
        target = next(slots)
        if target is None:
            return crop
        be.assign(target, crop)
        return target

    for c in range(image.shape[-1]):
        channel = be.ascontiguous(image[..., c])
        for sigma in sigmas:
            smoothed = be.gaussian(channel, params.axis_sigmas(sigma, ndim))
            if params.intensity:
                yield stored(smoothed)
            if params.edges:
                yield be.sobel(smoothed, region, next(slots))
            if params.texture:
                targets = [next(slots) for _ in range(ndim)]
                yield from be.hessian_eigenvalues(smoothed, region, None if out is None else targets)
        for sigma, names in params.filter_sigmas():
            for feature in filters_at(channel, params.axis_sigmas(sigma, ndim), params._relative_spacing(ndim),
                                      names, be):
                yield stored(feature)


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
    filters=(),
    spacing=None,
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
    filters : dict or tuple of (str, sigmas), optional
        ilastik's filters to add (see :data:`FILTERS`), e.g.
        ``{"laplacian": (1, 3.5), "structure_tensor": (1.6,)}``; pass
        ``intensity=edges=texture=False`` for the filters alone, or
        ``**PRESETS["ilastik"].to_dict()`` for ilastik's set.
    spacing : tuple of float, optional
        Physical pixel size per spatial axis (see :class:`FeatureParams`).
    num_workers : int, optional
        cuCIM's (and older scikit-image's) name of ``workers``; ignored too.
    backend : {"auto", "cpu", "gpu"}
        Where to compute. See :func:`gpuseg._backend.resolve_backend`.

    Returns
    -------
    features : ndarray (CPU backend) or cupy.ndarray (GPU backend), float32
        Shape ``spatial_shape + (n_features,)`` with
        ``n_features = n_channels * (n_sigmas * (intensity + edges + ndim * texture) + n_filter_features)``.
        For each channel, for each sigma: intensity, edges, eigenvalues; then
        the filters (see :func:`iter_features`); named by
        :meth:`FeatureParams.names`. The filters are SciPy's ``gaussian_filter``
        derivatives summed in float32 on both backends (within float32
        rounding of SciPy's float64 sums).

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
    params = FeatureParams(intensity, edges, texture, sigma_min, sigma_max, num_sigma, filters, spacing)
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
