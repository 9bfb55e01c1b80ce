"""ilastik's filters: names, how many features each gives, their halos, and their computation (backend-neutral).

Every filter is built from separable Gaussian (derivative) passes, the
backend's ``gaussian_1d`` (SciPy's ``gaussian_filter1d`` summed in float32 on
both backends), and pointwise arithmetic, so a pixel's value depends only on
the pixels within :func:`filter_halo` of it, computed the same way wherever it
lies: tiles with that halo equal the whole image exactly.
"""

from __future__ import annotations

from itertools import combinations_with_replacement
from typing import Iterator

import numpy as np

FILTERS = ("gaussian", "laplacian", "gradient_magnitude", "dog", "structure_tensor", "hessian_of_gaussian")
"""ilastik's standard filters, in feature order: Gaussian smoothing, Laplacian of Gaussian,
Gaussian gradient magnitude, difference of Gaussians ``G(sigma) - G(0.66 sigma)``,
structure-tensor eigenvalues (gradient at ``sigma``, products smoothed at ``sigma / 2``)
and Hessian-of-Gaussian eigenvalues; the last two give ``ndim`` features each, the others one.
Derivatives are Gaussian derivative kernels (SciPy's ``gaussian_filter(order=...)``),
in physical units where ``spacing`` is given."""

DOG_RATIO = 0.66
"""ilastik's (vigra's) second scale of the difference of Gaussians."""
STRUCTURE_OUTER = 0.5
"""ilastik's outer (integration) scale of the structure tensor, relative to its sigma."""

ILASTIK_SIGMAS = (0.3, 0.7, 1.0, 1.6, 3.5, 5.0, 10.0)
"""ilastik's default scales; its smoothing uses all, its other filters all but 0.3."""


def gaussian_radius(sigma: float) -> int:
    """Pixels a Gaussian (derivative) of ``sigma`` reads either side (truncate 4)."""
    return int(4.0 * float(sigma) + 0.5)


def filter_halo(name: str, sigma: float) -> int:
    """Pixels of context a filter at ``sigma`` reads either side: its Gaussian's radius, plus the
    structure tensor's outer scale's."""
    extra = gaussian_radius(STRUCTURE_OUTER * sigma) if name == "structure_tensor" else 0
    return gaussian_radius(sigma) + extra


def filter_width(name: str, ndim: int) -> int:
    """Features a filter gives per sigma: ``ndim`` eigenvalues or one image."""
    return ndim if name in ("structure_tensor", "hessian_of_gaussian") else 1


def filter_kinds(name: str, ndim: int) -> list:
    """The names of a filter's features at one sigma (see :meth:`FeatureParams.names`)."""
    if name == "structure_tensor":
        return [f"structure-eig-{k}" for k in range(1, ndim + 1)]
    if name == "hessian_of_gaussian":
        return [f"hessian-of-gaussian-eig-{k}" for k in range(1, ndim + 1)]
    return [name.replace("_", "-")]


def filters_at(channel, sigmas: tuple, spacing: tuple, names: list, be) -> Iterator:
    """The features of the filters ``names`` at one scale, in :data:`FILTERS` order.

    ``sigmas`` is the scale per axis in pixels; a derivative along axis ``a`` is
    divided by ``spacing[a]`` (the relative pixel size), making it physical.
    Derivative images shared by two filters are computed once, and so are the
    passes they share: the separable passes run axis 0 first, as SciPy's do, and
    a pass's result serves every derivative whose orders start alike (the
    values are those of separate ``gaussian_filter`` calls all the same).
    """
    ndim = channel.ndim
    pairs = list(combinations_with_replacement(range(ndim), 2))
    passes = {}

    def separable(orders):
        for k in range(1, ndim + 1):
            if orders[:k] not in passes:
                source = channel if k == 1 else passes[orders[:k - 1]]
                passes[orders[:k]] = be.gaussian_1d(source, sigmas[k - 1], orders[k - 1], k - 1)
        return passes[orders]

    def derivative(*axes):
        d = separable(tuple(axes.count(a) for a in range(ndim)))
        scale = float(np.prod([spacing[a] for a in axes]))
        return d if scale == 1.0 else d * np.float32(1.0 / scale)

    first = [derivative(a) for a in range(ndim)] if {"gradient_magnitude", "structure_tensor"} & set(names) else []
    second = [derivative(a, b) for a, b in pairs] if {"laplacian", "hessian_of_gaussian"} & set(names) else []
    smoothed = separable((0,) * ndim) if {"gaussian", "dog"} & set(names) else None
    passes.clear()
    for name in names:
        if name == "gaussian":
            yield smoothed
        elif name == "laplacian":
            yield sum(second[pairs.index((a, a))] for a in range(ndim))
        elif name == "gradient_magnitude":
            yield be.xp.sqrt(sum(d * d for d in first))
        elif name == "dog":
            yield smoothed - _smooth(channel, tuple(DOG_RATIO * s for s in sigmas), be)
        elif name == "structure_tensor":
            outer = tuple(STRUCTURE_OUTER * s for s in sigmas)
            yield from be.symmetric_eigenvalues([_smooth(first[a] * first[b], outer, be) for a, b in pairs])
        else:  # hessian_of_gaussian
            yield from be.symmetric_eigenvalues(second)


def _smooth(image, sigmas: tuple, be):
    """Gaussian smoothing as ``gaussian_filter`` does it (one pass per axis, axis 0 first), in ``gaussian_1d`` passes."""
    for axis, sigma in enumerate(sigmas):
        image = be.gaussian_1d(image, sigma, 0, axis)
    return image
