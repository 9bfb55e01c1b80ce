"""Feature names in the order of the feature stack, and importances equal to scikit-learn's."""

from itertools import combinations_with_replacement

import numpy as np
import pytest
from skimage import feature, filters
from sklearn.ensemble import RandomForestClassifier

import gpuseg
from gpuseg.features import FeatureParams, _sigma_labels
from gpuseg.forest import Forest


def _column_from_name(image, name, params):
    """Recompute one named feature with scikit-image's filters, from the name alone."""
    channel, sigma, kind = name.split(" ")
    sigmas = dict(zip(_sigma_labels(params.sigmas()), params.sigmas()))
    smoothed = filters.gaussian(image[..., int(channel.removeprefix("ch"))],
                                sigma=sigmas[sigma.removeprefix("σ=")], preserve_range=False)
    if kind == "intensity":
        return smoothed
    if kind == "edges":
        return filters.sobel(smoothed)
    axes = combinations_with_replacement(range(smoothed.ndim), 2)
    hessian = [np.gradient(np.gradient(smoothed)[a], axis=b) for a, b in axes]
    return feature.hessian_matrix_eigvals(hessian)[int(kind.removeprefix("hessian-eig-")) - 1]


@pytest.mark.parametrize("shape, params", [
    ((30, 40, 2), FeatureParams(sigma_min=1, sigma_max=4)),
    ((12, 14, 16, 1), FeatureParams(edges=False, sigma_max=2)),
    ((30, 40, 3), FeatureParams(intensity=False, sigma_min=0.7, sigma_max=3, num_sigma=3)),
])
def test_names_follow_the_columns(rng, shape, params):
    image = rng.random(shape).astype(np.float32)
    ndim, n_channels = len(shape) - 1, shape[-1]
    names = params.names(ndim, n_channels)
    assert len(names) == len(set(names)) == params.n_features(ndim, n_channels)
    stack = gpuseg.multiscale_basic_features(image, **params.to_dict(), channel_axis=-1, backend="cpu")
    for i, name in enumerate(names):
        np.testing.assert_allclose(stack[..., i], _column_from_name(image, name, params), rtol=1e-5, atol=1e-6,
                                   err_msg=name)


def test_name_format():
    names = FeatureParams(sigma_min=0.5, sigma_max=2).names(2, 2)
    assert names[:4] == ["ch0 σ=0.5 intensity", "ch0 σ=0.5 edges",
                         "ch0 σ=0.5 hessian-eig-1", "ch0 σ=0.5 hessian-eig-2"]
    assert "ch0 σ=2.0 hessian-eig-1" in names and names[-1] == "ch1 σ=2.0 hessian-eig-2"
    close = FeatureParams(sigma_min=1, sigma_max=1.0001, num_sigma=3).names(2)
    assert len(set(close)) == len(close)  # more digits where three would merge two sigmas


def _labelled(rng, n=600, n_features=7):
    X = rng.standard_normal((n, n_features)).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 3] > 0).astype(int) + (X[:, 5] > 1)
    return X, y


@pytest.mark.parametrize("forest", [
    dict(n_estimators=20, random_state=0),
    dict(n_estimators=15, max_depth=4, max_samples=0.3, max_features=None, random_state=1),
    dict(n_estimators=10, class_weight="balanced", min_samples_leaf=5, random_state=2),
    dict(n_estimators=5, max_depth=1, bootstrap=False, random_state=3),
])
def test_importances_equal_sklearns(rng, forest):
    X, y = _labelled(rng)
    clf = RandomForestClassifier(**forest).fit(X, y)
    np.testing.assert_allclose(Forest.from_sklearn(clf).feature_importances(), clf.feature_importances_,
                               rtol=1e-12, atol=1e-15)


def test_importances_of_a_tree_without_split():
    X = np.zeros((10, 3), np.float32)
    y = np.r_[np.zeros(5, int), np.ones(5, int)]  # X cannot separate them: every tree is one leaf
    clf = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y)
    np.testing.assert_array_equal(Forest.from_sklearn(clf).feature_importances(), clf.feature_importances_)


def test_segmenter_names_and_importances(small_model, tmp_path):
    seg = small_model
    assert seg.feature_names_ == seg.feature_params.names(2, 1)
    importances = seg.feature_importances_
    assert importances.shape == (seg.n_features_in_,) and importances.dtype == np.float64
    np.testing.assert_allclose(importances.sum(), 1.0)
    loaded = gpuseg.load(seg.save(tmp_path / "m"), backend="cpu")
    np.testing.assert_array_equal(loaded.feature_importances_, importances)
    assert loaded.feature_names_ == seg.feature_names_


def test_segmenter_importances_are_scikit_learns(mosaic, monkeypatch):
    """The CPU backend's forest is scikit-learn's: its importances are that forest's."""
    import sklearn.ensemble

    trained = []

    class Recording(RandomForestClassifier):
        def fit(self, X, y, sample_weight=None):
            trained.append(self)
            return super().fit(X, y, sample_weight)

    monkeypatch.setattr(sklearn.ensemble, "RandomForestClassifier", Recording)
    image, _, scribbles = mosaic
    seg = gpuseg.Segmenter(backend="cpu", sigma_max=4, n_estimators=8, random_state=0).fit(image, scribbles)
    np.testing.assert_allclose(seg.feature_importances_, trained[0].feature_importances_, rtol=1e-12, atol=1e-15)


def test_names_need_a_model_trained_on_images(rng):
    X = rng.random((40, 6)).astype(np.float32)
    seg = gpuseg.Segmenter(backend="cpu", n_estimators=3, random_state=0).fit_features(X, np.r_[[1] * 20, [2] * 20])
    with pytest.raises(AttributeError, match="fit_features"):
        seg.feature_names_
    assert seg.feature_importances_.shape == (6,)
