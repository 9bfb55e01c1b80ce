"""Segmenter as a scikit-learn estimator: parameters, clone, repr, and the feature-level path complete."""

import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.base import clone

import gpuseg
from gpuseg import Segmenter


@pytest.fixture(scope="module")
def features(mosaic):
    """Features of the mosaic (sigma up to 4: 16 per pixel) and the labelled rows."""
    image, _, scribbles = mosaic
    stack = gpuseg.multiscale_features(image, sigma_max=4, backend="cpu")
    mask = scribbles > 0
    return stack, stack[mask], scribbles[mask]


def test_get_params_set_params_and_clone():
    seg = Segmenter(backend="cpu", sigma_max=4, n_estimators=7, class_weight={1: 2.0})
    params = seg.get_params()
    assert params["sigma_max"] == 4 and params["n_estimators"] == 7 and params["max_depth"] == 10
    assert seg.forest_params["n_estimators"] == 7 and set(seg.forest_params) == set(gpuseg.segmenter.FOREST_DEFAULTS)
    twin = clone(seg)
    assert twin is not seg and twin.get_params() == params and not hasattr(twin, "forest_")
    assert seg.set_params(max_depth=3, edges=False) is seg and seg.forest_params["max_depth"] == 3
    assert not seg.feature_params.edges


def test_clone_of_a_fitted_model_is_unfitted(small_model, mosaic):
    twin = clone(small_model)
    assert not hasattr(twin, "forest_")
    image, _, scribbles = mosaic
    np.testing.assert_array_equal(twin.fit(image, scribbles).predict(image), small_model.predict(image))


def test_repr_shows_parameters_that_differ_from_the_defaults():
    text = repr(Segmenter(backend="cpu", sigma_max=4, texture=False, n_estimators=7))
    assert text.startswith("Segmenter(") and "sigma_max=4" in text and "texture=False" in text
    assert "n_estimators=7" in text and "backend='cpu'" in text
    assert "sigma_min" not in text and "max_depth" not in text


def test_predict_features_gives_labels_in_label_dtype(small_model, features):
    stack = features[0]
    labels = small_model.predict_features(stack)
    assert labels.dtype == small_model.label_dtype and labels.shape == stack.shape[:-1]
    np.testing.assert_array_equal(labels, small_model.classes_[small_model.predict_proba_features(stack).argmax(-1)])
    np.testing.assert_array_equal(small_model.predict_features(stack[5:9, 7]), labels[5:9, 7])  # any leading shape


def test_fit_features_then_predict_an_image_and_save(mosaic, features, tmp_path):
    image, _, scribbles = mosaic
    _, X, y = features
    seg = Segmenter(backend="cpu", sigma_max=4, n_estimators=5, random_state=0).fit_features(
        X, y, n_pixels=scribbles.size)  # draws per tree as fit's on this image
    assert (seg.ndim_, seg.n_channels_, seg.n_features_in_) == (2, 1, 16)  # the one geometry of 16 features
    whole = Segmenter(backend="cpu", sigma_max=4, n_estimators=5, random_state=0).fit(image, scribbles)
    np.testing.assert_array_equal(seg.predict(image), whole.predict(image))
    again = gpuseg.load(seg.save(tmp_path / "m.gpuseg"), backend="cpu")
    np.testing.assert_array_equal(again.predict(image), seg.predict(image))


def test_fit_features_refuses_clearly_what_it_cannot_tell(features, rng):
    _, X, y = features
    with pytest.raises(ValueError, match="16 features; 3D images with 1 channel"):
        Segmenter(backend="cpu", sigma_max=4).fit_features(X, y, ndim=3)
    other = Segmenter(backend="cpu", sigma_max=4, n_estimators=2).fit_features(X[:, :15], y)  # other features
    assert not hasattr(other, "ndim_") and other.predict_features(X[:3, :15]).shape == (3,)
    with pytest.raises(RuntimeError, match="do not tell"):
        other.predict(rng.random((20, 20)))
    # without texture a pixel has 2 features per sigma in 2D and 3D: the geometry cannot be told
    flat = Segmenter(backend="cpu", sigma_max=4, texture=False, channel_axis=-1, n_estimators=3)
    flat.fit_features(X[:, :24 // 3], y)
    assert not hasattr(flat, "ndim_") and flat.predict_features(X[:5, :8]).shape == (5,)
    with pytest.raises(RuntimeError, match="ndim= and n_channels="):
        flat.predict(rng.random((20, 20, 1)))
    with pytest.raises(RuntimeError, match="ndim= and n_channels="):
        flat.save("never.gpuseg")
    flat.fit_features(X[:, :8], y, ndim=2, n_channels=1)
    assert flat.predict(rng.random((20, 20, 1))).shape == (20, 20)


def test_refit_with_another_feature_width_resets(features, mosaic):
    image, _, scribbles = mosaic
    _, X, y = features
    seg = Segmenter(backend="cpu", sigma_max=4, n_estimators=3, random_state=0).fit_features(X, y)
    seg.set_params(sigma_max=2).fit_features(X[:, :12], y)
    assert seg.n_features_in_ == 12 and seg.forest_.n_features == 12 and seg.ndim_ == 2
    assert seg.fit(image, scribbles).n_features_in_ == 12


def test_rgb_without_channel_axis_warns(rng):
    rgb = rng.random((32, 40, 3)).astype(np.float32)
    with pytest.warns(UserWarning, match="channel_axis=-1"):
        gpuseg.multiscale_features(rgb, sigma_max=1, backend="cpu")
    labels = np.zeros((32, 40, 3), np.uint8)
    labels[2:5, 2:10] = 1
    labels[-5:-2, -10:-2] = 2
    with pytest.warns(UserWarning, match="channel_axis=-1"):
        seg = Segmenter(backend="cpu", sigma_max=1, n_estimators=2).fit(rgb, labels)
    with pytest.warns(UserWarning, match="channel_axis=-1"):
        seg.predict(rgb)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Segmenter(backend="cpu", sigma_max=1, n_estimators=2, channel_axis=-1).fit(rgb, labels[..., 0]).predict(rgb)
        gpuseg.multiscale_features(rng.random((8, 30, 30)), sigma_max=1, backend="cpu")  # a stack, not RGB


def test_host_input_gives_a_host_output_copied_back_tile_by_tile(small_model, mosaic):
    """Each tile's result comes back as a host array; the output is allocated on the host."""
    from gpuseg.predictor import Predictor

    image = mosaic[0]
    predictor = small_model.predictor()
    results = list(predictor.classify_tiles(image, predictor.plan(image, (64, 96)).tiles, "labels"))
    assert len(results) == 3 * 2 and all(type(r) is np.ndarray for _, r in results)
    out = np.empty(image.shape, small_model.label_dtype)
    for tile, result in results:
        out[tile.write] = result
    np.testing.assert_array_equal(out, small_model.predict(image))
    assert isinstance(predictor, Predictor)


def test_forest_and_classes_go_to_the_device_once_per_predict(small_model, mosaic):
    from gpuseg import _cpu
    from gpuseg.predictor import Predictor

    image, copied = mosaic[0], []

    def asarray(x):
        copied.append(x)
        return _cpu.asarray(x)

    stub = SimpleNamespace(**{**{n: getattr(_cpu, n) for n in _cpu.__all__}, "asarray": asarray})
    predictor = Predictor(small_model, stub)
    tiles = predictor.plan(image, (64, 96)).tiles
    assert len([r for _, r in predictor.classify_tiles(image, tiles, "labels")]) == 6
    assert sum(x is small_model.forest_.child for x in copied) == 1  # the forest: once, not per tile
    assert sum(getattr(x, "shape", None) == (3,) for x in copied) == 1  # the class table: once
    assert sum(getattr(x, "shape", None) == (64 + 18, 96 + 18) for x in copied) >= 1  # blocks: per tile


def test_no_kernel_launch_on_an_empty_stack(small_model):
    from gpuseg import _cpu
    from gpuseg.predictor import Predictor

    def refuse(arrays, X):
        raise AssertionError("the forest kernel was launched on no pixels")

    stub = SimpleNamespace(**{**{n: getattr(_cpu, n) for n in _cpu.__all__}, "forest_predict_proba": refuse,
                              "forest_predict_labels": refuse})
    proba = Predictor(small_model, stub).classify_features(np.empty((0, 16), np.float32), "proba")
    assert proba.shape == (0, 3)
    assert small_model.predict_features(np.empty((4, 0, 16), np.float32)).shape == (4, 0)
