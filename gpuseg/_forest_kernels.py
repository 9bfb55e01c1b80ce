"""Forest inference kernels over gpuseg's flat tree arrays (see :mod:`gpuseg.forest`).

Layout: the two children of an internal node are adjacent (``child`` and
``child + 1``), a sample goes right when ``x[feature] > threshold``, and a leaf
points to itself with threshold +inf. Each tree is walked a fixed ``depth``
steps without a data-dependent branch.

A walk is a chain of dependent loads (node -> feature -> sample value -> next
node), so the kernel walks ``_LANES`` samples through a tree side by side to
keep that many chains in flight, with unsigned indices (no negative-index
wrap-around on the chain). A block's samples are first copied sample-major into
a local buffer: the caller's feature-major rows lie a power-of-two stride apart
for many tile shapes, and reading a sample across them thrashes one L1 set.
``python -m benchmarks.filters`` times it against scikit-learn's
``predict_proba`` on the same trees.
"""

from __future__ import annotations

import numba
import numpy as np

from ._threading import parallel_kernel

_BLOCK = 256  # samples per parallel job
_LANES = 8  # samples walked through a tree side by side


@parallel_kernel(cache=True, nogil=True)
def predict_proba_cpu(X, roots, depth, child, feature, threshold, value, out):
    """Write the mean leaf probabilities of all trees into ``out``.

    X : float32 (n_features, n_samples); out : float32 (n_samples, n_classes).
    """
    n_feat, n = X.shape
    k = value.shape[1]
    n_trees = roots.shape[0]
    scale = np.float32(1.0) / np.float32(n_trees)
    n_blocks = (n + _BLOCK - 1) // _BLOCK
    for b in numba.prange(n_blocks):
        start = b * _BLOCK
        m = min(n, start + _BLOCK) - start
        local = np.zeros(_BLOCK * n_feat, np.float32)  # sample-major; padding lanes read zeros
        for f in range(n_feat):
            for i in range(m):
                local[i * n_feat + f] = X[f, start + i]
        acc = np.zeros((_BLOCK, k), np.float32)
        node = np.empty(_LANES, np.uint64)
        row = np.empty(_LANES, np.uint64)
        for t in range(n_trees):
            for i in range(0, m, _LANES):
                for q in range(_LANES):
                    node[q] = np.uint64(roots[t])
                    row[q] = np.uint64((i + q) * n_feat)
                for _ in range(depth[t]):
                    for q in range(_LANES):
                        j = node[q]
                        go_right = local[row[q] + np.uint64(feature[j])] > threshold[j]
                        node[q] = np.uint64(child[j]) + np.uint64(go_right)
                for q in range(min(_LANES, m - i)):
                    for c in range(k):
                        acc[i + q, c] += value[node[q], c]
        for i in range(m):
            for c in range(k):
                out[start + i, c] = acc[i, c] * scale
