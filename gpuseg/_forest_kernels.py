"""Forest inference kernel over gpuseg's flat tree arrays (see :mod:`gpuseg.forest`).

Layout: the two children of an internal node are adjacent (``child`` and
``child + 1``), a sample goes right when ``x[feature] > threshold``, and a leaf
points to itself with threshold +inf. Each tree is walked a fixed ``depth``
steps without a data-dependent branch.

A walk is a chain of dependent loads (node -> feature -> sample value -> next
node), so the kernel walks ``_LANES`` samples through a tree side by side to
keep that many chains in flight, with unsigned indices (no negative-index
wrap-around on the chain). The lanes' nodes are eight scalar variables, not an
array: LLVM keeps them in registers, where an array's would be stored and
loaded again at every step (it cannot prove that the array does not alias the
tree's arrays); that made the walk 1.1x faster on the 2-core Xeon. A block's
samples are first copied sample-major into a local buffer: the caller's feature-major rows lie a power-of-two stride apart
for many tile shapes, and reading a sample across them thrashes one L1 set.

For labels the kernel stops walking a sample once its leading class is ahead
of every other by more than the trees still to come could give them (each
tree gives a class at most the largest leaf value): its largest class can no
longer change, so the labels equal the argmax of the probabilities of every
tree. A check costs about a third of a tree's walk per sample, so it comes
after every second tree (a sure sample walks at most one tree more), with the
leader and the runner-up found in one pass: labels of the benchmark's forest on
2048x2048 features 1.10x faster than checking after every tree in two passes
(2-core EPYC, median of 30 alternating pairs; 1.04x for the one pass alone;
every third tree was within noise of every second). ``python -m
benchmarks.filters`` times both kinds against scikit-learn's ``predict_proba``
on the same trees.
"""

from __future__ import annotations

import numba
import numpy as np

from ._threading import parallel_kernel

_BLOCK = 256  # samples per parallel job
_LANES = 8  # samples walked through a tree side by side: the eight scalar lanes of predict_cpu
_ROUNDING = 1e-3  # above the float32 rounding of 2 x 256 sums of leaf values in [0, 1]
_CHECK_EVERY = 2  # trees walked between two checks of which samples are sure (see the module docstring)


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
        nf = np.uint64(n_feat)
        for t in range(n_trees):
            for i in range(n_active, n_active + _LANES):
                active[i] = _BLOCK
            root = np.uint64(roots[t])
            for i in range(0, n_active, _LANES):
                s0, s1, s2, s3 = active[i], active[i + 1], active[i + 2], active[i + 3]
                s4, s5, s6, s7 = active[i + 4], active[i + 5], active[i + 6], active[i + 7]
                r0, r1, r2, r3 = np.uint64(s0) * nf, np.uint64(s1) * nf, np.uint64(s2) * nf, np.uint64(s3) * nf
                r4, r5, r6, r7 = np.uint64(s4) * nf, np.uint64(s5) * nf, np.uint64(s6) * nf, np.uint64(s7) * nf
                j0 = j1 = j2 = j3 = j4 = j5 = j6 = j7 = root
                for _ in range(depth[t]):
                    j0 = _step(j0, r0, local, feature, threshold, child)
                    j1 = _step(j1, r1, local, feature, threshold, child)
                    j2 = _step(j2, r2, local, feature, threshold, child)
                    j3 = _step(j3, r3, local, feature, threshold, child)
                    j4 = _step(j4, r4, local, feature, threshold, child)
                    j5 = _step(j5, r5, local, feature, threshold, child)
                    j6 = _step(j6, r6, local, feature, threshold, child)
                    j7 = _step(j7, r7, local, feature, threshold, child)
                _add_leaf(acc, s0, value, j0)
                _add_leaf(acc, s1, value, j1)
                _add_leaf(acc, s2, value, j2)
                _add_leaf(acc, s3, value, j3)
                _add_leaf(acc, s4, value, j4)
                _add_leaf(acc, s5, value, j5)
                _add_leaf(acc, s6, value, j6)
                _add_leaf(acc, s7, value, j7)
            if exits and 2 * (t + 1) >= n_trees and t + 1 < n_trees and (t + 1) % _CHECK_EVERY == 0:
                # Branch-free: every sample's leader is written, the sure ones leave the list.
                reach = np.float32(n_trees - t - 1) * largest_leaf + np.float32(_ROUNDING)
                kept = 0
                for a in range(n_active):
                    s = active[a]
                    best, top, second = _leader(acc, s, k, np.float32(1.0))
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
def _step(j, row, local, feature, threshold, child):
    """The node after ``j`` for the sample whose features start at ``local[row]``."""
    return np.uint64(child[j]) + np.uint64(local[row + np.uint64(feature[j])] > threshold[j])


@numba.njit(inline="always", nogil=True)
def _add_leaf(acc, s, value, j):
    """Add leaf ``j``'s class values to sample ``s``'s sums."""
    for c in range(value.shape[1]):
        acc[s, c] += value[j, c]


@numba.njit(inline="always", nogil=True)
def _leader(acc, s, k, scale):
    """First class of the largest ``acc[s] * scale`` (as ``argmax`` of the probabilities picks it), that value,
    and the second largest (equal to it on a tie), in one pass."""
    best = 0
    top = acc[s, 0] * scale
    second = np.float32(-1.0)
    for c in range(1, k):
        v = acc[s, c] * scale
        best = c if v > top else best
        second = max(second, min(top, v))
        top = max(top, v)
    return best, top, second
