"""Separable 1D correlation on the CPU whose result does not depend on where a pixel sits.

OpenCV's filters are fast but round the last bit differently at the ends of a
row (vector body vs scalar tail), so a pixel filtered inside a tile can differ
by one ulp from the same pixel filtered in the whole image, and a forest split
can flip. These Numba kernels apply the taps to every pixel in the same order
with no fused multiply-add (Numba does not contract without fastmath), so
tiled features equal whole-image features bit for bit, at OpenCV's speed
(``benchmarks/filters.py``).
"""

from __future__ import annotations

import numba
import numpy as np

NEAREST = 0  # scikit-image's Gaussian border: edge pixel repeated
REFLECT = 1  # scikit-image's Sobel border: half-sample symmetric


@numba.njit(inline="always")
def _index(i, n, mode):
    if i < 0:
        return 0 if mode == NEAREST else min(-i - 1, n - 1)
    if i >= n:
        return n - 1 if mode == NEAREST else max(2 * n - i - 1, 0)
    return i


@numba.njit(parallel=True, cache=True, nogil=True)
def _correlate_inner(src, w, mode, out):
    """Correlate along axis 1 of a (A, N, B) array (B > 1): rows of B are vectorised."""
    a_len, n, b_len = src.shape
    r = (w.shape[0] - 1) // 2
    for job in numba.prange(a_len * n):
        a = job // n
        i = job % n
        o = out[a, i]
        for b in range(b_len):
            o[b] = 0.0
        for k in range(w.shape[0]):
            s = src[a, _index(i + k - r, n, mode)]
            wk = w[k]
            for b in range(b_len):
                o[b] += wk * s[b]


@numba.njit(parallel=True, cache=True, nogil=True)
def _correlate_last(src, w, mode, out):
    """Correlate along the last axis of a (A, N) array."""
    a_len, n = src.shape
    r = (w.shape[0] - 1) // 2
    for a in numba.prange(a_len):
        row = src[a]
        o = out[a]
        for i in range(n):
            o[i] = 0.0
        for k in range(w.shape[0]):
            wk = w[k]
            lo = max(0, r - k)
            hi = min(n, n + r - k)
            for i in range(0, lo):
                o[i] += wk * row[_index(i + k - r, n, mode)]
            for i in range(lo, hi):  # interior: no index clamping, vectorised
                o[i] += wk * row[i + k - r]
            for i in range(hi, n):
                o[i] += wk * row[_index(i + k - r, n, mode)]


def correlate1d(x: np.ndarray, weights: np.ndarray, axis: int, mode: int) -> np.ndarray:
    """Correlate a float32 array with 1D ``weights`` along ``axis``.

    Parameters
    ----------
    x : float32 ndarray, C-contiguous, any number of dimensions
    weights : ndarray of odd length
        Applied as correlation, centred (``out[i] = sum_k w[k] x[i + k - r]``).
    axis : int
    mode : {NEAREST, REFLECT}
        Border rule: scipy.ndimage's ``'nearest'`` or ``'reflect'``.

    Returns
    -------
    out : float32 ndarray of the shape of ``x``
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    w = np.asarray(weights, dtype=np.float32)
    shape = x.shape
    axis %= x.ndim
    n = shape[axis]
    before = int(np.prod(shape[:axis]))
    after = int(np.prod(shape[axis + 1:]))
    out = np.empty_like(x)
    if after == 1:
        _correlate_last(x.reshape(before, n), w, mode, out.reshape(before, n))
    else:
        _correlate_inner(x.reshape(before, n, after), w, mode, out.reshape(before, n, after))
    return out
