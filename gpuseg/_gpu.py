"""GPU primitives: cuCIM filters on CuPy, cuML forests (scikit-learn without cuML), a CUDA forest kernel.

Same names and signatures as :mod:`gpuseg._cpu`; imported only when the GPU
backend is chosen. Every array here is a CuPy array on the current device.
"""

from __future__ import annotations

import functools
from itertools import combinations_with_replacement

import cupy as cp
import numpy as np
from cucim.skimage import filters as cufilters
from cupyx.scipy import ndimage as cundi
from cucim.skimage.feature import hessian_matrix_eigvals
from cucim.skimage.util import img_as_float32

from ._region import store

__all__ = ["xp", "name", "asarray", "to_host", "device_id", "memory_budget", "device_info", "ascontiguous",
           "as_float32", "all_finite", "empty", "assign", "gaussian", "gaussian_1d", "sobel", "hessian_eigenvalues", "symmetric_eigenvalues",
           "forest_fit", "forest_predict_proba", "forest_predict_labels"]

xp = cp
name = "gpu"


def asarray(x):
    """``x`` as an array of this backend: CuPy on the current device (a host array is copied there)."""
    return cp.asarray(x)


def to_host(x) -> np.ndarray:
    """``x`` as a NumPy array; a CuPy array is copied off its device."""
    return cp.asnumpy(x)


def device_id() -> str:
    """Which device this backend's arrays live on: the current CUDA device, e.g. ``"gpu:0"``."""
    return f"gpu:{cp.cuda.Device().id}"


def memory_budget() -> float:
    """Bytes a tile may use: a quarter of the free device memory (CuPy's pool counted free), at most 4 GiB."""
    free, _total = cp.cuda.runtime.memGetInfo()
    return min(4 * 2**30, 0.25 * (free + cp.get_default_memory_pool().free_bytes()))


def device_info() -> dict:
    """The current CUDA device: ``name``, ``total_bytes`` and ``free_bytes`` of its memory."""
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    name = props["name"]
    free, total = cp.cuda.runtime.memGetInfo()
    return {"name": name.decode() if isinstance(name, bytes) else str(name), "total_bytes": int(total),
            "free_bytes": int(free)}


def ascontiguous(x):
    return cp.ascontiguousarray(x)


def as_float32(image):
    """Scale to float32 as scikit-image's ``img_as_float32`` does."""
    return img_as_float32(image)


def all_finite(image) -> bool:
    return image.dtype.kind != "f" or bool(cp.isfinite(image).all())


def empty(shape, dtype=np.float32):
    return cp.empty(shape, dtype=dtype)


def assign(dst, src) -> None:
    """``dst[...] = src`` for arrays of one shape."""
    dst[...] = src


def gaussian(image, sigma, order=0):
    """Gaussian smoothing or derivative (mode 'nearest', truncate 4), per-axis ``sigma`` and ``order`` as on the CPU.

    float32 in, float32 out (also between the passes, as SciPy and the CPU do).
    """
    return cundi.gaussian_filter(image, sigma, order=order, mode="nearest", truncate=4.0, output=cp.float32)


def gaussian_1d(image, sigma: float, order: int, axis: int):
    """One pass of :func:`gaussian` along ``axis`` (``cupyx.scipy.ndimage.gaussian_filter1d``), as on the CPU."""
    return cundi.gaussian_filter1d(image, sigma, axis=axis, order=order, mode="nearest", truncate=4.0,
                                   output=cp.float32)


def sobel(image, region=None, out=None):
    """Sobel magnitude ``sqrt(mean_axis(d_axis**2))`` (mode 'reflect') of a ``region``, into ``out``, as on the CPU.

    cuCIM filters the whole image; the region is cropped from it (see :mod:`gpuseg._region`).
    """
    return store([cufilters.sobel(image)], region, out)[0]


def hessian_eigenvalues(smoothed, region=None, out=None) -> list:
    """Hessian eigenvalues from ``cp.gradient`` of ``cp.gradient``, largest first (``ndim`` arrays), of a
    ``region``, into ``out``, as on the CPU (computed on the whole image, then cropped)."""
    ndim = smoothed.ndim
    first = [cp.gradient(smoothed, axis=a) for a in range(ndim)]
    h = [cp.gradient(first[a], axis=b) for a, b in combinations_with_replacement(range(ndim), 2)]
    del first
    return store(symmetric_eigenvalues(h), region, out)


def symmetric_eigenvalues(elements: list) -> list:
    """Eigenvalues of a field of symmetric matrices (upper triangle in C order), largest first, as on the CPU."""
    return list(hessian_matrix_eigvals(elements))


def forest_fit(X, y, forest_params: dict, n_classes: int):
    """Train a random forest on labelled rows: cuML on the device, or scikit-learn on the host without cuML.

    Parameters
    ----------
    X : float32 array (n_samples, n_features), CuPy or NumPy
    y : int array (n_samples,) of class indices ``0 .. n_classes - 1``, each present
    forest_params : dict
        scikit-learn names; ``class_weight`` keyed by class index (translated by
        :func:`gpuseg.cuml_params.cuml_params`).
    n_classes : int

    Returns
    -------
    forest : gpuseg.forest.Forest
    """
    from ._backend import gpu_trainer
    from .forest import Forest

    trainer, _, version = gpu_trainer()
    if trainer != "cuml":
        from . import _cpu

        return _cpu.forest_fit(cp.asnumpy(X), cp.asnumpy(y), forest_params, n_classes)
    from cuml.ensemble import RandomForestClassifier

    from .cuml_params import cuml_params

    clf = RandomForestClassifier(**cuml_params(forest_params, int(X.shape[0]), version))
    clf.fit(cp.asarray(X, dtype=cp.float32), cp.asarray(y, dtype=cp.int32))
    forest = Forest.from_treelite(clf.as_treelite())
    if forest.n_classes != n_classes:
        raise RuntimeError(f"cuML returned a forest of {forest.n_classes} classes for {n_classes}.")
    return forest


# One thread a sample; the class sums live in registers (K, the class count, is a template parameter).
_PREDICT_SOURCE = r"""
template <int K>
__global__ void predict_proba(const float* __restrict__ X, long long n, const int* __restrict__ roots,
                              const int* __restrict__ depth, int n_trees, const int* __restrict__ child,
                              const int* __restrict__ feature, const float* __restrict__ threshold,
                              const float* __restrict__ value, float* __restrict__ out) {
    long long i = (long long)blockDim.x * blockIdx.x + threadIdx.x;
    if (i >= n) return;
    float acc[K];
#pragma unroll
    for (int c = 0; c < K; ++c) acc[c] = 0.0f;
    for (int t = 0; t < n_trees; ++t) {
        int nd = roots[t];
        for (int d = 0; d < depth[t]; ++d)
            nd = child[nd] + (X[(long long)feature[nd] * n + i] > threshold[nd]);
        const float* v = value + (long long)nd * K;
#pragma unroll
        for (int c = 0; c < K; ++c) acc[c] += v[c];
    }
    float scale = 1.0f / n_trees;
#pragma unroll
    for (int c = 0; c < K; ++c) out[i * K + c] = acc[c] * scale;
}
"""
_THREADS = 256


@functools.lru_cache(maxsize=None)
def _predict_kernel(n_classes: int):
    """The predict kernel compiled for ``n_classes`` (CuPy caches the binary on disk)."""
    name = f"predict_proba<{n_classes}>"
    module = cp.RawModule(code=_PREDICT_SOURCE, options=("-std=c++17",), name_expressions=[name])
    return module.get_function(name)


def forest_predict_proba(arrays: dict, X):
    """Mean class probabilities for feature-major samples.

    Parameters
    ----------
    arrays : dict
        ``Forest.arrays(gpuseg._gpu)``.
    X : float32 cupy array (n_features, n_samples)

    Returns
    -------
    proba : float32 cupy array (n_samples, n_classes)
    """
    X = cp.ascontiguousarray(X, dtype=cp.float32)
    n = X.shape[1]
    k = arrays["value"].shape[1]
    out = cp.empty((n, k), cp.float32)
    if n == 0:  # a launch with an empty grid is an error
        return out
    _predict_kernel(int(k))(((n + _THREADS - 1) // _THREADS,), (_THREADS,),
                            (X, np.int64(n), arrays["roots"], arrays["depth"], np.int32(arrays["roots"].size),
                             arrays["child"], arrays["feature"], arrays["threshold"], arrays["value"], out))
    return out


def forest_predict_labels(arrays: dict, X):
    """Index of the largest mean class probability for feature-major samples.

    Parameters
    ----------
    arrays, X
        As :func:`forest_predict_proba`.

    Returns
    -------
    index : int32 cupy array (n_samples,)
        ``forest_predict_proba(arrays, X).argmax(axis=1)``: a GPU thread walks
        every tree (an early exit would leave its warp's other threads waiting).
    """
    return forest_predict_proba(arrays, X).argmax(axis=1).astype(cp.int32)
