import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from skimage.feature import multiscale_basic_features
from skimage.future import fit_segmenter, predict_segmenter

import gpuseg
from gpuseg import Segmenter
from gpuseg.features import FeatureParams
from gpuseg._backend import gpu_unavailable_reason


def test_fit_returns_self_and_learns_attributes(mosaic):
    image, _, scribbles = mosaic
    seg = Segmenter(backend="cpu", sigma_max=4, n_estimators=5, random_state=0)
    assert seg.fit(image, scribbles) is seg
    np.testing.assert_array_equal(seg.classes_, [1, 2, 3])
    assert seg.n_features_in_ == 4 * 4  # sigmas 0.5, 1, 2, 4 x (intensity, edges, 2 eigenvalues)
    assert (seg.ndim_, seg.n_channels_) == (2, 1)


def test_predict_and_proba(small_model, mosaic):
    image, truth, _ = mosaic
    labels = small_model.predict(image)
    proba = small_model.predict_proba(image)
    assert labels.shape == image.shape and labels.dtype == np.uint8
    assert proba.shape == image.shape + (3,) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(-1), 1, atol=1e-5)
    np.testing.assert_array_equal(small_model.classes_[proba.argmax(-1)], labels)
    assert np.mean(labels == truth) > 0.6  # three textures, a few strokes each


def test_class_values_are_kept(mosaic):
    image, _, scribbles = mosaic
    relabelled = np.choose(scribbles, [0, 7, 300, 42])
    seg = Segmenter(backend="cpu", sigma_max=2, n_estimators=5, random_state=0).fit(image, relabelled)
    np.testing.assert_array_equal(seg.classes_, [7, 42, 300])
    out = seg.predict(image)
    assert set(np.unique(out)) <= {7, 42, 300} and out.dtype == np.uint16


def test_same_labels_as_skimage_future_with_same_forest(mosaic):
    """The accuracy case: gpuseg with the reference's parameters vs skimage.future + scikit-learn."""
    image, truth, scribbles = mosaic
    forest = dict(n_estimators=50, max_depth=10, max_samples=0.05, random_state=0)
    ours = Segmenter(backend="cpu", preset="skimage", **forest).fit(image, scribbles).predict(image)
    features = multiscale_basic_features(image)
    clf = fit_segmenter(scribbles, features, RandomForestClassifier(n_jobs=-1, **forest))
    ref = predict_segmenter(features, clf)
    # The features are scikit-image's bit for bit, so the forests are the same; only float32
    # (ours) against float64 (scikit-learn) averaging of the trees' votes could split a near-tie.
    agreement = np.mean(ours == ref)
    assert agreement >= 0.9999, agreement
    assert np.mean(ours == truth) > 0.6


def test_3d_and_multichannel(rng):
    vol = rng.random((12, 30, 30)).astype(np.float32)
    vol[:, :, 15:] += 1.0
    lab = np.zeros(vol.shape, np.uint8)
    lab[:, 5:25, 2:6] = 1
    lab[:, 5:25, 24:28] = 2
    seg = Segmenter(backend="cpu", sigma_max=2, n_estimators=5, random_state=0).fit(vol, lab)
    out = seg.predict(vol)
    assert out.shape == vol.shape and np.mean(out[:, :, :12] == 1) > 0.9 and np.mean(out[:, :, 18:] == 2) > 0.9

    rgb = np.stack([vol[0], vol[0] * 0.5, 1 - vol[0]], axis=0)
    seg = Segmenter(backend="cpu", sigma_max=2, n_estimators=5, channel_axis=0, random_state=0)
    seg.fit(rgb, lab[0])
    assert seg.n_channels_ == 3 and seg.predict(rgb).shape == (30, 30)


def test_series_trains_one_model(mosaic):
    image, _, scribbles = mosaic
    a = scribbles.copy()
    a[a == 3] = 0
    b = scribbles.copy()
    b[b == 1] = 0
    seg = Segmenter(backend="cpu", sigma_max=2, n_estimators=5, random_state=0).fit([image, image[::-1]], [a, b[::-1]])
    np.testing.assert_array_equal(seg.classes_, [1, 2, 3])


def test_fit_tiled_equals_fit_whole(mosaic):
    image, _, scribbles = mosaic
    kw = dict(backend="cpu", sigma_max=4, n_estimators=5, random_state=0)
    whole = Segmenter(**kw).fit(image, scribbles, tile_shape=image.shape)
    tiled = Segmenter(**kw).fit(image, scribbles, tile_shape=(50, 70))
    np.testing.assert_array_equal(whole.forest_.threshold, tiled.forest_.threshold)


@pytest.mark.parametrize(
    "labels, error, match",
    [
        (np.zeros((10, 10), int), ValueError, "labels have shape"),
        (np.zeros((192, 192), int), ValueError, "No labelled pixel"),
        (np.ones((192, 192), int), ValueError, "Only one class"),
        (np.full((192, 192), -1), ValueError, ">= 0"),
        (np.full((192, 192), 1.5), ValueError, "whole numbers"),
    ],
)
def test_bad_labels(mosaic, labels, error, match):
    with pytest.raises(error, match=match):
        Segmenter(backend="cpu", sigma_max=2, n_estimators=2).fit(mosaic[0], labels)


def test_predict_on_other_geometry_is_refused(small_model, rng):
    with pytest.raises(ValueError, match="trained on 2D images; this image is 3D"):
        small_model.predict(rng.random((40, 40, 3)))
    seg3 = Segmenter(backend="cpu", sigma_max=2, n_estimators=2, channel_axis=-1)
    seg3.fit(rng.random((20, 20, 3)), np.tile([[1, 2]], (20, 10)))
    with pytest.raises(ValueError, match="3 channel"):
        seg3.predict(rng.random((20, 20, 2)))


def test_nan_and_unfitted(small_model):
    with pytest.raises(ValueError, match="NaN"):
        small_model.predict(np.full((20, 20), np.nan))
    with pytest.raises(RuntimeError, match="not trained"):
        Segmenter().predict(np.zeros((20, 20)))


def test_unknown_forest_parameter():
    with pytest.raises(TypeError, match="Unknown forest parameter"):
        Segmenter(n_trees=3)


def test_gpu_backend_refused_with_install_hint_when_unavailable():
    if gpu_unavailable_reason() is None:
        pytest.skip("a GPU is available here: the refusal cannot be observed")
    with pytest.raises(RuntimeError, match=r"pip install 'gpuseg\[gpu\]'"):
        Segmenter(backend="gpu").fit(np.zeros((20, 20)), np.zeros((20, 20), int))


def test_features_api_matches_segmenter(small_model, mosaic):
    image = mosaic[0]
    feats = gpuseg.multiscale_features(image, sigma_max=4, backend="cpu")
    np.testing.assert_allclose(small_model.predict_proba_features(feats), small_model.predict_proba(image), atol=1e-6)


@pytest.mark.parametrize("minimum, per_draw, expected_draws", [(50, 10**9, 50), (10, 192 * 192 // 64, 64),
                                                               (10**9, 1, None)])
def test_auto_max_samples_draws_in_proportion_to_the_image(mosaic, monkeypatch, minimum, per_draw, expected_draws):
    """``max_samples="auto"``: one draw per PIXELS_PER_DRAW image pixels, at least MIN_TREE_SAMPLES, at most
    TREE_SAMPLES; every scribbled pixel when there are fewer; TREE_SAMPLES for fit_features."""
    from gpuseg import _cpu, training

    seen = {}
    fit = _cpu.forest_fit

    def spy(X, y, params, n_classes):
        seen.update(params, n=y.size)
        return fit(X, y, params, n_classes)

    monkeypatch.setattr(training, "MIN_TREE_SAMPLES", minimum)
    monkeypatch.setattr(training, "PIXELS_PER_DRAW", per_draw)
    monkeypatch.setattr(training, "TREE_SAMPLES", 10**6 if expected_draws is None else 1000)
    monkeypatch.setattr(_cpu, "forest_fit", spy)
    image, _, scribbles = mosaic
    seg = Segmenter(backend="cpu", sigma_max=2, n_estimators=3, random_state=0).fit(image, scribbles)
    assert seen["n"] == np.count_nonzero(scribbles) > 64
    assert seen["max_samples"] == (1.0 if expected_draws is None else expected_draws / seen["n"])
    X = gpuseg.multiscale_features(image, **seg.feature_params.to_dict(), backend="cpu")[scribbles > 0]
    seg.fit_features(X, scribbles[scribbles > 0])
    assert seen["max_samples"] == min(1.0, training.TREE_SAMPLES / seen["n"])
    assert training.auto_tree_samples(None) == training.TREE_SAMPLES


def test_default_features_are_the_compact_preset_and_arguments_select_skimages():
    from gpuseg.features import PRESETS

    assert Segmenter().feature_params == PRESETS["compact"]
    assert Segmenter(sigma_max=4).feature_params == FeatureParams(sigma_max=4)
    assert Segmenter(preset="ilastik", spacing=(2, 1, 1)).feature_params.spacing == (2.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="not both"):
        Segmenter(preset="skimage", sigma_max=4)
    with pytest.raises(ValueError, match="Unknown feature preset"):
        Segmenter(preset="weka")
