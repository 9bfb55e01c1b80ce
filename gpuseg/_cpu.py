"""CPU primitives: OpenCV filters, NumPy derivatives, scikit-learn forests, a Numba forest kernel.

Same names and signatures as :mod:`gpuseg._gpu`. Values match scikit-image's
``multiscale_basic_features`` within float32 rounding: OpenCV's separable
filters use scikit-image's kernels and border modes (Gaussian: truncate 4,
``nearest`` = ``BORDER_REPLICATE``; Sobel: ``reflect`` = ``BORDER_REFLECT``)
and run several times faster than ``scipy.ndimage`` (see ``benchmarks/``).
"""

from __future__ import annotations

from itertools import combinations_with_replacement

import cv2
import numpy as np
from skimage.util import img_as_float32

from ._forest_kernels import predict_proba_cpu

xp = np
name = "cpu"

_SOBEL_DIFF = np.array([-1.0, 0.0, 1.0])
_SOBEL_SMOOTH = np.array([0.25, 0.5, 0.25])


def ascontiguous(x):
    return np.ascontiguousarray(x)


def as_float32(image):
    """Scale to float32 as scikit-image's ``img_as_float32`` does."""
    return img_as_float32(image)


def all_finite(image) -> bool:
    return image.dtype.kind != "f" or bool(np.isfinite(image).all())


def empty(shape, dtype=np.float32):
    return np.empty(shape, dtype=dtype)


def gaussian_kernel(sigma: float) -> np.ndarray:
    """scikit-image's (SciPy's) Gaussian kernel: radius ``int(4 sigma + 0.5)``, sum 1."""
    radius = int(4.0 * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 / sigma**2 * x**2)
    return k / k.sum()


def _correlate1d(x: np.ndarray, kernel: np.ndarray, axis: int, border: int) -> np.ndarray:
    """Correlate a C-contiguous float32 2D or 3D array with a 1D kernel along ``axis``.

    OpenCV filters 2D images; an axis of a 3D array is reached by viewing the
    array as 2D (leading or trailing axes folded together) or slice by slice.
    """
    k = np.asarray(kernel, dtype=np.float32)
    one = np.ones(1, np.float32)
    if x.ndim == 2:
        kx, ky = (k, one) if axis == 1 else (one, k)
        return cv2.sepFilter2D(x, cv2.CV_32F, kx, ky, borderType=border)
    shape = x.shape
    if axis == 0:  # (Z, Y*X): filter down the rows
        return _correlate1d(x.reshape(shape[0], -1), kernel, 0, border).reshape(shape)
    if axis == x.ndim - 1:  # (Z*Y, X): filter along the rows
        return _correlate1d(x.reshape(-1, shape[-1]), kernel, 1, border).reshape(shape)
    out = np.empty_like(x)
    for i in range(shape[0]):
        out[i] = _correlate1d(x[i], kernel, axis - 1, border)
    return out


def gaussian(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing as ``skimage.filters.gaussian(image, sigma)`` (mode 'nearest', truncate 4).

    Parameters
    ----------
    image : float32 ndarray, C-contiguous, 2D or 3D
    sigma : float

    Returns
    -------
    smoothed : float32 ndarray of the same shape
    """
    k = gaussian_kernel(sigma)
    if image.ndim == 2:
        ksize = (k.size, k.size)
        return cv2.GaussianBlur(image, ksize, sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REPLICATE)
    out = image
    for axis in range(image.ndim):
        out = _correlate1d(out, k, axis, cv2.BORDER_REPLICATE)
    return out


def sobel(image: np.ndarray) -> np.ndarray:
    """Sobel magnitude as ``skimage.filters.sobel(image)``: ``sqrt(mean_axis(d_axis**2))``.

    Parameters
    ----------
    image : float32 ndarray, C-contiguous, 2D or 3D

    Returns
    -------
    magnitude : float32 ndarray of the same shape
    """
    total = np.zeros(image.shape, np.float32)
    for edge_axis in range(image.ndim):
        d = _correlate1d(image, _SOBEL_DIFF, edge_axis, cv2.BORDER_REFLECT)
        for axis in range(image.ndim):
            if axis != edge_axis:
                d = _correlate1d(d, _SOBEL_SMOOTH, axis, cv2.BORDER_REFLECT)
        total += d * d
    np.sqrt(total, out=total)
    total /= np.sqrt(np.float32(image.ndim))
    return total


def hessian_eigenvalues(smoothed: np.ndarray) -> list:
    """Eigenvalues of the Hessian from ``np.gradient`` of ``np.gradient``, largest first.

    Parameters
    ----------
    smoothed : float32 ndarray, 2D or 3D

    Returns
    -------
    eigenvalues : list of ``ndim`` float32 ndarrays of the input's shape, in
        decreasing order, as ``skimage.feature.hessian_matrix_eigvals`` gives them.
    """
    ndim = smoothed.ndim
    first = [np.gradient(smoothed, axis=a) for a in range(ndim)]
    h = [np.gradient(first[a], axis=b) for a, b in combinations_with_replacement(range(ndim), 2)]
    del first
    if ndim == 2:
        hxx, hxy, hyy = h
        mean = (hxx + hyy) / 2
        root = np.sqrt(hxy**2 + ((hxx - hyy) / 2) ** 2)
        return [mean + root, mean - root]
    matrices = np.empty(smoothed.shape + (ndim, ndim), np.float32)
    for (a, b), elem in zip(combinations_with_replacement(range(ndim), 2), h):
        matrices[..., a, b] = elem
        matrices[..., b, a] = elem
    eig = np.linalg.eigvalsh(matrices)
    return [np.ascontiguousarray(eig[..., i]) for i in range(ndim - 1, -1, -1)]


def forest_fit(X: np.ndarray, y: np.ndarray, forest_params: dict):
    """Train scikit-learn's RandomForestClassifier on ``X`` (n_samples, n_features) float32.

    Returns
    -------
    forest : gpuseg.forest.Forest
    """
    from sklearn.ensemble import RandomForestClassifier

    from .forest import Forest

    clf = RandomForestClassifier(n_jobs=-1, **forest_params)
    clf.fit(X, y)
    return Forest.from_sklearn(clf)


def forest_predict_proba(arrays: dict, X: np.ndarray) -> np.ndarray:
    """Mean class probabilities of a forest for feature-major samples.

    Parameters
    ----------
    arrays : dict
        ``Forest.arrays("cpu")``.
    X : float32 ndarray of shape (n_features, n_samples)

    Returns
    -------
    proba : float32 ndarray of shape (n_samples, n_classes)
    """
    out = np.empty((X.shape[1], arrays["value"].shape[1]), np.float32)
    predict_proba_cpu(X, arrays["roots"], arrays["depth"], arrays["child"], arrays["feature"],
                      arrays["threshold"], arrays["value"], out)
    return out
