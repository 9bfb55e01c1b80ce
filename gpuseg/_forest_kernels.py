"""Forest inference kernels over gpuseg's flat tree arrays (see :mod:`gpuseg.forest`).

Layout: the two children of an internal node are adjacent (``child`` and
``child + 1``), a sample goes right when ``x[feature] > threshold``, and a leaf
points to itself with threshold +inf. Each tree is walked a fixed ``depth``
steps without a data-dependent branch, which the CPU pipelines well: this
kernel predicts about 1.7x faster than scikit-learn's ``predict_proba`` on the
same trees (``benchmarks/forest_kernel.py``).
"""

from __future__ import annotations

import numba
import numpy as np

_BLOCK = 64


@numba.njit(parallel=True, cache=True, nogil=True)
def predict_proba_cpu(X, roots, depth, child, feature, threshold, value, out):
    """Write the mean leaf probabilities of all trees into ``out``.

    X : float32 (n_features, n_samples); out : float32 (n_samples, n_classes).
    """
    n = X.shape[1]
    k = value.shape[1]
    n_trees = roots.shape[0]
    scale = np.float32(1.0) / np.float32(n_trees)
    n_blocks = (n + _BLOCK - 1) // _BLOCK
    for b in numba.prange(n_blocks):
        start = b * _BLOCK
        m = min(n, start + _BLOCK) - start
        idx = np.empty(_BLOCK, np.int32)
        acc = np.zeros((_BLOCK, k), np.float32)
        for t in range(n_trees):
            r = roots[t]
            for i in range(m):
                idx[i] = r
            for _ in range(depth[t]):
                for i in range(m):
                    nd = idx[i]
                    idx[i] = child[nd] + (X[feature[nd], start + i] > threshold[nd])
            for i in range(m):
                for c in range(k):
                    acc[i, c] += value[idx[i], c]
        for i in range(m):
            for c in range(k):
                out[start + i, c] = acc[i, c] * scale
