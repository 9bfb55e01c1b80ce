import numpy as np
import pytest
from skimage import data
from skimage.feature import multiscale_basic_features

import gpuseg
from gpuseg.features import FeatureParams

# The CPU features are scikit-image's bit for bit (same float64 sums in the same order),
# except 3D Hessian eigenvalues: a closed form where scikit-image calls np.linalg.eigvalsh,
# equal to float64 rounding before the cast to float32.
EIG3D_RTOL, EIG3D_ATOL = 1e-6, 1e-7


def _compare(image, channel_axis=None, **kw):
    ours = gpuseg.multiscale_features(image, backend="cpu", channel_axis=channel_axis, **kw)
    ref = multiscale_basic_features(image, channel_axis=channel_axis, **kw)
    assert ours.dtype == np.float32
    assert ours.shape == ref.shape
    ndim = image.ndim - (channel_axis is not None)
    params = FeatureParams(**{k: v for k, v in kw.items() if k in FeatureParams.__dataclass_fields__})
    eigen = np.zeros(ours.shape[-1], bool)
    if ndim == 3 and params.texture:
        eigen.reshape(-1, params.per_sigma(3))[:, -3:] = True
    np.testing.assert_array_equal(ours[..., ~eigen], ref[..., ~eigen])
    np.testing.assert_allclose(ours[..., eigen], ref[..., eigen], rtol=EIG3D_RTOL, atol=EIG3D_ATOL)
    return ours


@pytest.mark.parametrize("texture", [True, False])
@pytest.mark.parametrize("edges", [True, False])
@pytest.mark.parametrize("intensity", [True, False])
def test_2d_feature_subsets_vs_skimage(intensity, edges, texture):
    if not (intensity or edges or texture):
        with pytest.raises(ValueError, match="At least one"):
            gpuseg.multiscale_features(data.camera(), intensity=False, edges=False, texture=False, backend="cpu")
        return
    image = data.camera()[100:300, 150:400]
    out = _compare(image, intensity=intensity, edges=edges, texture=texture)
    n_sigma = len(FeatureParams().sigmas())
    assert out.shape[-1] == n_sigma * (intensity + edges + 2 * texture)


@pytest.mark.parametrize("num_sigma", [None, 2, 5])
def test_num_sigma_and_range_vs_skimage(num_sigma):
    _compare(data.coins(), sigma_min=1, sigma_max=8, num_sigma=num_sigma)


def test_3d_vs_skimage(rng):
    volume = rng.random((18, 25, 31)).astype(np.float32)
    out = _compare(volume, sigma_max=4)
    assert out.shape == volume.shape + (len(FeatureParams(sigma_max=4).sigmas()) * (1 + 1 + 3),)


@pytest.mark.parametrize("channel_axis", [-1, 0])
def test_rgb_vs_skimage(channel_axis):
    image = data.astronaut()[::4, ::4]
    if channel_axis == 0:
        image = np.moveaxis(image, -1, 0)
    out = _compare(image, sigma_max=8, channel_axis=channel_axis)
    assert out.shape[-1] == 3 * 5 * 4


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float64, bool])
def test_dtypes_scaled_as_skimage(dtype, rng):
    image = (rng.random((40, 50)) * (1 if dtype in (np.float64, bool) else 200)).astype(dtype)
    _compare(image, sigma_max=2)


def test_halo_covers_every_stencil():
    p = FeatureParams(sigma_min=1, sigma_max=16)
    assert p.halo() == int(4 * 16 + 0.5) + 2


@pytest.mark.parametrize(
    "image, kw, match",
    [
        (np.full((20, 20), np.nan), {}, "NaN or infinite"),
        (np.array([[0.0, np.inf, 0], [0, 0, 0], [0, 0, 0]]), {}, "NaN or infinite"),
        (np.zeros((20, 20)), {"channel_axis": 2}, "channel_axis=2 is out of range"),
        (np.zeros((2, 20)), {}, "too small"),
        (np.zeros(20), {}, "2D or 3D"),
        (np.zeros((4, 4, 4, 4, 4)), {}, "2D or 3D"),
        (np.zeros((20, 20)), {"sigma_min": 4, "sigma_max": 2}, "sigma_min <= sigma_max"),
    ],
)
def test_bad_images_are_refused(image, kw, match):
    with pytest.raises(ValueError, match=match):
        gpuseg.multiscale_features(image, backend="cpu", **kw)


def test_non_numeric_image_is_refused():
    with pytest.raises(TypeError, match="real-valued"):
        gpuseg.multiscale_features(np.zeros((10, 10), complex), backend="cpu")


def test_unknown_backend():
    with pytest.raises(ValueError, match="backend must be one of"):
        gpuseg.multiscale_features(np.zeros((10, 10)), backend="tpu")


def test_multiscale_basic_features_is_multiscale_features_with_skimages_signature():
    import inspect

    assert gpuseg.multiscale_basic_features is gpuseg.multiscale_features
    ours = inspect.signature(gpuseg.multiscale_basic_features).parameters
    ref = inspect.signature(multiscale_basic_features).parameters
    assert list(ours)[:len(ref)] == list(ref)  # same order; gpuseg's extras come after, keyword-only
    for name, p in ref.items():
        assert (ours[name].kind, ours[name].default) == (p.kind, p.default), name
    assert all(ours[name].kind is inspect.Parameter.KEYWORD_ONLY for name in list(ours)[len(ref):])


def test_positional_call_and_ignored_workers_as_skimage():
    image = data.camera()[:64, :80]
    ref = multiscale_basic_features(image, True, False, True, 1, 4, 2, 1)
    ours = gpuseg.multiscale_basic_features(image, True, False, True, 1, 4, 2, 1, backend="cpu")
    np.testing.assert_array_equal(ours, ref)
    np.testing.assert_array_equal(gpuseg.multiscale_basic_features(image, sigma_max=4, num_workers=3, backend="cpu"),
                                  multiscale_basic_features(image, sigma_max=4))


@pytest.mark.parametrize("channel_axis", [0, 1, 2, -1, -2])
def test_any_channel_axis_vs_skimage(channel_axis, rng):
    """scikit-image's channel-axis test, with values: five channels anywhere, or the axis taken as spatial."""
    shape = list((10, 12))
    shape.insert(channel_axis % 3, 5)
    image = rng.random(shape)
    out = _compare(image, channel_axis=channel_axis, sigma_min=1, sigma_max=2)
    assert out.shape == np.moveaxis(image, channel_axis, -1).shape[:-1] + (5 * 2 * (1 + 1 + 2),)
    assert _compare(image, sigma_min=1, sigma_max=2).shape == image.shape + (2 * (1 + 1 + 3),)
