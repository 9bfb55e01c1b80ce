"""CPU primitives: Numba filters and Hessian, scikit-learn forests, a Numba forest kernel.

Same names and signatures as :mod:`gpuseg._gpu`. Values equal scikit-image's
``multiscale_basic_features`` bit for bit (3D Hessian eigenvalues: to float64
rounding before the cast to float32): the filters do SciPy's float64 sums in
SciPy's order with scikit-image's kernels and border modes (Gaussian: truncate
4, ``nearest``; Sobel: ``reflect``), and give the same value for a pixel
wherever it sits, so tiled prediction equals whole-image prediction exactly.
"""

from __future__ import annotations

import functools
import logging
import numbers
import os
import platform

import numpy as np
from skimage.util import img_as_float32

from . import _cpu_filters, _cpu_hessian, _cpu_tree, _forest_kernels
from ._cpu_filters import NEAREST, copy_3d, correlate_symmetric, separable_symmetric, sobel_magnitude
from ._cpu_hessian import hessian_eigenvalues as _hessian_eigenvalues
from ._cpu_hessian import symmetric_eigenvalues as _symmetric_eigenvalues
from ._forest_kernels import predict_cpu

log = logging.getLogger("gpuseg")
COMPILING = "compiling gpuseg's CPU kernels (once, about 20 s)"
_announced = []

__all__ = ["xp", "name", "asarray", "to_host", "device_id", "memory_budget", "device_info", "ascontiguous",
           "as_float32", "all_finite", "empty", "assign", "gaussian", "gaussian_1d", "sobel", "hessian_eigenvalues", "symmetric_eigenvalues",
           "forest_fit", "forest_predict_proba", "forest_predict_labels"]

xp = np
name = "cpu"


def asarray(x) -> np.ndarray:
    """``x`` as an array of this backend: NumPy (a CuPy array is copied to the host)."""
    return to_host(x)


def to_host(x) -> np.ndarray:
    """``x`` as a NumPy array; a CuPy array is copied off its device (CuPy is never imported here)."""
    if type(x).__module__.split(".")[0] == "cupy":
        return x.get()
    return np.asarray(x)


def device_id() -> str:
    """Which device this backend's arrays live on: the host."""
    return "cpu"


def memory_budget() -> float:
    """Bytes a tile may use: a quarter of the available host memory, at most 1 GiB."""
    import psutil

    return min(2**30, 0.25 * psutil.virtual_memory().available)


def device_info() -> dict:
    """The host: ``name`` (processor, core count), ``total_bytes`` and ``free_bytes`` of memory."""
    import psutil

    memory = psutil.virtual_memory()
    return {"name": f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)",
            "total_bytes": int(memory.total), "free_bytes": int(memory.available)}


def ascontiguous(x):
    return np.ascontiguousarray(x)


def as_float32(image):
    """Scale to float32 as scikit-image's ``img_as_float32`` does."""
    return img_as_float32(image)


def all_finite(image) -> bool:
    return image.dtype.kind != "f" or bool(np.isfinite(image).all())


def empty(shape, dtype=np.float32):
    return np.empty(shape, dtype=dtype)


def assign(dst, src) -> None:
    """``dst[...] = src`` for arrays of one shape; a strided 2D or 3D float32 source (a crop) is copied on
    every core (NumPy's copy, one; a contiguous one is a ``memcpy``)."""
    if (dst.ndim in (2, 3) and dst.dtype == src.dtype == np.float32 and dst.shape == src.shape
            and not src.flags.c_contiguous):
        copy_3d(src.reshape((1,) * (3 - src.ndim) + src.shape), dst.reshape((1,) * (3 - dst.ndim) + dst.shape))
    else:
        dst[...] = src


def gaussian_kernel(sigma: float, order: int = 0) -> np.ndarray:
    """SciPy's Gaussian (derivative) kernel, float64: radius ``int(4 sigma + 0.5)``, the weight at ``-r .. r``.

    Computed with SciPy's own expression (``scipy.ndimage._gaussian_kernel1d``), so
    the weights are the same to the last bit: order 0 sums to 1; order ``n`` is the
    ``n``-th derivative of it, exactly symmetric (even ``n``) or antisymmetric (odd).
    """
    radius = int(4.0 * float(sigma) + 0.5)
    sigma2 = float(sigma) * float(sigma)
    x = np.arange(-radius, radius + 1)
    k = np.exp(-0.5 / sigma2 * x**2)
    k = k / k.sum()
    if order == 0:
        return k
    exponents = np.arange(order + 1)
    q = np.zeros(order + 1)
    q[0] = 1
    step = np.diag(exponents[1:], 1) + np.diag(np.ones(order) / -sigma2, -1)
    for _ in range(order):
        q = step.dot(q)
    return (x[:, None] ** exponents).dot(q) * k


def gaussian(image: np.ndarray, sigma, order=0) -> np.ndarray:
    """Gaussian smoothing or derivative, equal to ``scipy.ndimage.gaussian_filter`` bit for bit.

    Mode 'nearest', truncate 4, float32 between the passes, axis 0 first; with
    ``order=0`` and one sigma this is ``skimage.filters.gaussian(image, sigma)``.
    See :mod:`gpuseg._cpu_filters`.

    Parameters
    ----------
    image : float32 ndarray, C-contiguous, 2D or 3D
    sigma : float or sequence of float
        One sigma, or one per axis (pixels).
    order : int or sequence of int
        Derivative order (0, 1 or 2) along every axis, or one per axis.

    Returns
    -------
    filtered : float32 ndarray of the same shape
    """
    announce_first_compile()
    sigmas = np.broadcast_to(np.asarray(sigma, np.float64), (image.ndim,))
    orders = np.broadcast_to(np.asarray(order, np.int64), (image.ndim,))
    kernels = []
    for s, o in zip(sigmas, orders):
        k = gaussian_kernel(float(s), int(o))
        kernels.append((k[(k.shape[0] - 1) // 2:], bool(o % 2)))
    return separable_symmetric(image, kernels, NEAREST)


def gaussian_1d(image: np.ndarray, sigma: float, order: int, axis: int) -> np.ndarray:
    """One pass of ilastik's filters: ``scipy.ndimage.gaussian_filter1d`` (mode 'nearest', truncate 4), summed in float32.

    SciPy's weights and order of summation, in float32 rather than float64:
    1.2x-1.8x faster per pass at 2048x2048, sigma 1.6 and 10 (``python -m
    benchmarks.filters``, rows ``pass f32`` and ``pass f64``; committed in
    ``benchmarks/results/cpu-2core/filters.txt``), and within the rounding of a
    float32 sum of SciPy's (tested; the GPU backend's cuCIM passes are float32 too). Every pixel still goes through the
    same operations, so tiles equal the whole image bit for bit.
    :func:`gaussian` (scikit-image's features) keeps SciPy's float64 sums.

    Parameters
    ----------
    image : float32 ndarray, C-contiguous
    sigma : float
    order : int (0, 1 or 2)
    axis : int

    Returns
    -------
    filtered : float32 ndarray of the same shape
    """
    announce_first_compile()
    k = gaussian_kernel(float(sigma), int(order)).astype(np.float32)
    return correlate_symmetric(image, k[(k.shape[0] - 1) // 2:], axis, NEAREST, antisymmetric=bool(order % 2))


def sobel(image: np.ndarray, region=None, out=None) -> np.ndarray:
    """Sobel magnitude equal to ``skimage.filters.sobel(image)`` bit for bit: ``sqrt(mean_axis(d_axis**2))``.

    One fused Numba pass (border 'reflect'); see :func:`gpuseg._cpu_filters.sobel_magnitude`.

    Parameters
    ----------
    image : float32 ndarray, C-contiguous, 2D or 3D
    region : tuple of slice, optional
        The box of ``image`` to compute (default: all of it); its values are the whole image's there.
    out : float32 ndarray of the region's shape, optional
        Where they go; a new array if not given.

    Returns
    -------
    magnitude : float32 ndarray of the region's shape (``out`` when given)
    """
    return sobel_magnitude(image, region, out)


def hessian_eigenvalues(smoothed: np.ndarray, region=None, out=None) -> list:
    """Eigenvalues of the Hessian from ``np.gradient`` of ``np.gradient``, largest first.

    One fused Numba pass (see :mod:`gpuseg._cpu_hessian`): the Hessian elements
    are NumPy's bit for bit, the 2D eigenvalues scikit-image's bit for bit, the
    3D ones a closed-form solution in float64 rounded to float32.

    Parameters
    ----------
    smoothed : float32 ndarray, 2D or 3D, every axis of length >= 2 (images are
        checked for at least 3)
    region : tuple of slice, optional
        The box of ``smoothed`` to compute (default: all of it); its values are the whole image's there.
    out : sequence of ``ndim`` float32 ndarrays of the region's shape, optional
        Where they go; new arrays if not given.

    Returns
    -------
    eigenvalues : list of ``ndim`` float32 ndarrays of the region's shape, in
        decreasing order, as ``skimage.feature.hessian_matrix_eigvals`` gives them
        (``out``'s when given).
    """
    return _hessian_eigenvalues(smoothed, region, out)


def symmetric_eigenvalues(elements: list) -> list:
    """Eigenvalues of a field of symmetric matrices, largest first; see :func:`gpuseg._cpu_hessian.symmetric_eigenvalues`.

    Parameters
    ----------
    elements : list of float32 ndarrays of one shape, the upper triangle in C order (3 in 2D, 6 in 3D)

    Returns
    -------
    eigenvalues : list of ``ndim`` float32 ndarrays of that shape, decreasing.
    """
    return _symmetric_eigenvalues(elements)


def forest_fit(X: np.ndarray, y: np.ndarray, forest_params: dict, n_classes: int):
    """Train scikit-learn's RandomForestClassifier.

    Parameters
    ----------
    X : float32 ndarray of shape (n_samples, n_features)
    y : int ndarray of shape (n_samples,)
        Class indices ``0 .. n_classes - 1``, each present.
    forest_params : dict
        scikit-learn names; ``class_weight`` keyed by class index.
    n_classes : int

    Returns
    -------
    forest : gpuseg.forest.Forest
    """
    from sklearn.ensemble import RandomForestClassifier

    from .forest import Forest

    announce_first_compile()
    clf = RandomForestClassifier(n_jobs=forest_jobs(forest_params, len(y)), **forest_params)
    if isinstance(clf.min_samples_leaf, numbers.Integral):  # a fraction would count the rows passed
        clf.estimator = _drawn_rows_tree_class()()
    clf.fit(X, y)
    return Forest.from_sklearn(clf)


@functools.cache
def _drawn_rows_tree_class():
    """A scikit-learn tree class that a forest fits on the rows its bootstrap drew, not on every row.

    scikit-learn's forest gives each tree all the rows, the undrawn ones with
    weight 0, and its splitter skips those: the tree is grown from the drawn
    rows, in their order, all the same. Passing only those rows (plus one
    weight-0 row of any class the draws missed, so the tree knows every class)
    grows the same tree, bit for bit (tested against the stock forest), and its
    splitter gathers feature values from a matrix of the drawn rows, which stays
    in cache, instead of from all of them: 1.38x faster fits of the benchmark's
    forest (50 trees of 12.8k draws from 256k rows of 24 features; ``python -m
    benchmarks.filters``, row ``forest_fit``). Where :func:`gpuseg._cpu_tree.replays` allows (integer
    weights, scikit-learn's defaults but for the usual forest settings), the tree is grown by
    :mod:`gpuseg._cpu_tree`'s Numba replica of scikit-learn's builder, the same tree again. Relies on the forest
    calling ``DecisionTreeClassifier._fit`` with keywords, ``check_input=False``
    and no missing-value mask, as scikit-learn 1.9 does (the version tested);
    called any other way, the tree fits all the rows as the stock one does.
    """
    from sklearn.tree import DecisionTreeClassifier

    class DrawnRowsTree(DecisionTreeClassifier):
        def _fit(self, X, y, sample_weight=None, *args, **options):
            if (sample_weight is not None and not args and options.get("check_input") is False
                    and options.get("missing_values_in_feature_mask") is None):
                rows = np.flatnonzero(sample_weight)
                classes = y[:, 0]  # the forest's class indices 0 .. n - 1, as float64
                absent = np.setdiff1d(np.arange(classes.max() + 1), classes[rows])
                if absent.size:
                    rows = np.union1d(rows, [np.argmax(classes == c) for c in absent])
                X, y, sample_weight = X.take(rows, axis=0), y.take(rows, axis=0), sample_weight[rows]
                if _cpu_tree.replays(self, X, y, sample_weight, options):
                    return _cpu_tree.fit(self, X, y, sample_weight)
            return super()._fit(X, y, sample_weight, *args, **options)

    return DrawnRowsTree


SERIAL_DRAWS = 512
"""Below this many rows per tree scikit-learn fits faster on one thread than on its pool of threads. Chosen
from a one-off timing on the 2-core benchmark machine (50 trees of depth 10 on the benchmark's textures):
1.6x faster at 61 and 206 draws, even at 512 and 772, 2x slower at 2048; the standard report's small
sizes show its effect. The trees are the same either way."""


def forest_jobs(forest_params: dict, n_rows: int) -> int:
    """scikit-learn's ``n_jobs`` for a forest drawing its trees' rows from ``n_rows``: 1 for small trees, else -1."""
    m = forest_params.get("max_samples")
    if m is None or not forest_params.get("bootstrap", True):
        draws = n_rows
    else:
        draws = max(int(n_rows * m), 1) if isinstance(m, float) else int(m)  # as scikit-learn counts them
    return 1 if draws < SERIAL_DRAWS else -1


def forest_predict_proba(arrays: dict, X: np.ndarray) -> np.ndarray:
    """Mean class probabilities of a forest for feature-major samples.

    Parameters
    ----------
    arrays : dict
        ``Forest.arrays(gpuseg._cpu)``.
    X : float32 ndarray of shape (n_features, n_samples)

    Returns
    -------
    proba : float32 ndarray of shape (n_samples, n_classes)
    """
    out = np.empty((X.shape[1], arrays["value"].shape[1]), np.float32)
    _predict(arrays, X, out, np.empty(0, np.int32))
    return out


def forest_predict_labels(arrays: dict, X: np.ndarray) -> np.ndarray:
    """Index of the largest mean class probability of a forest for feature-major samples.

    Equal to ``forest_predict_proba(arrays, X).argmax(axis=1)``; a sample stops
    walking trees once its largest class is sure (see :mod:`gpuseg._forest_kernels`).

    Parameters
    ----------
    arrays, X
        As :func:`forest_predict_proba`.

    Returns
    -------
    index : int32 ndarray of shape (n_samples,)
    """
    out = np.empty(X.shape[1], np.int32)
    _predict(arrays, X, np.empty((0, arrays["value"].shape[1]), np.float32), out)
    return out


def _predict(arrays: dict, X: np.ndarray, proba: np.ndarray, labels: np.ndarray) -> None:
    announce_first_compile()
    predict_cpu(X, arrays["roots"], arrays["depth"], arrays["child"], arrays["feature"], arrays["threshold"],
                arrays["value"], proba, labels)


def announce_first_compile() -> None:
    """Say :data:`COMPILING` once per process when a Numba kernel has no compiled copy in Numba's cache yet.

    The cache lives beside the package (or in ``NUMBA_CACHE_DIR``), so this
    happens once per install; the check reads the cache's index files.
    """
    if _announced:
        return
    _announced.append(True)
    kernels = [k for m in (_cpu_filters, _cpu_hessian, _cpu_tree, _forest_kernels) for k in vars(m).values()
               if getattr(k, "_cache", None) is not None and hasattr(k._cache, "_cache_file")]
    if any(not os.path.exists(k._cache._cache_file._index_path) for k in kernels):
        log.warning(COMPILING)
