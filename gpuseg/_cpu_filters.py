"""CPU filters that give scikit-image's numbers bit for bit, whatever a pixel's position.

``skimage.filters.gaussian`` and ``skimage.filters.sobel`` run SciPy's C filters:
every output value is a sum in float64 of float32 inputs times float64 weights,
in a fixed order, rounded once to float32. These Numba kernels do the same
operations in the same order (no fast-math: no fused multiply-add, no
reassociation), in parallel and vectorised; given float32 weights the Gaussian
passes make the same sums in float32 instead (ilastik's filters: twice the SIMD
lanes, float32 rounding). With float64 weights:

* the features equal scikit-image's exactly, and a forest trained on them is
  the forest scikit-image's recipe trains (a feature one ulp off moves a split
  threshold and changes the forest: about 2 % of the labels of a textured
  image, measured);
* a pixel filtered inside a tile equals the same pixel filtered in the whole
  image (every pixel goes through the same operations), so tiled prediction
  equals whole-image prediction exactly.

Gaussian (``scipy.ndimage.gaussian_filter``, mode ``'nearest'``): one 1D pass
per axis, axis 0 first, the result of each pass stored as float32; a pass is
SciPy's symmetric correlation ``x[i] w[0] + sum_{k=r..1} (x[i-k] + x[i+k]) w[k]``.
Gaussian derivatives (``gaussian_filter(..., order=...)``, the ilastik-style
features): the same passes with SciPy's derivative kernels, an odd order
through SciPy's antisymmetric sum ``x[i] w[0] + sum_{k=r..1} (x[i-k] - x[i+k]) w[k]``.

Sobel magnitude (``skimage.filters.sobel``, mode ``'reflect'``): for each axis,
``scipy.ndimage.convolve`` with the outer product of ``[1, 0, -1]`` along the
axis and ``[1, 2, 1] / 4`` along the others (its non-zero taps summed in C
order of the flipped kernel), squared and summed in float32, then
``sqrt(sum) / sqrt(ndim)``.

Speed comes from the loop layout: along the last axis a row is copied once
into a float64 buffer holding its border and the taps sweep chunks of it that
stay in L1; along the other axes each output row accumulates whole source rows
(strips of columns whose window of rows stays in L2). ``python -m
benchmarks.filters`` compares them with OpenCV and SciPy.
"""

from __future__ import annotations

import numba
import numpy as np

from ._region import box, outputs
from ._threading import parallel_kernel

NEAREST = 0  # scikit-image's Gaussian border: edge pixel repeated
REFLECT = 1  # scikit-image's Sobel border: half-sample symmetric

_CHUNK = 1024  # pixels of a row swept per tap along the last axis (stays in L1)
_ROW_BLOCK = 8  # rows per parallel job along the last axis
_STRIP = 512  # columns per job along the other axes (their window of rows stays in L2)
_INNER_ROWS = 32  # output rows per job along the other axes


@numba.njit(inline="always")
def _index(i, n, mode):
    if i < 0:
        return 0 if mode == NEAREST else min(-i - 1, n - 1)
    if i >= n:
        return n - 1 if mode == NEAREST else max(2 * n - i - 1, 0)
    return i


# The loops over pixels live in these helpers and run over views of exactly
# their length from index 0: Numba then knows no index is negative (no
# wrap-around select) and LLVM vectorises them.


# The sums are in the type of the weights and ``sign`` (float64: SciPy's; float32 x values are
# converted to it exactly before any arithmetic, as SciPy converts them).


@numba.njit(cache=True, nogil=True)
def _start(acc, x, w0):
    for i in range(acc.shape[0]):
        acc[i] = x[i] * w0


@numba.njit(cache=True, nogil=True)
def _add_one(acc, x1, x2, w, sign):
    """One tap: ``acc += (x1 + sign * x2) * w``; ``sign`` is 1 (SciPy's pair sum) or -1 (its
    difference: ``x1 + (-1) * x2`` is ``x1 - x2`` exactly)."""
    for i in range(acc.shape[0]):
        acc[i] += (x1[i] + sign * x2[i]) * w


@numba.njit(cache=True, nogil=True)
def _add_four(acc, a1, b1, a2, b2, a3, b3, a4, b4, w1, w2, w3, w4, sign):
    """Four taps in one sweep, added in the order four :func:`_add_one` sweeps would add them (the same
    sums, bit for bit), reading and writing ``acc`` once."""
    for i in range(acc.shape[0]):
        s = acc[i]
        s += (a1[i] + sign * b1[i]) * w1
        s += (a2[i] + sign * b2[i]) * w2
        s += (a3[i] + sign * b3[i]) * w3
        s += (a4[i] + sign * b4[i]) * w4
        acc[i] = s


@numba.njit(cache=True, nogil=True)
def _store(out, acc):
    for i in range(out.shape[0]):
        out[i] = np.float32(acc[i])


@parallel_kernel(cache=True, nogil=True)
def _symmetric_last(src, w, sign, mode, out):
    """SciPy's (anti)symmetric correlation along the last axis of a (A, N) float32 array, summed in ``w``'s type."""
    a_len, n = src.shape
    r = w.shape[0] - 1
    n_blocks = (a_len + _ROW_BLOCK - 1) // _ROW_BLOCK
    for blk in numba.prange(n_blocks):
        pad = np.empty(n + 2 * r, w.dtype)
        acc = np.empty(min(n, _CHUNK), w.dtype)
        for a in range(blk * _ROW_BLOCK, min(a_len, (blk + 1) * _ROW_BLOCK)):
            row = src[a]
            for i in range(n + 2 * r):
                pad[i] = row[_index(i - r, n, mode)]
            for c0 in range(0, n, _CHUNK):
                m = min(n, c0 + _CHUNK) - c0
                a_ = acc[:m]
                _start(a_, pad[c0 + r:c0 + r + m], w[0])
                o = c0 + r
                k = r
                while k >= 4:  # taps r, r-1, ... in fours, then one by one: SciPy's order
                    _add_four(a_, pad[o - k:o - k + m], pad[o + k:o + k + m],
                              pad[o - k + 1:o - k + 1 + m], pad[o + k - 1:o + k - 1 + m],
                              pad[o - k + 2:o - k + 2 + m], pad[o + k - 2:o + k - 2 + m],
                              pad[o - k + 3:o - k + 3 + m], pad[o + k - 3:o + k - 3 + m],
                              w[k], w[k - 1], w[k - 2], w[k - 3], sign)
                    k -= 4
                for k in range(k, 0, -1):
                    _add_one(a_, pad[o - k:o - k + m], pad[o + k:o + k + m], w[k], sign)
                _store(out[a, c0:c0 + m], a_)


@parallel_kernel(cache=True, nogil=True)
def _symmetric_inner(src, w, sign, mode, out):
    """SciPy's (anti)symmetric correlation along axis 1 of a (A, N, B) float32 array, summed in ``w``'s type."""
    a_len, n, b_len = src.shape
    r = w.shape[0] - 1
    n_strips = (b_len + _STRIP - 1) // _STRIP
    n_blocks = (n + _INNER_ROWS - 1) // _INNER_ROWS
    for job in numba.prange(a_len * n_strips * n_blocks):
        a = job // (n_strips * n_blocks)
        b0 = (job // n_blocks % n_strips) * _STRIP
        b1 = min(b_len, b0 + _STRIP)
        i0 = (job % n_blocks) * _INNER_ROWS
        acc = np.empty(b1 - b0, w.dtype)
        sa = src[a]
        for i in range(i0, min(n, i0 + _INNER_ROWS)):
            _start(acc, sa[i, b0:b1], w[0])
            k = r
            while k >= 4:  # as in _symmetric_last
                _add_four(acc, sa[_index(i - k, n, mode), b0:b1], sa[_index(i + k, n, mode), b0:b1],
                          sa[_index(i - k + 1, n, mode), b0:b1], sa[_index(i + k - 1, n, mode), b0:b1],
                          sa[_index(i - k + 2, n, mode), b0:b1], sa[_index(i + k - 2, n, mode), b0:b1],
                          sa[_index(i - k + 3, n, mode), b0:b1], sa[_index(i + k - 3, n, mode), b0:b1],
                          w[k], w[k - 1], w[k - 2], w[k - 3], sign)
                k -= 4
            for k in range(k, 0, -1):
                _add_one(acc, sa[_index(i - k, n, mode), b0:b1], sa[_index(i + k, n, mode), b0:b1], w[k], sign)
            _store(out[a, i, b0:b1], acc)


def correlate_symmetric(x: np.ndarray, half_weights: np.ndarray, axis: int, mode: int,
                        out: np.ndarray | None = None, antisymmetric: bool = False) -> np.ndarray:
    """Correlate a float32 array with a symmetric or antisymmetric 1D kernel along ``axis``, as SciPy does.

    Parameters
    ----------
    x : float32 ndarray, C-contiguous, any number of dimensions
    half_weights : float64 or float32 ndarray of length r + 1
        ``half_weights[k]`` is the kernel's weight at ``+k`` (the correlation's
        weight at ``-k``); ``-half_weights[k]`` (antisymmetric) or the same
        (symmetric) at ``-k``. The sums are in its type: float64 gives SciPy's
        values bit for bit; float32 is faster (twice the SIMD lanes; ``python
        -m benchmarks.filters``, rows ``pass``) and differs from them by
        float32 rounding.
    axis : int
    mode : {NEAREST, REFLECT}
        Border rule: scipy.ndimage's ``'nearest'`` or ``'reflect'``.
    out : float32 ndarray, optional
        Where to write (must not be ``x``).
    antisymmetric : bool
        SciPy's antisymmetric sum ``x[i] w[0] + sum_{k=r..1} (x[i-k] - x[i+k]) w[k]``
        (a first derivative) instead of the symmetric one.

    Returns
    -------
    out : float32 ndarray of the shape of ``x``
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    w = np.ascontiguousarray(half_weights)
    if w.dtype != np.float32:
        w = w.astype(np.float64)
    sign = w.dtype.type(-1.0 if antisymmetric else 1.0)
    axis %= x.ndim
    n = x.shape[axis]
    before = int(np.prod(x.shape[:axis]))
    after = int(np.prod(x.shape[axis + 1:]))
    if out is None:
        out = np.empty_like(x)
    if x.size == 0:
        return out
    if after == 1:
        _symmetric_last(x.reshape(before, n), w, sign, mode, out.reshape(before, n))
    else:
        _symmetric_inner(x.reshape(before, n, after), w, sign, mode, out.reshape(before, n, after))
    return out


def separable_symmetric(x: np.ndarray, kernels: list, mode: int) -> np.ndarray:
    """Apply one 1D kernel per axis, axis 0 first (``scipy.ndimage.gaussian_filter``, any ``order``).

    Parameters
    ----------
    x : float32 ndarray, any number of dimensions
    kernels : list of (half_weights, antisymmetric), one per axis
        As :func:`correlate_symmetric` takes them.
    mode : {NEAREST, REFLECT}

    Returns
    -------
    out : float32 ndarray of the shape of ``x``
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim == 0:
        return x.copy()
    out = correlate_symmetric(x, kernels[0][0], 0, mode, antisymmetric=kernels[0][1])
    tmp = np.empty_like(out) if x.ndim > 1 else None
    for axis in range(1, x.ndim):
        correlate_symmetric(out, kernels[axis][0], axis, mode, out=tmp, antisymmetric=kernels[axis][1])
        out, tmp = tmp, out
    return out


# --------------------------------------------------------------------------
# Sobel magnitude. The flipped kernel of the derivative along axis d is
# [-1, 0, 1] along d times [1/4, 1/2, 1/4] along the others; SciPy sums its
# non-zero taps in C order, in float64, starting from 0.
# --------------------------------------------------------------------------

_Q = 0.25
_H = 0.5


@numba.njit(inline="always")
def _sobel_pixel_2d(a, b, c, jm, j, jp):
    """Squared-magnitude sum of the two axis derivatives at column j of the rows a (i-1), b (i), c (i+1)."""
    d0 = 0.0
    d0 += np.float64(a[jm]) * -_Q
    d0 += np.float64(a[j]) * -_H
    d0 += np.float64(a[jp]) * -_Q
    d0 += np.float64(c[jm]) * _Q
    d0 += np.float64(c[j]) * _H
    d0 += np.float64(c[jp]) * _Q
    d1 = 0.0
    d1 += np.float64(a[jm]) * -_Q
    d1 += np.float64(a[jp]) * _Q
    d1 += np.float64(b[jm]) * -_H
    d1 += np.float64(b[jp]) * _H
    d1 += np.float64(c[jm]) * -_Q
    d1 += np.float64(c[jp]) * _Q
    f0 = np.float32(d0)
    f1 = np.float32(d1)
    return f0 * f0 + f1 * f1


@parallel_kernel(cache=True, nogil=True)
def _sobel_2d(x, out, i0, j0):
    m, n = x.shape
    mo, no = out.shape
    whole_rows = j0 == 0 and no == n
    scale = np.float32(np.sqrt(np.float32(2.0)))
    n_blocks = (mo + _ROW_BLOCK - 1) // _ROW_BLOCK
    for blk in numba.prange(n_blocks):
        row = np.empty(n, np.float32)  # a whole row, when the region is narrower than the image
        for a in range(blk * _ROW_BLOCK, min(mo, (blk + 1) * _ROW_BLOCK)):
            i = i0 + a
            o = out[a] if whole_rows else row
            _sobel_row_2d(x[_index(i - 1, m, REFLECT)], x[i], x[_index(i + 1, m, REFLECT)], o, n, scale)
            if not whole_rows:
                out[a] = row[j0:j0 + no]


@numba.njit(inline="always")
def _sobel_row_2d(a, b, c, o, n, scale):
    """Sobel magnitude of the row ``b`` (``a`` above it, ``c`` below) into ``o``."""
    o[0] = np.sqrt(_sobel_pixel_2d(a, b, c, 0, 0, min(1, n - 1))) / scale
    for j in range(1, n - 1):
        o[j] = np.sqrt(_sobel_pixel_2d(a, b, c, j - 1, j, j + 1)) / scale
    if n > 1:
        o[n - 1] = np.sqrt(_sobel_pixel_2d(a, b, c, n - 2, n - 1, n - 1)) / scale


@numba.njit(inline="always")
def _sobel_pixel_3d(r, jm, j, jp):
    """Squared-magnitude sum at column j; ``r[p][q]`` is the row at plane offset p - 1, row offset q - 1."""
    cols = (jm, j, jp)
    s = (_Q, _H, _Q)
    d0 = 0.0
    for p in (0, 2):
        e = -1.0 if p == 0 else 1.0
        for q in range(3):
            for t in range(3):
                d0 += np.float64(r[p][q][cols[t]]) * (e * s[q] * s[t])
    d1 = 0.0
    for p in range(3):
        for q in (0, 2):
            e = -1.0 if q == 0 else 1.0
            for t in range(3):
                d1 += np.float64(r[p][q][cols[t]]) * (s[p] * e * s[t])
    d2 = 0.0
    for p in range(3):
        for q in range(3):
            for t in (0, 2):
                e = -1.0 if t == 0 else 1.0
                d2 += np.float64(r[p][q][cols[t]]) * (s[p] * s[q] * e)
    f0 = np.float32(d0)
    f1 = np.float32(d1)
    f2 = np.float32(d2)
    return (f0 * f0 + f1 * f1) + f2 * f2


@parallel_kernel(cache=True, nogil=True)
def _sobel_3d(x, out, p0, i0, j0):
    n_p, m, n = x.shape
    po, mo, no = out.shape
    whole_rows = j0 == 0 and no == n
    scale = np.float32(np.sqrt(np.float32(3.0)))
    for job in numba.prange(po * mo):
        p = p0 + job // mo
        i = i0 + job % mo
        planes = (x[_index(p - 1, n_p, REFLECT)], x[p], x[_index(p + 1, n_p, REFLECT)])
        im = _index(i - 1, m, REFLECT)
        ip = _index(i + 1, m, REFLECT)
        r = ((planes[0][im], planes[0][i], planes[0][ip]),
             (planes[1][im], planes[1][i], planes[1][ip]),
             (planes[2][im], planes[2][i], planes[2][ip]))
        o = out[p - p0, i - i0] if whole_rows else np.empty(n, np.float32)
        o[0] = np.sqrt(_sobel_pixel_3d(r, 0, 0, min(1, n - 1))) / scale
        for j in range(1, n - 1):
            o[j] = np.sqrt(_sobel_pixel_3d(r, j - 1, j, j + 1)) / scale
        if n > 1:
            o[n - 1] = np.sqrt(_sobel_pixel_3d(r, n - 2, n - 1, n - 1)) / scale
        if not whole_rows:
            out[p - p0, i - i0] = o[j0:j0 + no]


def sobel_magnitude(x: np.ndarray, region=None, out=None) -> np.ndarray:
    """Sobel magnitude of a 2D or 3D float32 image, equal to ``skimage.filters.sobel`` bit for bit.

    Parameters
    ----------
    x : float32 ndarray, 2D or 3D
    region : tuple of slice, optional
        The box of ``x`` whose values are computed (default: all of it); the
        borders stay those of ``x``, so a box's values equal the whole image's there.
    out : float32 ndarray of the region's shape, optional
        Where they go (any strides); a new array if not given.

    Returns
    -------
    magnitude : float32 ndarray of the region's shape (``out`` when given)
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim not in (2, 3):
        raise ValueError(f"sobel_magnitude supports 2D and 3D images, got {x.ndim}D.")
    origin, size = box(region, x.shape)
    (out,) = outputs(out, 1, size, lambda shape: np.empty(shape, np.float32))
    if x.size == 0:
        return out
    if x.ndim == 2:
        _sobel_2d(x, out, *origin)
    else:
        _sobel_3d(x, out, *origin)
    return out


@parallel_kernel(cache=True, nogil=True)
def copy_3d(src, dst):
    """``dst[...] = src`` for 3D arrays of one shape, rows split over the cores (a strided crop to a matrix row)."""
    n0, n1, n2 = dst.shape
    for r in numba.prange(n0 * n1):
        a = r // n1
        b = r - a * n1
        for c in range(n2):
            dst[a, b, c] = src[a, b, c]
