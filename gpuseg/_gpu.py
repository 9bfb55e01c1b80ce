"""GPU primitives: cuCIM filters on CuPy, cuML forests, a CuPy forest kernel.

Same names and signatures as :mod:`gpuseg._cpu`; imported only when the GPU
backend is chosen. Every array here is a CuPy array on the current device.
"""

from __future__ import annotations

import json
from itertools import combinations_with_replacement

import cupy as cp
import numpy as np
from cucim.skimage import filters as cufilters
from cucim.skimage.feature import hessian_matrix_eigvals
from cucim.skimage.util import img_as_float32

__all__ = ["xp", "name", "asarray", "to_host", "device_id", "memory_budget", "device_info", "ascontiguous",
           "as_float32", "all_finite", "empty", "gaussian", "sobel", "hessian_eigenvalues", "forest_fit",
           "forest_predict_proba"]

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


def gaussian(image, sigma: float):
    """Gaussian smoothing (mode 'nearest', truncate 4), as on the CPU. float32 in, float32 out."""
    return cufilters.gaussian(image, sigma=sigma, mode="nearest", truncate=4.0, preserve_range=False)


def sobel(image):
    """Sobel magnitude ``sqrt(mean_axis(d_axis**2))`` (mode 'reflect'), as on the CPU."""
    return cufilters.sobel(image)


def hessian_eigenvalues(smoothed) -> list:
    """Hessian eigenvalues from ``cp.gradient`` of ``cp.gradient``, largest first (``ndim`` arrays)."""
    ndim = smoothed.ndim
    first = [cp.gradient(smoothed, axis=a) for a in range(ndim)]
    h = [cp.gradient(first[a], axis=b) for a, b in combinations_with_replacement(range(ndim), 2)]
    del first
    return list(hessian_matrix_eigvals(h))


def _cuml_params(forest_params: dict) -> dict:
    """scikit-learn forest parameters in cuML's names and conventions."""
    params = dict(forest_params)
    if params.get("max_samples") is None:
        params["max_samples"] = 1.0
    for optional in ("random_state", "class_weight"):
        if params.get(optional) is None:
            params.pop(optional, None)
    return params


def forest_fit(X, y, forest_params: dict, n_classes: int):
    """Train cuML's RandomForestClassifier and convert its trees to a :class:`~gpuseg.forest.Forest`.

    Parameters
    ----------
    X : float32 ndarray (n_samples, n_features) (host; copied to the device once)
    y : int ndarray (n_samples,) of class indices ``0 .. n_classes - 1``
    forest_params : dict
        scikit-learn names (see :func:`_cuml_params`).
    n_classes : int
    """
    from cuml.ensemble import RandomForestClassifier

    clf = RandomForestClassifier(**_cuml_params(forest_params))
    clf.fit(cp.asarray(X, dtype=cp.float32), cp.asarray(y, dtype=cp.int32))
    model = json.loads(clf.as_treelite().dump_as_json(pretty=False))
    return forest_from_treelite_json(model, X.shape[1], n_classes)


def forest_from_treelite_json(model: dict, n_features: int, n_classes: int):
    """Build a Forest from Treelite's JSON dump of a classifier forest.

    Treelite nodes carry ``left_child``/``right_child``, ``split_feature_id``,
    ``threshold`` and ``comparison_op`` (``<`` or ``<=``: go left when true);
    leaves carry ``leaf_value`` (class probabilities, or one value for a
    binary forest).
    """
    from .forest import Forest

    trees = []
    for tree in model["trees"]:
        nodes = {n["node_id"]: n for n in tree["nodes"]}
        n = len(nodes)
        left = np.full(n, -1, np.int64)
        right = np.full(n, -1, np.int64)
        feat = np.zeros(n, np.int64)
        thr = np.zeros(n, np.float64)
        val = np.zeros((n, n_classes), np.float64)
        for i, node in nodes.items():
            if "left_child" in node:
                left[i], right[i] = node["left_child"], node["right_child"]
                feat[i] = node["split_feature_id"]
                t = np.float32(node["threshold"])
                # "x < t" goes left  <=>  "x <= largest float32 below t" goes left
                thr[i] = float(np.nextafter(t, np.float32(-np.inf))) if node["comparison_op"] == "<" else float(t)
            else:
                leaf = np.atleast_1d(np.asarray(node["leaf_value"], np.float64))
                val[i] = leaf if leaf.size == n_classes else [1.0 - leaf[0], leaf[0]]
        trees.append((left, right, feat, thr, val))
    return Forest.from_trees(trees, n_features, n_classes)


_PREDICT = cp.RawKernel(r"""
extern "C" __global__
void predict_proba(const float* X, long long n, const int* roots, const int* depth, int n_trees,
                   const int* child, const int* feature, const float* threshold,
                   const float* value, int k, float* out) {
    long long i = (long long)blockDim.x * blockIdx.x + threadIdx.x;
    if (i >= n) return;
    for (int c = 0; c < k; ++c) out[i * k + c] = 0.0f;
    for (int t = 0; t < n_trees; ++t) {
        int nd = roots[t];
        for (int d = 0; d < depth[t]; ++d)
            nd = child[nd] + (X[(long long)feature[nd] * n + i] > threshold[nd]);
        for (int c = 0; c < k; ++c) out[i * k + c] += value[(long long)nd * k + c];
    }
    float scale = 1.0f / n_trees;
    for (int c = 0; c < k; ++c) out[i * k + c] *= scale;
}
""", "predict_proba")


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
    threads = 256
    _PREDICT(((n + threads - 1) // threads,), (threads,),
             (X, np.int64(n), arrays["roots"], arrays["depth"], np.int32(arrays["roots"].size),
              arrays["child"], arrays["feature"], arrays["threshold"], arrays["value"], np.int32(k), out))
    return out
