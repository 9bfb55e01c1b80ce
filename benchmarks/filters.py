"""Per-primitive timings of gpuseg's CPU filters against OpenCV, SciPy and NumPy.

Run ``python -m benchmarks.filters [--sizes 2048 4096] [--repeats 5]``. For each
square float32 image size it prints the best wall time (ms) of:

* ``gaussian(sigma)`` for scikit-image's default sigmas 0.5 .. 16: gpuseg's
  Numba kernels, ``cv2.GaussianBlur`` (same kernel size, BORDER_REPLICATE) and
  ``scipy.ndimage.gaussian_filter`` (mode 'nearest', truncate 4, what
  scikit-image calls);
* ``sobel``: gpuseg's fused kernel, OpenCV (two ``cv2.Sepfilter2D`` passes with
  scikit-image's weights, BORDER_REFLECT, then the magnitude) and
  ``skimage.filters.sobel`` (SciPy);
* ``gaussian(sigma, order)``, Gaussian derivatives in SciPy's float64 sums
  (first along axis 0, second along axis 1, sigma 1.6): gpuseg's Numba passes,
  ``cv2.sepFilter2D`` with SciPy's derivative kernels and
  ``scipy.ndimage.gaussian_filter(..., order=...)``;
* one pass of ilastik's filters along each axis at sigma 1.6 and 10
  (``pass f32``: gpuseg's ``gaussian_1d``, summed in float32) beside the same
  pass in SciPy's float64 sums (``pass f64``, gpuseg's kernel given float64
  weights), ``cv2.sepFilter2D`` with a one-tap kernel along the other axis and
  ``scipy.ndimage.gaussian_filter1d``;
* ``symmetric_eigenvalues`` of three structure-tensor-like elements: gpuseg's
  kernel and scikit-image's ``hessian_matrix_eigvals`` (NumPy);
* ``hessian_eigenvalues`` of a smoothed image: gpuseg's fused kernel and the
  NumPy formulation scikit-image uses (``np.gradient`` twice, then the
  closed-form 2D eigenvalues);
* ``forest_predict_proba`` and ``forest_predict_labels``: gpuseg's forest
  kernel (for labels it stops walking a pixel once its class is sure) and
  scikit-learn's ``predict_proba`` and ``predict`` on the same 50 depth-10
  trees (trained on 24 features of the image's pixels), for every pixel of the
  image (the "NumPy" column holds scikit-learn's time);
* ``forest_fit``: gpuseg's ``_cpu.forest_fit`` (each tree grown from the rows
  its bootstrap drew, by :mod:`gpuseg._cpu_tree`'s replica of scikit-learn's
  tree builder) and scikit-learn's stock forest, the benchmark's 50
  depth-10 trees with ``max_samples=0.05`` on :data:`FIT_ROWS` of the pixels'
  24 features (the same trees; the "NumPy" column holds scikit-learn's time);
* ``tile box``: the feature matrix of one tile (a quarter of the image's rows,
  scikit-image's 24 features) as prediction computes it, the Sobel and Hessian
  kernels writing the tile's core straight into the matrix, beside ``tile
  whole``: every feature image computed on the whole block (core and halo)
  and its core copied into the matrix, as gpuseg did before commit 5c3223c.

gpuseg's values equal SciPy's (scikit-image's) bit for bit but for ``pass f32``
(float32 rounding); OpenCV's differ in
the last bits and are only a speed reference. Threads:
Numba and OpenCV use all cores, SciPy and NumPy one.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

SIGMAS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
FIT_ROWS = 256_000


def _best(fn, repeats: int) -> float:
    fn()  # warm-up (JIT, page faults of a first allocation)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def _numpy_hessian(g):
    gr = np.gradient(g)
    hxx = np.gradient(gr[0], axis=0)
    hxy = np.gradient(gr[0], axis=1)
    hyy = np.gradient(gr[1], axis=1)
    mean = (hxx + hyy) / 2
    root = np.sqrt(hxy**2 + ((hxx - hyy) / 2) ** 2)
    return mean + root, mean - root


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    import cv2
    import numba
    from scipy import ndimage as ndi
    from skimage import filters
    from skimage.feature import hessian_matrix_eigvals

    from gpuseg import _cpu
    from gpuseg._cpu_filters import NEAREST, correlate_symmetric

    print(f"CPU threads: numba {numba.get_num_threads()}, OpenCV {cv2.getNumThreads()}, "
          f"os.cpu_count {os.cpu_count()}; best of {args.repeats}, wall ms")
    smooth = np.array([0.25, 0.5, 0.25], np.float32)
    diff = np.array([-1.0, 0.0, 1.0], np.float32)

    def cv2_sobel(img):
        gx = cv2.sepFilter2D(img, -1, diff, smooth, borderType=cv2.BORDER_REFLECT)
        gy = cv2.sepFilter2D(img, -1, smooth, diff, borderType=cv2.BORDER_REFLECT)
        return cv2.magnitude(gx, gy) / np.float32(np.sqrt(2))

    for n in args.sizes:
        img = np.random.default_rng(0).random((n, n), dtype=np.float32)
        print(f"\n{n}x{n} float32{'':6s}{'gpuseg':>9s}{'OpenCV':>9s}{'SciPy':>9s}{'NumPy':>9s}")
        for sigma in SIGMAS:
            r = int(4 * sigma + 0.5)
            ours = _best(lambda: _cpu.gaussian(img, sigma), args.repeats)
            ocv = _best(lambda: cv2.GaussianBlur(img, (2 * r + 1, 2 * r + 1), sigma,
                                                 borderType=cv2.BORDER_REPLICATE), args.repeats)
            sp = _best(lambda: ndi.gaussian_filter(img, sigma, mode="nearest", truncate=4.0), args.repeats)
            print(f"gaussian sigma={sigma:<5g}{ours:9.1f}{ocv:9.1f}{sp:9.1f}{'':>9s}")
        for order in ((1, 0), (0, 2)):
            ky, kx = (_cpu.gaussian_kernel(1.6, o)[::-1].astype(np.float32) for o in order)
            ours = _best(lambda: _cpu.gaussian(img, 1.6, order), args.repeats)
            ocv = _best(lambda: cv2.sepFilter2D(img, -1, kx, ky, borderType=cv2.BORDER_REPLICATE), args.repeats)
            sp = _best(lambda: ndi.gaussian_filter(img, 1.6, order=order, mode="nearest", truncate=4.0,
                                                   output=np.float32), args.repeats)
            print(f"{'gaussian order=' + ''.join(map(str, order)):20s}{ours:9.1f}{ocv:9.1f}{sp:9.1f}{'':>9s}")
        for sigma in (1.6, 10.0):
            half = _cpu.gaussian_kernel(sigma)[int(4 * sigma + 0.5):]
            one, full = np.ones(1, np.float32), _cpu.gaussian_kernel(sigma).astype(np.float32)
            for axis in (0, 1):
                f32 = _best(lambda: _cpu.gaussian_1d(img, sigma, 0, axis), args.repeats)
                f64 = _best(lambda: correlate_symmetric(img, half, axis, NEAREST), args.repeats)
                kx, ky = (one, full) if axis == 0 else (full, one)
                ocv = _best(lambda: cv2.sepFilter2D(img, -1, kx, ky, borderType=cv2.BORDER_REPLICATE), args.repeats)
                sp = _best(lambda: ndi.gaussian_filter1d(img, sigma, axis=axis, mode="nearest", truncate=4.0),
                           args.repeats)
                print(f"{f'pass f32 s={sigma:g} ax{axis}':20s}{f32:9.1f}{ocv:9.1f}{sp:9.1f}{'':>9s}")
                print(f"{f'pass f64 s={sigma:g} ax{axis}':20s}{f64:9.1f}{'':>9s}{'':>9s}{'':>9s}")
        g = _cpu.gaussian(img, 1.0)
        elements = [g, _cpu.gaussian(img, 2.0), g * g]
        ours = _best(lambda: _cpu.symmetric_eigenvalues(elements), args.repeats)
        npy = _best(lambda: hessian_matrix_eigvals(elements), args.repeats)
        print(f"{'symmetric_eigenvalues':20s}{ours:9.1f}{'':>9s}{'':>9s}{npy:9.1f}")
        ours = _best(lambda: _cpu.sobel(g), args.repeats)
        ocv = _best(lambda: cv2_sobel(g), args.repeats)
        sp = _best(lambda: filters.sobel(g), args.repeats)
        print(f"{'sobel':20s}{ours:9.1f}{ocv:9.1f}{sp:9.1f}{'':>9s}")
        ours = _best(lambda: _cpu.hessian_eigenvalues(g), args.repeats)
        npy = _best(lambda: _numpy_hessian(g), args.repeats)
        print(f"{'hessian_eigenvalues':20s}{ours:9.1f}{'':>9s}{'':>9s}{npy:9.1f}")
        for kind, ours, skl in _forest_times(n, args.repeats):
            print(f"{'forest_' + kind:20s}{ours:9.1f}{'':>9s}{'':>9s}{skl:9.1f}")
        for kind, ours in zip(("box", "whole"), _tile_feature_times(img, args.repeats)):
            print(f"{'tile ' + kind:20s}{ours:9.1f}{'':>9s}{'':>9s}{'':>9s}")


def _forest_times(n: int, repeats: int) -> list:
    """``(kind, ms of gpuseg, ms of scikit-learn)`` on n*n samples, for ``predict_proba`` and
    ``predict_labels`` (scikit-learn's ``predict``), and for ``fit`` on the benchmark's forest."""
    from sklearn.ensemble import RandomForestClassifier

    from gpuseg import _cpu
    from gpuseg.forest import Forest

    from .floor import trained_classifier

    X = np.random.default_rng(0).random((n * n, 24), dtype=np.float32)
    clf = trained_classifier(X)
    arrays = Forest.from_sklearn(clf).arrays(_cpu)
    Xt = np.ascontiguousarray(X.T)
    rows = X[:FIT_ROWS]  # as many as the standard benchmark scribbles at 4096x4096
    y = clf.predict(rows)
    forest = {"n_estimators": 50, "max_depth": 10, "max_samples": 0.05, "random_state": 0}
    return [("predict_proba", _best(lambda: _cpu.forest_predict_proba(arrays, Xt), repeats),
             _best(lambda: clf.predict_proba(X), repeats)),
            ("predict_labels", _best(lambda: _cpu.forest_predict_labels(arrays, Xt), repeats),
             _best(lambda: clf.predict(X), repeats)),
            ("fit", _best(lambda: _cpu.forest_fit(rows, y, forest, 3), repeats),
             _best(lambda: RandomForestClassifier(n_jobs=-1, **forest).fit(rows, y), repeats))]


def _tile_feature_times(img: np.ndarray, repeats: int) -> tuple:
    """ms of one tile's feature matrix by the box path (``feature_matrix``) and by whole-block images
    cropped into the same matrix (the path before 5c3223c)."""
    from gpuseg import _cpu
    from gpuseg.features import PRESETS, iter_features
    from gpuseg.predictor import TileFeatures
    from gpuseg.tiling import iter_tiles

    rows = TileFeatures(PRESETS["skimage"], None, _cpu)
    tile = iter_tiles(img.shape, (img.shape[0] // 4, img.shape[1]), rows.halo)[1]
    block = rows.read_block(img, tile)
    X = rows.feature_matrix(block, tile.crop, tile.shape)  # the buffer, written once before timing

    def whole_then_crop():
        for i, f in enumerate(iter_features(block, rows.params, _cpu)):
            _cpu.assign(X[i].reshape(tile.shape), f[tile.crop])

    return (_best(lambda: rows.feature_matrix(block, tile.crop, tile.shape), repeats),
            _best(whole_then_crop, repeats))


if __name__ == "__main__":
    main()
