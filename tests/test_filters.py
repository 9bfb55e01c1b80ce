"""ilastik's filters (gpuseg.features.FILTERS): the primitives vs SciPy and scikit-image, each
filter vs a reference written from SciPy, the feature count, halos (tiled == whole), spacing."""

from itertools import combinations_with_replacement

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.feature import hessian_matrix_eigvals

import gpuseg
from gpuseg import _cpu
from gpuseg.features import FILTERS, PRESETS, FeatureParams

EIG3D_RTOL, EIG3D_ATOL = 1e-6, 1e-6


def _scipy(image, sigma, order=0):
    return ndi.gaussian_filter(image, sigma, order=order, mode="nearest", truncate=4.0, output=np.float32)


@pytest.mark.parametrize("order", [(0, 0), (1, 0), (0, 1), (2, 0), (1, 1), (0, 2)])
@pytest.mark.parametrize("sigma", [0.3, 1.0, 2.3, 5.0, (0.7, 3.5)])  # radii 1 to 20: taps in fours and the rest
def test_gaussian_derivative_2d_equals_scipy(order, sigma, rng):
    image = rng.random((61, 70), dtype=np.float32)
    np.testing.assert_array_equal(_cpu.gaussian(image, sigma, order), _scipy(image, sigma, order))


@pytest.mark.parametrize("order", [(1, 0, 0), (0, 1, 1), (0, 0, 2), (2, 0, 0)])
def test_gaussian_derivative_3d_anisotropic_equals_scipy(order, rng):
    image = rng.random((13, 30, 41), dtype=np.float32)
    sigma = (0.4, 1.6, 1.6)
    np.testing.assert_array_equal(_cpu.gaussian(image, sigma, order), _scipy(image, sigma, order))


@pytest.mark.parametrize("order", [0, 1, 2])
@pytest.mark.parametrize("sigma", [0.3, 1.6, 10.0])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_filter_pass_within_float32_rounding_of_scipy(order, sigma, axis, rng):
    """The filters' passes sum SciPy's weights in float32: each output within the rounding bound of
    such a sum (taps x eps x the sum of |weight x value|), and not SciPy's float64 bits everywhere."""
    image = rng.standard_normal((9, 90, 95)).astype(np.float32)
    ours = _cpu.gaussian_1d(image, sigma, order, axis)
    ref = ndi.gaussian_filter1d(image.astype(np.float64), sigma, axis=axis, order=order, mode="nearest", truncate=4.0)
    weights = np.abs(_cpu.gaussian_kernel(sigma, order))
    scale = ndi.correlate1d(np.abs(image).astype(np.float64), weights, axis=axis, mode="nearest")
    bound = (weights.size + 2) * np.finfo(np.float32).eps * scale
    assert np.all(np.abs(ours - ref) <= bound)
    assert not np.array_equal(ours, ref.astype(np.float32))


def test_symmetric_eigenvalues_2d_equal_skimage(rng):
    elements = [rng.standard_normal((40, 50)).astype(np.float32) for _ in range(3)]
    ours = _cpu.symmetric_eigenvalues(elements)
    np.testing.assert_array_equal(np.stack(ours), hessian_matrix_eigvals(elements))


def test_symmetric_eigenvalues_3d_vs_eigvalsh(rng):
    a00, a01, a02, a11, a12, a22 = (rng.standard_normal((6, 7, 8)).astype(np.float32) for _ in range(6))
    ours = np.stack(_cpu.symmetric_eigenvalues([a00, a01, a02, a11, a12, a22]))
    m = np.stack([np.stack([a00, a01, a02], -1), np.stack([a01, a11, a12], -1), np.stack([a02, a12, a22], -1)], -1)
    ref = np.moveaxis(np.linalg.eigvalsh(m.astype(np.float64))[..., ::-1], -1, 0)
    np.testing.assert_allclose(ours, ref, rtol=EIG3D_RTOL, atol=EIG3D_ATOL)


def _reference(image, name, sigma, spacing):
    """One filter's features from SciPy alone (float64 eigenvalues), as FILTERS documents them."""
    ndim = image.ndim
    rel = np.asarray(spacing, float) / min(spacing)
    s = tuple(sigma / rel)
    pairs = list(combinations_with_replacement(range(ndim), 2))

    def deriv(*axes):
        order = tuple(axes.count(a) for a in range(ndim))
        return _scipy(image, s, order) * np.float32(1 / np.prod(rel[list(axes)]))

    def eig(elements):
        m = np.zeros(image.shape + (ndim, ndim))
        for (a, b), e in zip(pairs, elements):
            m[..., a, b] = m[..., b, a] = e
        return list(np.moveaxis(np.linalg.eigvalsh(m)[..., ::-1], -1, 0))

    if name == "gaussian":
        return [_scipy(image, s)]
    if name == "laplacian":
        return [sum(deriv(a, a) for a in range(ndim))]
    if name == "gradient_magnitude":
        return [np.sqrt(sum(deriv(a) ** 2 for a in range(ndim)))]
    if name == "dog":
        return [_scipy(image, s) - _scipy(image, tuple(0.66 * x for x in s))]
    if name == "structure_tensor":
        d = [deriv(a) for a in range(ndim)]
        return eig([_scipy(d[a] * d[b], tuple(0.5 * x for x in s)) for a, b in pairs])
    return eig([deriv(a, b) for a, b in pairs])


@pytest.mark.parametrize("name", FILTERS)
@pytest.mark.parametrize("spacing", [(1, 1), (1, 2.5)])
def test_each_filter_2d_vs_scipy(name, spacing, rng):
    image = rng.random((45, 52), dtype=np.float32)
    ours = gpuseg.multiscale_features(image, intensity=False, edges=False, texture=False,
                                      filters={name: (0.7, 2.0)}, spacing=spacing, backend="cpu")
    ref = np.stack(_reference(image, name, 0.7, spacing) + _reference(image, name, 2.0, spacing), -1)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)  # float32 passes (see the next test)


@pytest.mark.parametrize("name", ["laplacian", "structure_tensor", "hessian_of_gaussian"])
def test_each_filter_3d_anisotropic_vs_scipy(name, rng):
    image = rng.random((11, 24, 27), dtype=np.float32)
    ours = gpuseg.multiscale_features(image, intensity=False, edges=False, texture=False,
                                      filters={name: (1.6,)}, spacing=(3, 1, 1), backend="cpu")
    np.testing.assert_allclose(ours, np.stack(_reference(image, name, 1.6, (3, 1, 1)), -1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("ndim", [2, 3])
def test_feature_count_formula(ndim):
    p = FeatureParams(sigma_max=4, filters={"gaussian": (1,), "dog": (1, 2), "structure_tensor": (1, 2, 3)})
    image = np.random.default_rng(0).random((12,) * ndim, dtype=np.float32)
    out = gpuseg.multiscale_features(image, **p.to_dict(), backend="cpu")
    skimage_part = len(p.sigmas()) * (1 + 1 + ndim)
    assert out.shape[-1] == p.n_features(ndim) == skimage_part + 1 + 2 + 3 * ndim


def test_params_are_canonical_and_round_trip():
    p = FeatureParams(filters={"hessian_of_gaussian": [2, 1, 2], "gaussian": 0.3}, spacing=[4, 1, 1])
    assert p.filters == (("gaussian", (0.3,)), ("hessian_of_gaussian", (1.0, 2.0)))
    assert p.spacing == (4.0, 1.0, 1.0)
    assert FeatureParams.from_dict(p.to_dict()) == p
    old = {k: v for k, v in FeatureParams().to_dict().items() if k not in ("filters", "spacing")}
    assert FeatureParams.from_dict(old) == FeatureParams()  # an older model file's features
    assert PRESETS["skimage"] == FeatureParams()


@pytest.mark.parametrize("kw, match", [({"filters": {"sobel": (1,)}}, "Unknown filter"),
                                       ({"filters": {"dog": (0,)}}, "positive"),
                                       ({"spacing": (1, -1)}, "spacing"),
                                       ({"intensity": False, "edges": False, "texture": False}, "At least one")])
def test_bad_params_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        FeatureParams(**kw)


def test_halo_of_each_filter():
    assert FeatureParams(intensity=False, edges=False, texture=False, filters={"dog": (2.5,)}).halo() == 10
    assert FeatureParams(intensity=False, edges=False, texture=False,
                         filters={"structure_tensor": (2.5,)}).halo() == 10 + 5
    assert FeatureParams(sigma_max=2, filters={"gaussian": (10,)}).halo() == 40


@pytest.mark.parametrize("shape, spacing", [((70, 83), None), ((14, 40, 45), (4, 1, 1))])
def test_ilastik_features_tiled_equal_whole(shape, spacing, rng):
    """A crop read with the halo equals the same region of the whole image's features, bit for bit."""
    params = FeatureParams(intensity=True, edges=False, texture=True, sigma_max=2, spacing=spacing,
                           filters={name: (0.7, 2.0) for name in FILTERS})
    image = rng.random(shape, dtype=np.float32)
    whole = gpuseg.multiscale_features(image, **params.to_dict(), backend="cpu")
    halo = params.halo()
    core = tuple(slice(n // 3, n // 3 + n // 4) for n in shape)
    read = tuple(slice(max(0, c.start - halo), c.stop + halo) for c in core)
    tile = gpuseg.multiscale_features(image[read], **params.to_dict(), backend="cpu")
    crop = tuple(slice(c.start - r.start, c.stop - r.start) for c, r in zip(core, read))
    np.testing.assert_array_equal(tile[crop], whole[core])


def test_spacing_smooths_isotropically_in_space(rng):
    image = rng.random((10, 30, 30), dtype=np.float32)
    out = gpuseg.multiscale_features(image, sigma_min=2, sigma_max=2, edges=False, texture=False,
                                     spacing=(4, 1, 1), backend="cpu")
    np.testing.assert_array_equal(out[..., 0], _scipy(image, (0.5, 2, 2)))


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("ndim", [2, 3])
def test_feature_names_cover_the_filters(preset, ndim):
    params = PRESETS[preset]
    names = params.names(ndim, n_channels=2)
    assert len(names) == len(set(names)) == params.n_features(ndim, 2)
    if preset == "compact":
        assert names[:2 + ndim] == ["ch0 σ=0.7 gaussian", "ch0 σ=0.7 laplacian", "ch0 σ=0.7 gradient-magnitude",
                                    "ch0 σ=0.7 dog", "ch0 σ=0.7 structure-eig-1", "ch0 σ=0.7 structure-eig-2",
                                    "ch0 σ=0.7 structure-eig-3"][:2 + ndim]
        assert names[-1] == f"ch1 σ=10.0 hessian-of-gaussian-eig-{ndim}"


@pytest.mark.parametrize("shape", [(37, 41), (5, 37, 41)])
def test_assign_copies_crops_exactly(shape):
    """The backend's assign (feature rows from a block's crop): strided, contiguous and 1D sources."""
    from gpuseg import _cpu

    block = np.random.default_rng(0).random(tuple(s + 6 for s in shape), dtype=np.float32)
    crop = block[tuple(slice(3, 3 + s) for s in shape)]
    for source in (crop, np.ascontiguousarray(crop)):
        out = np.zeros(int(np.prod(shape)), np.float32)
        _cpu.assign(out.reshape(shape), source)
        np.testing.assert_array_equal(out.reshape(shape), crop)
    points = block[(np.array([0, 2]),) * block.ndim]
    out = np.zeros(2, np.float32)
    _cpu.assign(out, points)
    np.testing.assert_array_equal(out, points)


def _boxes(shape):
    """Boxes a tile's core can be: all, an interior one, ones touching each border, one row or plane thick."""
    return [None, tuple(slice(None) for _ in shape), tuple(slice(2, n - 3) for n in shape),
            tuple(slice(0, 3) for _ in shape), tuple(slice(n - 2, n) for n in shape),
            (slice(4, 5),) + tuple(slice(1, None) for _ in shape[1:])]


@pytest.mark.parametrize("shape", [(23, 29), (9, 11, 13)])
def test_derivative_filters_of_a_box_equal_the_whole_images(shape, rng):
    """Sobel and Hessian eigenvalues of a region, new or into given (strided) arrays, equal the whole image's there,
    bit for bit: the borders stay the image's."""
    g = rng.random(shape, dtype=np.float32)
    whole_sobel, whole_eig = _cpu.sobel(g), _cpu.hessian_eigenvalues(g)
    for region in _boxes(shape):
        crop = ... if region is None else region
        np.testing.assert_array_equal(_cpu.sobel(g, region), whole_sobel[crop])
        for got, want in zip(_cpu.hessian_eigenvalues(g, region), whole_eig):
            np.testing.assert_array_equal(got, want[crop])
        size = whole_sobel[crop].shape
        slots = np.full((len(shape) + 1,) + size + (2,), np.nan, np.float32)[..., 0]  # strided slots
        edges = slots[0]
        assert _cpu.sobel(g, region, edges) is edges
        _cpu.hessian_eigenvalues(g, region, list(slots[1:]))
        np.testing.assert_array_equal(slots[0], whole_sobel[crop])
        for got, want in zip(slots[1:], whole_eig):
            np.testing.assert_array_equal(got, want[crop])


@pytest.mark.parametrize("region, out, match", [
    ((slice(0, 5),), None, "one slice per axis"),
    ((slice(0, 5), 3), None, "one slice per axis"),
    ((slice(0, 5, 2), slice(None)), None, "step 1"),
    ((slice(5, 5), slice(None)), None, "non-empty"),
    ((slice(0, 5), slice(None)), np.zeros((5, 3), np.float32), r"shape \(5, 12\)"),
])
def test_bad_regions_and_outputs_are_refused(region, out, match):
    g = np.zeros((10, 12), np.float32)
    with pytest.raises(ValueError, match=match):
        _cpu.sobel(g, region, out)
    with pytest.raises(ValueError, match=match):
        _cpu.hessian_eigenvalues(g, region, None if out is None else [out, out])


def test_store_crops_whole_results_as_the_cpu_kernels_compute_boxes(rng):
    """The GPU backend's path (whole-image results cropped into ``out``), on NumPy arrays."""
    from gpuseg._region import store

    g = rng.random((15, 17), dtype=np.float32)
    region = (slice(3, 12), slice(0, 9))
    eig = _cpu.hessian_eigenvalues(g)
    out = [np.empty((9, 9), np.float32), np.empty((9, 9), np.float32)]
    assert all(got is given for got, given in zip(store(eig, region, out), out))  # out's arrays, filled
    for got, want in zip(out, _cpu.hessian_eigenvalues(g, region)):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(store([_cpu.sobel(g)], region, None)[0], _cpu.sobel(g, region))
    with pytest.raises(ValueError, match="step 1"):
        store(eig, (slice(0, 9, 3), slice(None)), None)
