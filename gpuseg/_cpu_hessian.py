"""Hessian eigenvalues of a smoothed image in one fused Numba pass.

scikit-image's ``multiscale_basic_features`` takes the Hessian as
``np.gradient(np.gradient(g)[a], axis=b)`` for ``a <= b`` and its eigenvalues
with ``hessian_matrix_eigvals``. These kernels compute the same numbers per
output row, reading the 5 (2D) or 5x5 (3D) neighbouring rows of ``g`` and
never materialising the gradients or the Hessian images:

* gradients exactly as ``np.gradient`` (edge_order 1) in float32: interior
  ``(f[i+1] - f[i-1]) / 2``, edges ``f[1] - f[0]`` and ``f[n-1] - f[n-2]``,
  including the gradient of the gradient next to the borders, so the Hessian
  elements are bit-identical to NumPy's;
* 2D eigenvalues with scikit-image's float32 formula (bit-identical):
  ``(hxx + hyy) / 2 +- sqrt(hxy**2 + ((hxx - hyy) / 2)**2)``;
* 3D eigenvalues in closed form (trigonometric solution of the characteristic
  cubic, with a polynomial for cos(acos(r) / 3)) in float64, rounded to
  float32; ``np.linalg.eigvalsh`` (float64 inside for float32 input) agrees to
  about 1e-13 of the matrix norm before rounding, so nearly always exactly.

Every pixel goes through the same operations whatever its position (apart from
the one-sided differences at the image border, which depend only on the
distance to it), so a tile computed with a halo equals the whole image bit for
bit.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ._region import box, outputs
from ._threading import parallel_kernel

_H = np.float32(0.5)
_ONE = np.float32(1.0)
_ROW_BLOCK = 8


@numba.njit(inline="always")
def _grad_index(i, n):
    """Rows that np.gradient (edge_order 1) differences at ``i``, and the scale."""
    if i == 0:
        return 0, 1, _ONE
    if i == n - 1:
        return n - 2, n - 1, _ONE
    return i - 1, i + 1, _H


@numba.njit(inline="always")
def _grad_row(f, out, n):
    """``out = np.gradient(f)`` for a 1D float32 row of length n >= 2."""
    out[0] = (f[1] - f[0]) * _ONE
    for j in range(1, n - 1):
        out[j] = (f[j + 1] - f[j - 1]) * _H
    out[n - 1] = (f[n - 1] - f[n - 2]) * _ONE


@numba.njit(inline="always")
def _eig2(a, b, c):
    """Eigenvalues of [[a, b], [b, c]] in float32, larger first: scikit-image's formula."""
    mean = (a + c) * _H
    t = (a - c) * _H
    root = np.sqrt(b * b + t * t)
    return mean + root, mean - root


@parallel_kernel(cache=True, nogil=True)
def _hessian_eig_2d(g, e0, e1, i0, j0):
    m, n = g.shape
    mo, no = e0.shape
    n_blocks = (mo + _ROW_BLOCK - 1) // _ROW_BLOCK
    for blk in numba.prange(n_blocks):
        c0 = np.empty(n, np.float32)  # d/drow of g on this row
        c1 = np.empty(n, np.float32)  # d/dcol of g on this row
        hxx = np.empty(n, np.float32)
        hxy = np.empty(n, np.float32)
        hyy = np.empty(n, np.float32)
        for a in range(blk * _ROW_BLOCK, min(mo, (blk + 1) * _ROW_BLOCK)):
            i = i0 + a
            lo, hi, s = _grad_index(i, m)
            lo_l, lo_h, lo_s = _grad_index(lo, m)
            hi_l, hi_h, hi_s = _grad_index(hi, m)
            i_l, i_h, i_s = _grad_index(i, m)
            a_l = g[lo_l]
            a_h = g[lo_h]
            b_l = g[hi_l]
            b_h = g[hi_h]
            r_l = g[i_l]
            r_h = g[i_h]
            row = g[i]
            for j in range(n):
                glo = (a_h[j] - a_l[j]) * lo_s
                ghi = (b_h[j] - b_l[j]) * hi_s
                hxx[j] = (ghi - glo) * s
                c0[j] = (r_h[j] - r_l[j]) * i_s
            _grad_row(c0, hxy, n)
            _grad_row(row, c1, n)
            _grad_row(c1, hyy, n)
            o0 = e0[a]
            o1 = e1[a]
            for j in range(no):
                o0[j], o1[j] = _eig2(hxx[j0 + j], hxy[j0 + j], hyy[j0 + j])


@numba.njit(inline="always")
def _cos_third_acos(r):
    """cos(acos(r) / 3) for r in [-1, 1], without acos and cos.

    It equals g(t) = cos(2 acos(t) / 3) at t = sqrt((1 + r) / 2), and g is
    smooth on [0, 1]: a degree-14 polynomial in x = 2 t - 1 (its Chebyshev
    interpolant, max error 4e-14) evaluated by Horner's rule.
    """
    x = 2.0 * math.sqrt(0.5 + 0.5 * r) - 1.0
    c = -1.6688621447732052e-09
    c = c * x + 5.572928785113618e-09
    c = c * x + -1.2553421887181077e-08
    c = c * x + 4.3229268461194195e-08
    c = c * x + -1.6017719962254283e-07
    c = c * x + 5.662254598822374e-07
    c = c * x + -2.0356042603234906e-06
    c = c * x + 7.5402146966515235e-06
    c = c * x + -2.8919992686674925e-05
    c = c * x + 0.00011642563629143217
    c = c * x + -0.0005041246859169327
    c = c * x + 0.0024663527980085423
    c = c * x + -0.015509188436622745
    c = c * x + 0.24740906632331164
    c = c * x + 0.766044443118978
    return c


@numba.njit(inline="always")
def _eig3(a00, a01, a02, a11, a12, a22):
    """Eigenvalues of a symmetric 3x3 matrix, decreasing, in float64 (closed form)."""
    q = (a00 + a11 + a22) / 3.0
    b00 = a00 - q
    b11 = a11 - q
    b22 = a22 - q
    off = a01 * a01 + a02 * a02 + a12 * a12
    p2 = b00 * b00 + b11 * b11 + b22 * b22 + 2.0 * off
    if p2 == 0.0:
        return q, q, q
    p = math.sqrt(p2 / 6.0)
    det = (b00 * (b11 * b22 - a12 * a12)
           - a01 * (a01 * b22 - a12 * a02)
           + a02 * (a01 * a12 - b11 * a02))
    r = det / (2.0 * p * p * p)
    r = min(1.0, max(-1.0, r))
    # With phi = acos(r) / 3 the roots are q + 2 p cos(phi + 2 pi j / 3); the
    # smallest, cos(phi + 2 pi / 3) = -cos(acos(-r) / 3), is also computed directly
    # (not from sin(phi), which loses half the digits where phi is near 0).
    l0 = q + 2.0 * p * _cos_third_acos(r)
    l2 = q - 2.0 * p * _cos_third_acos(-r)
    l1 = 3.0 * q - l0 - l2
    # Guard the order against rounding (l1 comes from a difference).
    if l1 > l0:
        l1 = l0
    if l1 < l2:
        l1 = l2
    return l0, l1, l2


@parallel_kernel(cache=True, nogil=True)
def _hessian_eig_3d(g, e0, e1, e2, p0, i0, j0):
    n_p, m, n = g.shape
    po, mo, no = e0.shape
    for pa in numba.prange(po):
        p = p0 + pa
        c0 = np.empty(n, np.float32)  # d/dplane of g on this row
        c1 = np.empty(n, np.float32)  # d/drow
        c2 = np.empty(n, np.float32)  # d/dcol
        h00 = np.empty(n, np.float32)
        h01 = np.empty(n, np.float32)
        h02 = np.empty(n, np.float32)
        h11 = np.empty(n, np.float32)
        h12 = np.empty(n, np.float32)
        h22 = np.empty(n, np.float32)
        p_l, p_h, p_s = _grad_index(p, n_p)
        pl_l, pl_h, pl_s = _grad_index(p_l, n_p)
        ph_l, ph_h, ph_s = _grad_index(p_h, n_p)
        g_pl = g[p_l]
        g_ph = g[p_h]
        g_pll = g[pl_l]
        g_plh = g[pl_h]
        g_phl = g[ph_l]
        g_phh = g[ph_h]
        g_p = g[p]
        for ia in range(mo):
            i = i0 + ia
            i_l, i_h, i_s = _grad_index(i, m)
            il_l, il_h, il_s = _grad_index(i_l, m)
            ih_l, ih_h, ih_s = _grad_index(i_h, m)
            # H00: d/dplane of (d/dplane g) at planes p_l, p_h, row i
            u_ll = g_pll[i]
            u_lh = g_plh[i]
            u_hl = g_phl[i]
            u_hh = g_phh[i]
            # H01: d/drow of (d/dplane g) at plane p, rows i_l, i_h
            v_ll = g_pl[i_l]
            v_lh = g_ph[i_l]
            v_hl = g_pl[i_h]
            v_hh = g_ph[i_h]
            # c0: d/dplane g at (p, i)
            w_l = g_pl[i]
            w_h = g_ph[i]
            # H11: d/drow of (d/drow g) at plane p, rows i_l, i_h
            x_ll = g_p[il_l]
            x_lh = g_p[il_h]
            x_hl = g_p[ih_l]
            x_hh = g_p[ih_h]
            # c1: d/drow g at (p, i)
            y_l = g_p[i_l]
            y_h = g_p[i_h]
            row = g_p[i]
            for j in range(n):
                glo = (u_lh[j] - u_ll[j]) * pl_s
                ghi = (u_hh[j] - u_hl[j]) * ph_s
                h00[j] = (ghi - glo) * p_s
                glo = (v_lh[j] - v_ll[j]) * p_s
                ghi = (v_hh[j] - v_hl[j]) * p_s
                h01[j] = (ghi - glo) * i_s
                c0[j] = (w_h[j] - w_l[j]) * p_s
                glo = (x_lh[j] - x_ll[j]) * il_s
                ghi = (x_hh[j] - x_hl[j]) * ih_s
                h11[j] = (ghi - glo) * i_s
                c1[j] = (y_h[j] - y_l[j]) * i_s
            _grad_row(c0, h02, n)
            _grad_row(c1, h12, n)
            _grad_row(row, c2, n)
            _grad_row(c2, h22, n)
            o0 = e0[pa, ia]
            o1 = e1[pa, ia]
            o2 = e2[pa, ia]
            for jo in range(no):
                j = j0 + jo
                l0, l1, l2 = _eig3(np.float64(h00[j]), np.float64(h01[j]), np.float64(h02[j]),
                                   np.float64(h11[j]), np.float64(h12[j]), np.float64(h22[j]))
                o0[jo] = np.float32(l0)
                o1[jo] = np.float32(l1)
                o2[jo] = np.float32(l2)


def hessian_eigenvalues(g: np.ndarray, region=None, out=None) -> list:
    """Eigenvalues of ``np.gradient(np.gradient(g)[a], axis=b)``, largest first.

    Parameters
    ----------
    g : float32 ndarray, 2D or 3D, every axis of length >= 2
    region : tuple of slice, optional
        The box of ``g`` whose eigenvalues are computed (default: all of it),
        equal to the whole image's there (the gradients' borders stay ``g``'s).
    out : sequence of ``g.ndim`` float32 ndarrays of the region's shape, optional
        Where they go (any strides); new arrays if not given.

    Returns
    -------
    eigenvalues : list of ``g.ndim`` float32 ndarrays of the region's shape, decreasing (``out``'s when given).
    """
    g = np.ascontiguousarray(g, dtype=np.float32)
    if g.ndim not in (2, 3):
        raise ValueError(f"hessian_eigenvalues supports 2D and 3D images, got {g.ndim}D.")
    if g.size and min(g.shape) < 2:  # the kernels read two samples per axis, as np.gradient needs
        raise ValueError(f"hessian_eigenvalues needs every axis of length >= 2, got shape {g.shape}.")
    origin, size = box(region, g.shape)
    out = outputs(out, g.ndim, size, lambda shape: np.empty(shape, np.float32))
    if g.size == 0:
        return out
    kernel = _hessian_eig_2d if g.ndim == 2 else _hessian_eig_3d
    kernel(g, *out, *origin)
    return out


@parallel_kernel(cache=True, nogil=True)
def _eig_2d(a00, a01, a11, e0, e1):
    for i in numba.prange(a00.shape[0]):
        e0[i], e1[i] = _eig2(a00[i], a01[i], a11[i])


@parallel_kernel(cache=True, nogil=True)
def _eig_3d(a00, a01, a02, a11, a12, a22, e0, e1, e2):
    for i in numba.prange(a00.shape[0]):
        l0, l1, l2 = _eig3(np.float64(a00[i]), np.float64(a01[i]), np.float64(a02[i]),
                           np.float64(a11[i]), np.float64(a12[i]), np.float64(a22[i]))
        e0[i] = np.float32(l0)
        e1[i] = np.float32(l1)
        e2[i] = np.float32(l2)


def symmetric_eigenvalues(elements: list) -> list:
    """Eigenvalues of a field of symmetric matrices, largest first (structure tensor, Hessian of Gaussian).

    2D: scikit-image's float32 closed form (``hessian_matrix_eigvals``); 3D: the
    closed form above in float64, rounded to float32. Pointwise, so tiled == whole.

    Parameters
    ----------
    elements : list of float32 ndarrays of one shape
        The upper triangle in ``combinations_with_replacement(range(ndim), 2)``
        order: ``[a00, a01, a11]`` (2D) or ``[a00, a01, a02, a11, a12, a22]`` (3D).

    Returns
    -------
    eigenvalues : list of ``ndim`` float32 ndarrays of that shape, decreasing.
    """
    flat = [np.ascontiguousarray(e, dtype=np.float32).reshape(-1) for e in elements]
    kernel = {3: _eig_2d, 6: _eig_3d}.get(len(flat))
    if kernel is None:
        raise ValueError(f"symmetric_eigenvalues takes 3 (2D) or 6 (3D) elements, got {len(flat)}.")
    out = [np.empty_like(flat[0]) for _ in range(2 if len(flat) == 3 else 3)]
    kernel(*flat, *out)
    return [o.reshape(np.shape(elements[0])) for o in out]
