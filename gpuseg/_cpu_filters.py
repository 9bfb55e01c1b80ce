"""Separable filters on the CPU whose result does not depend on where a pixel sits.

OpenCV's filters are fast but round the last bit differently at the ends of a
row (vector body vs scalar tail), so a pixel filtered inside a tile can differ
by one ulp from the same pixel filtered in the whole image, and a forest split
can flip. These Numba kernels apply the same float32 operations, in the same
order, to every pixel (no fast-math, so no fused multiply-add contraction and
no reassociation; vector lanes and scalar tails round identically), so tiled
features equal whole-image features bit for bit, at OpenCV's speed or better
(``python -m benchmarks.filters``).

Layout of the work, for speed (every variant applies the same operations in
the same order to a pixel, so they give identical values and are chosen on
speed alone):

* Symmetric kernels are applied as ``w[k] * (x[i - k] + x[i + k])``, halving
  the multiplications, from the outermost tap in (``w[r]`` first, the centre
  last); four taps per sweep keep the partial sum in a register.
* Along the last (contiguous) axis a row is first copied into a padded buffer
  holding its border, so the inner loop over pixels has no index clamping and
  vectorises; it runs over chunks that stay in L1.
* Along any other axis a strip of columns (with its border rows) is copied
  into a scratch array of constant row stride, and four output rows are
  computed together, four taps at a time: the 16 (row, tap) pairs share 14
  source rows, and with constant offsets LLVM vectorises with two run-time
  alias checks. Short kernels (radius <= 4) read the image in place instead.
* For short kernels on planes larger than L3, the last two axes are fused in
  tiles (row pass into an L2 scratch, then the column pass from it), so the
  intermediate image never goes through memory.
* The Sobel magnitude is one fused pass per output row (the 3 or 9 source rows
  are combined into per-row temporaries, the rest is a 3-tap stencil along the
  row), instead of ``ndim**2`` separable passes and their temporaries.
"""

from __future__ import annotations

import numba
import numpy as np

NEAREST = 0  # scikit-image's Gaussian border: edge pixel repeated
REFLECT = 1  # scikit-image's Sobel border: half-sample symmetric

_CHUNK = 1024  # pixels of a row filtered at a time along the last axis (stays in L1)
_STRIP = 256  # columns per strip along the other axes (the sliding window of rows stays in L2)
_DIRECT_STRIP = 2048  # columns per strip for short kernels, read in place
_DIRECT_MAX_RADIUS = 4  # up to this radius the copy into scratch costs more than it saves
_ROW_BLOCK = 8  # rows per parallel job along the last axis
_INNER_ROWS = 64  # output rows per parallel job along the other axes
_FUSED_MAX_RADIUS = 8  # up to this radius the last two axes may be filtered in one fused pass
_FUSED_MIN_PIXELS = 6 << 20  # ... where a plane (float32) outgrows the L3 cache (fused: no intermediate
#                               image through memory; smaller planes are faster unfused; same values)
_FUSED_MIN_ROWS = 64  # output rows per fused tile (at least 4 r, to bound recomputation)

_Q = np.float32(0.25)
_H = np.float32(0.5)


@numba.njit(inline="always")
def _index(i, n, mode):
    if i < 0:
        return 0 if mode == NEAREST else min(-i - 1, n - 1)
    if i >= n:
        return n - 1 if mode == NEAREST else max(2 * n - i - 1, 0)
    return i


# --------------------------------------------------------------------------
# Symmetric 1D correlation: out[i] = w[0] x[i] + sum_{k>=1} w[k] (x[i-k] + x[i+k])
# evaluated per pixel as ((w[r](x[i-r]+x[i+r]) + w[r-1](...)) + ...) + w[0] x[i]
# (small weights first), in float32.
# --------------------------------------------------------------------------


# The loops over pixels live in these helpers and run over views of exactly
# their length from index 0: Numba then knows no index is negative (no
# wrap-around select), and LLVM vectorises them (with a runtime alias check).
# Four taps are applied per sweep, the partial sum held in a register: the
# per-pixel order of operations is the same as one tap per sweep, with a
# quarter of the loads and stores of the output.


@numba.njit(cache=True, nogil=True)
def _set1(o, x1, x2, w1):
    for i in range(o.shape[0]):
        o[i] = w1 * (x1[i] + x2[i])


@numba.njit(cache=True, nogil=True)
def _add1(o, x1, x2, w1):
    for i in range(o.shape[0]):
        o[i] += w1 * (x1[i] + x2[i])


@numba.njit(cache=True, nogil=True)
def _set4(o, x1, x2, x3, x4, x5, x6, x7, x8, w1, w2, w3, w4):
    for i in range(o.shape[0]):
        v = w1 * (x1[i] + x2[i])
        v += w2 * (x3[i] + x4[i])
        v += w3 * (x5[i] + x6[i])
        v += w4 * (x7[i] + x8[i])
        o[i] = v


@numba.njit(cache=True, nogil=True)
def _add4(o, x1, x2, x3, x4, x5, x6, x7, x8, w1, w2, w3, w4):
    for i in range(o.shape[0]):
        v = o[i]
        v += w1 * (x1[i] + x2[i])
        v += w2 * (x3[i] + x4[i])
        v += w3 * (x5[i] + x6[i])
        v += w4 * (x7[i] + x8[i])
        o[i] = v


@numba.njit(cache=True, nogil=True)
def _scaled_set(o, x0, w0):
    for i in range(o.shape[0]):
        o[i] = w0 * x0[i]


@numba.njit(cache=True, nogil=True)
def _scaled_add(o, x0, w0):
    for i in range(o.shape[0]):
        o[i] += w0 * x0[i]


@numba.njit(cache=True, nogil=True)
def _row_taps(o, pad, wh):
    """One row (length n) of the symmetric correlation from ``pad`` (length n + 2 r), as _symmetric_last."""
    r = wh.shape[0] - 1
    nc = o.shape[0]
    b = r
    e = nc + r
    if r == 0:
        _scaled_set(o, pad[b:e], wh[0])
        return
    k = r
    first = True
    while k >= 4:
        if first:
            _set4(o, pad[b - k:e - k], pad[b + k:e + k],
                  pad[b - k + 1:e - k + 1], pad[b + k - 1:e + k - 1],
                  pad[b - k + 2:e - k + 2], pad[b + k - 2:e + k - 2],
                  pad[b - k + 3:e - k + 3], pad[b + k - 3:e + k - 3],
                  wh[k], wh[k - 1], wh[k - 2], wh[k - 3])
        else:
            _add4(o, pad[b - k:e - k], pad[b + k:e + k],
                  pad[b - k + 1:e - k + 1], pad[b + k - 1:e + k - 1],
                  pad[b - k + 2:e - k + 2], pad[b + k - 2:e + k - 2],
                  pad[b - k + 3:e - k + 3], pad[b + k - 3:e + k - 3],
                  wh[k], wh[k - 1], wh[k - 2], wh[k - 3])
        first = False
        k -= 4
    while k >= 1:
        if first:
            _set1(o, pad[b - k:e - k], pad[b + k:e + k], wh[k])
        else:
            _add1(o, pad[b - k:e - k], pad[b + k:e + k], wh[k])
        first = False
        k -= 1
    _scaled_add(o, pad[b:e], wh[0])


@numba.njit(parallel=True, cache=True, nogil=True)
def _symmetric_last(src, wh, mode, out):
    """Symmetric correlation along the last axis of a (A, N) array; ``wh[k]`` is the weight at distance k.

    Per pixel: ``((w[r] (x[i-r] + x[i+r]) + w[r-1] (...)) + ... + w[1] (...)) + w[0] x[i]``.
    """
    a_len, n = src.shape
    r = wh.shape[0] - 1
    n_blocks = (a_len + _ROW_BLOCK - 1) // _ROW_BLOCK
    for blk in numba.prange(n_blocks):
        pad = np.empty(n + 2 * r, np.float32)
        for a in range(blk * _ROW_BLOCK, min(a_len, (blk + 1) * _ROW_BLOCK)):
            row = src[a]
            o = out[a]
            pad[r:r + n] = row
            for i in range(r):
                pad[i] = row[_index(i - r, n, mode)]
                pad[r + n + i] = row[_index(n + i, n, mode)]
            for c0 in range(0, n, _CHUNK):
                c1 = min(n, c0 + _CHUNK)
                _row_taps(o[c0:c1], pad[c0:c1 + 2 * r], wh)


# Along a non-contiguous axis a strip of _STRIP columns is first copied, with
# its border rows, into a scratch array of constant row stride; four output
# rows are then computed together, four taps at a time: output row i + q, tap
# k - t reads rows i + q - (k - t) and i + q + k - t, so the 16 (row, tap)
# pairs read only 14 distinct rows, L[m] = row(i - k + m) and
# R[m] = row(i + k - 3 + m), m = 0..6. Each group of 7 rows is one view and the
# four partial sums one accumulator at constant offsets, so LLVM needs only two
# run-time alias checks to vectorise. The per-pixel order of operations is that
# of the one-row kernels above.


@numba.njit(cache=True, nogil=True)
def _rows4_taps4(acc, lv, rv, w0, w1, w2, w3, n_cols, first):
    s = _STRIP
    for b in range(n_cols):
        l0 = lv[b]
        l1 = lv[s + b]
        l2 = lv[2 * s + b]
        l3 = lv[3 * s + b]
        l4 = lv[4 * s + b]
        l5 = lv[5 * s + b]
        l6 = lv[6 * s + b]
        r0 = rv[b]
        r1 = rv[s + b]
        r2 = rv[2 * s + b]
        r3 = rv[3 * s + b]
        r4 = rv[4 * s + b]
        r5 = rv[5 * s + b]
        r6 = rv[6 * s + b]
        if first:
            v0 = w0 * (l0 + r3)
            v1 = w0 * (l1 + r4)
            v2 = w0 * (l2 + r5)
            v3 = w0 * (l3 + r6)
        else:
            v0 = acc[b] + w0 * (l0 + r3)
            v1 = acc[s + b] + w0 * (l1 + r4)
            v2 = acc[2 * s + b] + w0 * (l2 + r5)
            v3 = acc[3 * s + b] + w0 * (l3 + r6)
        v0 += w1 * (l1 + r2)
        v1 += w1 * (l2 + r3)
        v2 += w1 * (l3 + r4)
        v3 += w1 * (l4 + r5)
        v0 += w2 * (l2 + r1)
        v1 += w2 * (l3 + r2)
        v2 += w2 * (l4 + r3)
        v3 += w2 * (l5 + r4)
        v0 += w3 * (l3 + r0)
        v1 += w3 * (l4 + r1)
        v2 += w3 * (l5 + r2)
        v3 += w3 * (l6 + r3)
        acc[b] = v0
        acc[s + b] = v1
        acc[2 * s + b] = v2
        acc[3 * s + b] = v3


@numba.njit(cache=True, nogil=True)
def _rows4_tap1(acc, lv, rv, w, n_cols, first):
    s = _STRIP
    for b in range(n_cols):
        if first:
            acc[b] = w * (lv[b] + rv[b])
            acc[s + b] = w * (lv[s + b] + rv[s + b])
            acc[2 * s + b] = w * (lv[2 * s + b] + rv[2 * s + b])
            acc[3 * s + b] = w * (lv[3 * s + b] + rv[3 * s + b])
        else:
            acc[b] += w * (lv[b] + rv[b])
            acc[s + b] += w * (lv[s + b] + rv[s + b])
            acc[2 * s + b] += w * (lv[2 * s + b] + rv[2 * s + b])
            acc[3 * s + b] += w * (lv[3 * s + b] + rv[3 * s + b])


@numba.njit(cache=True, nogil=True)
def _finish(o, acc, x0, w0):
    for b in range(o.shape[0]):
        o[b] = acc[b] + w0 * x0[b]


@numba.njit(parallel=True, cache=True, nogil=True)
def _symmetric_inner_direct(src, wh, mode, out):
    """Symmetric correlation along axis 1 of a (A, N, B) array for short kernels (no scratch copy).

    Same per-pixel order of operations as :func:`_symmetric_inner`, hence the same values.
    """
    a_len, n, b_len = src.shape
    r = wh.shape[0] - 1
    n_strips = (b_len + _DIRECT_STRIP - 1) // _DIRECT_STRIP
    n_blocks = (n + _INNER_ROWS - 1) // _INNER_ROWS
    for job in numba.prange(a_len * n_strips * n_blocks):
        a = job // (n_strips * n_blocks)
        b0 = (job // n_blocks % n_strips) * _DIRECT_STRIP
        b1 = min(b_len, b0 + _DIRECT_STRIP)
        i0 = (job % n_blocks) * _INNER_ROWS
        sa = src[a]
        oa = out[a]
        for i in range(i0, min(n, i0 + _INNER_ROWS)):
            o = oa[i, b0:b1]
            if r == 0:
                _scaled_set(o, sa[i, b0:b1], wh[0])
                continue
            k = r
            first = True
            while k >= 4:
                x1 = sa[_index(i - k, n, mode), b0:b1]
                x2 = sa[_index(i + k, n, mode), b0:b1]
                x3 = sa[_index(i - k + 1, n, mode), b0:b1]
                x4 = sa[_index(i + k - 1, n, mode), b0:b1]
                x5 = sa[_index(i - k + 2, n, mode), b0:b1]
                x6 = sa[_index(i + k - 2, n, mode), b0:b1]
                x7 = sa[_index(i - k + 3, n, mode), b0:b1]
                x8 = sa[_index(i + k - 3, n, mode), b0:b1]
                if first:
                    _set4(o, x1, x2, x3, x4, x5, x6, x7, x8, wh[k], wh[k - 1], wh[k - 2], wh[k - 3])
                else:
                    _add4(o, x1, x2, x3, x4, x5, x6, x7, x8, wh[k], wh[k - 1], wh[k - 2], wh[k - 3])
                first = False
                k -= 4
            while k >= 1:
                x1 = sa[_index(i - k, n, mode), b0:b1]
                x2 = sa[_index(i + k, n, mode), b0:b1]
                if first:
                    _set1(o, x1, x2, wh[k])
                else:
                    _add1(o, x1, x2, wh[k])
                first = False
                k -= 1
            _scaled_add(o, sa[i, b0:b1], wh[0])


@numba.njit(cache=True, nogil=True)
def _columns_from_scratch(scr, acc, wh, oa, i0, i1, b0, nc):
    """Output rows i0:i1 (columns b0:b0+nc) of the symmetric correlation across rows.

    ``scr`` holds, at row stride _STRIP, the input row of output row i at scratch
    row ``i - i0 + r`` (border rows included). Same per-pixel order as _symmetric_inner.
    """
    r = wh.shape[0] - 1
    s = _STRIP
    n_out = i1 - i0
    n4 = n_out - n_out % 4
    b1 = b0 + nc
    for i in range(0, n4, 4):
        if r == 0:
            for q in range(4):
                _scaled_set(oa[i0 + i + q, b0:b1], scr[(i + q) * s:(i + q) * s + nc], wh[0])
            continue
        k = r
        while k >= 4:
            lo = (i - k + r) * s
            hi = (i + k - 3 + r) * s
            _rows4_taps4(acc, scr[lo:lo + 7 * s], scr[hi:hi + 7 * s],
                         wh[k], wh[k - 1], wh[k - 2], wh[k - 3], nc, k == r)
            k -= 4
        while k >= 1:
            lo = (i - k + r) * s
            hi = (i + k + r) * s
            _rows4_tap1(acc, scr[lo:lo + 4 * s], scr[hi:hi + 4 * s], wh[k], nc, k == r)
            k -= 1
        for q in range(4):
            c = (i + q + r) * s
            _finish(oa[i0 + i + q, b0:b1], acc[q * s:q * s + nc], scr[c:c + nc], wh[0])
    for i in range(n4, n_out):
        o = oa[i0 + i, b0:b1]
        c = (i + r) * s
        if r == 0:
            _scaled_set(o, scr[c:c + nc], wh[0])
            continue
        k = r
        first = True
        while k >= 4:
            x1 = scr[c - k * s:c - k * s + nc]
            x2 = scr[c + k * s:c + k * s + nc]
            x3 = scr[c - (k - 1) * s:c - (k - 1) * s + nc]
            x4 = scr[c + (k - 1) * s:c + (k - 1) * s + nc]
            x5 = scr[c - (k - 2) * s:c - (k - 2) * s + nc]
            x6 = scr[c + (k - 2) * s:c + (k - 2) * s + nc]
            x7 = scr[c - (k - 3) * s:c - (k - 3) * s + nc]
            x8 = scr[c + (k - 3) * s:c + (k - 3) * s + nc]
            if first:
                _set4(o, x1, x2, x3, x4, x5, x6, x7, x8, wh[k], wh[k - 1], wh[k - 2], wh[k - 3])
            else:
                _add4(o, x1, x2, x3, x4, x5, x6, x7, x8, wh[k], wh[k - 1], wh[k - 2], wh[k - 3])
            first = False
            k -= 4
        while k >= 1:
            x1 = scr[c - k * s:c - k * s + nc]
            x2 = scr[c + k * s:c + k * s + nc]
            if first:
                _set1(o, x1, x2, wh[k])
            else:
                _add1(o, x1, x2, wh[k])
            first = False
            k -= 1
        _scaled_add(o, scr[c:c + nc], wh[0])


@numba.njit(parallel=True, cache=True, nogil=True)
def _symmetric_inner(src, wh, mode, out):
    """Symmetric correlation along axis 1 of a (A, N, B) array, in strips of B (same per-pixel order)."""
    a_len, n, b_len = src.shape
    r = wh.shape[0] - 1
    s = _STRIP
    n_strips = (b_len + s - 1) // s
    for job in numba.prange(a_len * n_strips):
        a = job // n_strips
        b0 = (job % n_strips) * s
        nc = min(b_len, b0 + s) - b0
        sa = src[a]
        # scratch row j holds source row _index(j - r), columns b0:b0+nc
        scr = np.empty((n + 2 * r + 4) * s, np.float32)
        for j in range(n + 2 * r):
            scr[j * s:j * s + nc] = sa[_index(j - r, n, mode), b0:b0 + nc]
        acc = np.empty(4 * s, np.float32)
        _columns_from_scratch(scr, acc, wh, out[a], 0, n, b0, nc)


@numba.njit(parallel=True, cache=True, nogil=True)
def _symmetric_last2_fused(src, wh, mode, block_rows, out):
    """Both last axes of a (A, M, N) array: along N, then along M, in tiles that stay in L2.

    A tile is ``block_rows`` output rows by _STRIP columns: its input rows (with
    r border rows either side, recomputed by neighbouring tiles) are filtered
    along N into a scratch array, then filtered along M from it. The per-pixel
    operations and their order are those of _symmetric_last then
    _symmetric_inner, so the values are identical, without the intermediate
    image going through memory.
    """
    a_len, m, n = src.shape
    r = wh.shape[0] - 1
    s = _STRIP
    n_strips = (n + s - 1) // s
    n_blocks = (m + block_rows - 1) // block_rows
    for job in numba.prange(a_len * n_blocks * n_strips):
        a = job // (n_blocks * n_strips)
        i0 = (job // n_strips % n_blocks) * block_rows
        i1 = min(m, i0 + block_rows)
        b0 = (job % n_strips) * s
        nc = min(n, b0 + s) - b0
        sa = src[a]
        scr = np.empty((i1 - i0 + 2 * r + 4) * s, np.float32)
        pad = np.empty(nc + 2 * r, np.float32)
        acc = np.empty(4 * s, np.float32)
        for j in range(i1 - i0 + 2 * r):
            row = sa[_index(i0 - r + j, m, mode)]
            pad[r:r + nc] = row[b0:b0 + nc]
            for t in range(r):
                pad[t] = row[_index(b0 - r + t, n, mode)]
                pad[r + nc + t] = row[_index(b0 + nc + t, n, mode)]
            _row_taps(scr[j * s:j * s + nc], pad, wh)
        _columns_from_scratch(scr, acc, wh, out[a], i0, i1, b0, nc)


def correlate_symmetric(x: np.ndarray, half_weights: np.ndarray, axis: int, mode: int,
                        out: np.ndarray | None = None) -> np.ndarray:
    """Correlate a float32 array with a symmetric 1D kernel along ``axis``.

    Parameters
    ----------
    x : float32 ndarray, C-contiguous, any number of dimensions
    half_weights : ndarray of length r + 1
        ``half_weights[k]`` is the weight at distance ``k`` either side of the
        centre (the full kernel is ``half_weights[::-1]`` then ``half_weights[1:]``).
    axis : int
    mode : {NEAREST, REFLECT}
        Border rule: scipy.ndimage's ``'nearest'`` or ``'reflect'``.
    out : float32 ndarray, optional
        Where to write (must not be ``x``).

    Returns
    -------
    out : float32 ndarray of the shape of ``x``
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    wh = np.ascontiguousarray(half_weights, dtype=np.float32)
    shape = x.shape
    axis %= x.ndim
    n = shape[axis]
    before = int(np.prod(shape[:axis]))
    after = int(np.prod(shape[axis + 1:]))
    if out is None:
        out = np.empty_like(x)
    if x.size == 0:
        return out
    if after == 1:
        _symmetric_last(x.reshape(before, n), wh, mode, out.reshape(before, n))
    else:
        kernel = _symmetric_inner_direct if wh.shape[0] - 1 <= _DIRECT_MAX_RADIUS else _symmetric_inner
        kernel(x.reshape(before, n, after), wh, mode, out.reshape(before, n, after))
    return out


def separable_symmetric(x: np.ndarray, half_weights: np.ndarray, mode: int) -> np.ndarray:
    """Apply the same symmetric 1D kernel along every axis (e.g. a Gaussian), last axis first."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    wh = np.ascontiguousarray(half_weights, dtype=np.float32)
    r = wh.shape[0] - 1
    if x.ndim < 2 or x.size == 0 or r > _FUSED_MAX_RADIUS or x.shape[-1] * x.shape[-2] < _FUSED_MIN_PIXELS:
        if x.ndim == 0:
            return x.copy()
        out = correlate_symmetric(x, wh, x.ndim - 1, mode)
        if x.ndim == 1:
            return out
        first = x.ndim - 2
    else:
        out = np.empty_like(x)
        m, n = x.shape[-2:]
        _symmetric_last2_fused(x.reshape(-1, m, n), wh, mode, max(_FUSED_MIN_ROWS, 4 * r), out.reshape(-1, m, n))
        first = x.ndim - 3
    if first < 0:
        return out
    tmp = np.empty_like(out)
    for axis in range(first, -1, -1):
        correlate_symmetric(out, half_weights, axis, mode, out=tmp)
        out, tmp = tmp, out
    return out


# --------------------------------------------------------------------------
# Sobel magnitude, fused: sqrt(sum_axis d_axis**2) / sqrt(ndim), border 'reflect'.
# d_axis = difference [-1, 0, 1] along axis, smoothing [1/4, 1/2, 1/4] along the others.
# --------------------------------------------------------------------------


@numba.njit(inline="always")
def _reflect(i, n):
    if i < 0:
        return min(-i - 1, n - 1)
    if i >= n:
        return max(2 * n - i - 1, 0)
    return i


@numba.njit(parallel=True, cache=True, nogil=True)
def _sobel_2d(x, out):
    m, n = x.shape
    scale = np.float32(np.sqrt(np.float32(2.0)))
    n_blocks = (m + _ROW_BLOCK - 1) // _ROW_BLOCK
    for blk in numba.prange(n_blocks):
        v = np.empty(n + 2, np.float32)  # smoothed across rows, padded by one
        d = np.empty(n + 2, np.float32)  # differenced across rows, padded by one
        for i in range(blk * _ROW_BLOCK, min(m, (blk + 1) * _ROW_BLOCK)):
            a = x[_reflect(i - 1, m)]
            b = x[i]
            c = x[_reflect(i + 1, m)]
            o = out[i]
            for j in range(n):
                v[j + 1] = (_Q * a[j] + _H * b[j]) + _Q * c[j]
                d[j + 1] = c[j] - a[j]
            v[0] = v[1]
            v[n + 1] = v[n]
            d[0] = d[1]
            d[n + 1] = d[n]
            for j in range(n):
                gx = v[j + 2] - v[j]
                gy = (_Q * d[j] + _H * d[j + 1]) + _Q * d[j + 2]
                o[j] = np.sqrt(gy * gy + gx * gx) / scale


@numba.njit(parallel=True, cache=True, nogil=True)
def _sobel_3d(x, out):
    n_p, m, n = x.shape
    scale = np.float32(np.sqrt(np.float32(3.0)))
    for p in numba.prange(n_p):
        dz = np.empty(n + 2, np.float32)  # plane difference, smoothed across rows
        sy = np.empty(n + 2, np.float32)  # row difference, smoothed across planes
        sx = np.empty(n + 2, np.float32)  # smoothed across planes and rows
        xm = x[_reflect(p - 1, n_p)]
        x0 = x[p]
        xp = x[_reflect(p + 1, n_p)]
        for i in range(m):
            im = _reflect(i - 1, m)
            ip = _reflect(i + 1, m)
            mm = xm[im]
            m0 = xm[i]
            mp = xm[ip]
            cm = x0[im]
            c0 = x0[i]
            cp = x0[ip]
            pm = xp[im]
            p0 = xp[i]
            pp = xp[ip]
            o = out[p, i]
            for j in range(n):
                zm = (_Q * mm[j] + _H * cm[j]) + _Q * pm[j]
                z0 = (_Q * m0[j] + _H * c0[j]) + _Q * p0[j]
                zp = (_Q * mp[j] + _H * cp[j]) + _Q * pp[j]
                dz[j + 1] = (_Q * (pm[j] - mm[j]) + _H * (p0[j] - m0[j])) + _Q * (pp[j] - mp[j])
                sy[j + 1] = zp - zm
                sx[j + 1] = (_Q * zm + _H * z0) + _Q * zp
            dz[0] = dz[1]
            dz[n + 1] = dz[n]
            sy[0] = sy[1]
            sy[n + 1] = sy[n]
            sx[0] = sx[1]
            sx[n + 1] = sx[n]
            for j in range(n):
                gx = sx[j + 2] - sx[j]
                gy = (_Q * sy[j] + _H * sy[j + 1]) + _Q * sy[j + 2]
                gz = (_Q * dz[j] + _H * dz[j + 1]) + _Q * dz[j + 2]
                o[j] = np.sqrt((gz * gz + gy * gy) + gx * gx) / scale


def sobel_magnitude(x: np.ndarray) -> np.ndarray:
    """Sobel magnitude of a 2D or 3D float32 image as ``skimage.filters.sobel`` (border 'reflect')."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.empty_like(x)
    if x.size == 0:
        return out
    if x.ndim == 2:
        _sobel_2d(x, out)
    elif x.ndim == 3:
        _sobel_3d(x, out)
    else:
        raise ValueError(f"sobel_magnitude supports 2D and 3D images, got {x.ndim}D.")
    return out
