"""Forest inference kernel over gpuseg's flat tree arrays (see :mod:`gpuseg.forest`).

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

For labels the kernel stops walking a sample once its leading class is ahead
of every other by more than the trees still to come could give them (each
tree gives a class at most the largest leaf value): its largest class can no
longer change, so the labels equal the argmax of the probabilities of every
tree. ``python -m benchmarks.filters`` times both kinds against scikit-learn's
``predict_proba`` on the same trees.
"""

from __future__ import annotations

import numba
import numpy as np

from ._threading import parallel_kernel

_BLOCK = 256  # samples per parallel job
_LANES = 8  # samples walked through a tree side by side
_ROUNDING = 1e-3  # above the float32 rounding of 2 x 256 sums of leaf values in [0, 1]


@parallel_kernel(cache=True, nogil=True)
def predict_cpu(X, roots, depth, child, feature, threshold, value, proba, labels):
    """Mean leaf probabilities of all trees into ``proba``, or the index of their largest class into ``labels``.

    X : float32 (n_features, n_samples). With ``proba`` of shape (n_samples, n_classes),
    float32, every tree is walked; with ``proba`` of shape (0, n_classes), ``labels``
    (n_samples,), int32, gets the first index of the largest mean probability, the
    argmax of what ``proba`` would hold, and a sample stops walking once that is sure.
    """
    n_feat, n = X.shape
    k = value.shape[1]
    n_trees = roots.shape[0]
    scale = np.float32(1.0) / np.float32(n_trees)
    exits = proba.shape[0] == 0
    largest_leaf = np.float32(value.max()) if exits else np.float32(0.0)
    n_blocks = (n + _BLOCK - 1) // _BLOCK
    for b in numba.prange(n_blocks):
        start = b * _BLOCK
        m = min(n, start + _BLOCK) - start
        local = np.zeros((_BLOCK + 1) * n_feat, np.float32)  # sample-major; row _BLOCK, zeros, for padding lanes
        for f in range(n_feat):
            for i in range(m):
                local[i * n_feat + f] = X[f, start + i]
        acc = np.zeros((_BLOCK + 1, k), np.float32)
        active = np.empty(_BLOCK + _LANES, np.int64)  # the samples still walking, then padding lanes
        for i in range(m):
            active[i] = i
        n_active = m
        node = np.empty(_LANES, np.uint64)
        row = np.empty(_LANES, np.uint64)
        for t in range(n_trees):
            for i in range(n_active, n_active + _LANES):
                active[i] = _BLOCK
            for i in range(0, n_active, _LANES):
                for q in range(_LANES):
                    node[q] = np.uint64(roots[t])
                    row[q] = np.uint64(active[i + q] * n_feat)
                for _ in range(depth[t]):
                    for q in range(_LANES):
                        j = node[q]
                        go_right = local[row[q] + np.uint64(feature[j])] > threshold[j]
                        node[q] = np.uint64(child[j]) + np.uint64(go_right)
                for q in range(_LANES):
                    s = active[i + q]
                    for c in range(k):
                        acc[s, c] += value[node[q], c]
            if exits and 2 * (t + 1) >= n_trees and t + 1 < n_trees:
                # Branch-free: every sample's leader is written, the sure ones leave the list.
                reach = np.float32(n_trees - t - 1) * largest_leaf + np.float32(_ROUNDING)
                kept = 0
                for a in range(n_active):
                    s = active[a]
                    best, top = _leader(acc, s, k, np.float32(1.0))
                    second = np.float32(-1.0)
                    for c in range(k):
                        second = max(second, acc[s, c] if c != best else np.float32(-1.0))
                    labels[start + s] = best
                    active[kept] = s
                    kept += np.int64(top - second <= reach)
                n_active = kept
        if exits:
            for a in range(n_active):
                s = active[a]
                labels[start + s] = _leader(acc, s, k, scale)[0]
        else:
            for i in range(m):
                for c in range(k):
                    proba[start + i, c] = acc[i, c] * scale


@numba.njit(inline="always", nogil=True)
def _leader(acc, s, k, scale):
    """First class of the largest ``acc[s] * scale`` (as ``argmax`` of the probabilities picks it), and that value."""
    best = 0
    top = acc[s, 0] * scale
    for c in range(1, k):
        v = acc[s, c] * scale
        best = c if v > top else best
        top = max(v, top)
    return best, top
