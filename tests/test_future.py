"""gpuseg.future against what scikit-image 0.26's tests of skimage.future check, and its gallery recipe."""

from functools import partial

import numpy as np
import pytest
from scipy import spatial
from skimage import data, feature, future
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import NotFittedError

import gpuseg
from gpuseg.future import TrainableSegmenter, fit_segmenter, predict_segmenter

SMALL = dict(edges=False, texture=False, sigma_min=0.5, sigma_max=2)


class NearestNeighbour:
    """A scikit-learn-style classifier that is not a forest (scikit-image's tests use one like it)."""

    def fit(self, X, y):
        self.X, self.y = X, y
        self.tree = spatial.cKDTree(X)
        return self

    def predict(self, X):
        if X.shape[1] != self.X.shape[1]:
            raise ValueError(f"Expected {self.X.shape[1]} features but got {X.shape[1]}.")
        return self.y[self.tree.query(X)[1]]


def _halves(rng, channels=None):
    """scikit-image's test image: top half 1, bottom half 0, noise; scribbles on two rows at each end."""
    shape = (20, 20) if channels is None else (20, 20, channels)
    img = np.zeros(shape)
    img[:10] = 1
    img += 0.05 * rng.standard_normal(shape)
    labels = np.zeros((20, 20), np.uint8)
    labels[:2] = 1
    labels[-2:] = 2
    return img, labels


CLASSIFIERS = {
    "nn": NearestNeighbour,
    "sklearn": lambda: RandomForestClassifier(n_estimators=10, random_state=0),
    "segmenter": lambda: gpuseg.Segmenter(backend="cpu", n_estimators=10, random_state=0),
}
ALL = pytest.mark.parametrize("kind", list(CLASSIFIERS))
FORESTS = pytest.mark.parametrize("kind", ["sklearn", "segmenter"])


@ALL
@pytest.mark.parametrize("channels", [None, 3])
def test_fit_and_predict_segmenter(rng, kind, channels):
    clf = CLASSIFIERS[kind]()
    img, labels = _halves(rng, channels)
    features = gpuseg.multiscale_basic_features(img, **SMALL, channel_axis=None if channels is None else -1)
    assert fit_segmenter(labels, features, clf) is clf
    out = predict_segmenter(features, clf)
    assert out.shape == labels.shape and out.dtype == labels.dtype
    assert np.all(out[:10] == 1) and np.all(out[10:] == 2)
    flat = predict_segmenter(features.reshape(-1, features.shape[-1]), clf)  # a flattened image
    np.testing.assert_array_equal(flat, out.ravel())


@ALL
@pytest.mark.parametrize("shape", [(5, 20, 20), (20, 20, 5)])
def test_other_features_are_refused(rng, kind, shape):
    """A ValueError; a classifier that knows its feature count (scikit-learn's, gpuseg's) also says why."""
    img, labels = _halves(rng)
    clf = fit_segmenter(labels, gpuseg.multiscale_basic_features(img, **SMALL), CLASSIFIERS[kind]())
    with pytest.raises(ValueError, match="features" if kind == "nn" else "same type of features"):
        predict_segmenter(rng.random(shape), clf)


@FORESTS
def test_untrained_classifier(rng, kind):
    clf = CLASSIFIERS[kind]()
    with pytest.raises(NotFittedError, match="train the classifier"):
        predict_segmenter(rng.random((20, 20, 6)), clf)
    with pytest.raises(NotFittedError, match="train the classifier"):
        TrainableSegmenter(clf).predict(rng.random((20, 20)))


@FORESTS
@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.int64, np.float64])
def test_labels_keep_the_training_dtype(rng, kind, dtype):
    clf = CLASSIFIERS[kind]()
    img, labels = _halves(rng)
    labels = labels.astype(dtype)
    features = gpuseg.multiscale_basic_features(img, **SMALL)
    assert predict_segmenter(features, fit_segmenter(labels, features, clf)).dtype == dtype
    out = TrainableSegmenter(clf, partial(gpuseg.multiscale_basic_features, **SMALL)).fit(img, labels).predict(img)
    assert out.dtype == dtype and np.all(out[:10] == 1) and np.all(out[10:] == 2)


def test_labels_of_another_shape(rng):
    img, labels = _halves(rng)
    with pytest.raises(ValueError, match="labels have shape"):
        fit_segmenter(labels[:-1], gpuseg.multiscale_basic_features(img, **SMALL), NearestNeighbour())


@ALL
def test_trainable_segmenter(rng, kind):
    """scikit-image's object-oriented test, for each kind of classifier (one classifier trained twice)."""
    clf = CLASSIFIERS[kind]()
    img, labels = _halves(rng)
    segmenter = TrainableSegmenter(clf=clf, features_func=partial(gpuseg.multiscale_basic_features, **SMALL))
    assert segmenter.fit(img, labels) is segmenter and segmenter.clf is clf
    out = segmenter.predict(img)
    assert np.all(out[:10] == 1) and np.all(out[10:] == 2)

    two_channels = np.stack((img, img.T), axis=-1)
    segmenter = TrainableSegmenter(clf=clf, features_func=partial(gpuseg.multiscale_basic_features, channel_axis=-1))
    segmenter.fit(two_channels, labels)
    out = segmenter.predict(two_channels)
    assert np.all(out[:10] == 1) and np.all(out[10:] == 2)
    with pytest.raises(ValueError):  # another number of dimensions
        segmenter.predict(np.expand_dims(two_channels, axis=-1))
    with pytest.raises(ValueError):  # another number of channels
        segmenter.predict(np.concatenate([two_channels] * 2, axis=-1))


def test_foreign_classifier_sees_the_labelled_pixels_in_order(rng):
    img, labels = _halves(rng)
    clf = NearestNeighbour()
    segmenter = TrainableSegmenter(clf, partial(gpuseg.multiscale_basic_features, **SMALL)).fit(img, labels)
    np.testing.assert_array_equal(clf.y, labels[labels > 0])
    np.testing.assert_array_equal(clf.X, segmenter.features[labels > 0])


def test_gpuseg_features_take_the_tiled_path(mosaic):
    """A Segmenter with gpuseg's features: trained on images (so it knows its geometry and saves), the
    partial's parameters adopted, and the labels those of the whole-image path."""
    image, _, scribbles = mosaic
    func = partial(gpuseg.multiscale_basic_features, edges=False, sigma_min=1, sigma_max=4)
    seg = gpuseg.Segmenter(backend="cpu", n_estimators=10, random_state=0)
    tiled = TrainableSegmenter(seg, func).fit(image, scribbles)
    assert (seg.edges, seg.sigma_min, seg.sigma_max, seg.ndim_) == (False, 1, 4, 2)
    assert not hasattr(tiled, "features")  # no whole-image feature stack was made
    assert len(seg.feature_names_) == seg.n_features_in_ == 3 * (1 + 2)
    whole = TrainableSegmenter(gpuseg.Segmenter(backend="cpu", n_estimators=10, random_state=0),
                               lambda img: func(img)).fit(image, scribbles)
    np.testing.assert_array_equal(tiled.predict(image), whole.predict(image))
    bare = TrainableSegmenter(gpuseg.Segmenter(backend="cpu", sigma_max=2), gpuseg.multiscale_basic_features)
    bare.fit(image, scribbles)  # the function itself: its defaults, tiled
    assert bare.clf.sigma_max == 16 and bare.clf.ndim_ == 2 and not hasattr(bare, "features")


def test_default_is_a_segmenter_with_gpuseg_features(mosaic):
    image, _, scribbles = mosaic
    segmenter = TrainableSegmenter()
    assert isinstance(segmenter.clf, gpuseg.Segmenter)
    segmenter.compute_features(image)
    np.testing.assert_array_equal(segmenter.features, gpuseg.multiscale_basic_features(image, backend="cpu"))
    assert TrainableSegmenter(NearestNeighbour())._features_func() is gpuseg.multiscale_basic_features
    seg = gpuseg.Segmenter(backend="cpu", sigma_max=2, n_estimators=5, random_state=0)
    out = TrainableSegmenter(seg).fit(image, scribbles).predict(image)
    np.testing.assert_array_equal(out, seg.predict(image))


def _recipe_scribbles(shape, scale):
    """The rectangles of scikit-image's plot_trainable_segmentation (drawn on 900x900), scaled."""
    labels = np.zeros(shape, np.uint8)
    for value, rows, cols in [(1, (0, 130), (0, 900)), (1, (0, 170), (0, 400)), (2, (600, 900), (200, 650)),
                              (3, (330, 430), (210, 320)), (4, (260, 340), (60, 170)), (4, (150, 200), (720, 860))]:
        labels[rows[0] // scale:rows[1] // scale, cols[0] // scale:cols[1] // scale] = value
    return labels


def test_gallery_recipe_gives_scikit_learns_labels():
    """scikit-image's gallery recipe with only its imports changed gives scikit-learn's labels exactly.

    ``data.skin()`` is downloaded on first use, so a bundled RGB microscopy image stands in for it,
    at a third of the recipe's 900x900 crop, with its scribble rectangles scaled to match.
    """
    img = data.immunohistochemistry()[:300, :300]
    labels = _recipe_scribbles(img.shape[:2], 3)
    kwargs = dict(intensity=True, edges=False, texture=True, sigma_min=1, sigma_max=16, channel_axis=-1)
    forest = dict(n_estimators=50, n_jobs=-1, max_depth=10, max_samples=0.05, random_state=0)

    features = partial(feature.multiscale_basic_features, **kwargs)(img)
    ref = future.predict_segmenter(features, future.fit_segmenter(labels, features, RandomForestClassifier(**forest)))

    ours_features = partial(gpuseg.multiscale_basic_features, **kwargs, backend="cpu")(img)
    clf = fit_segmenter(labels, ours_features, RandomForestClassifier(**forest))
    ours = predict_segmenter(ours_features, clf)
    assert ours.dtype == ref.dtype == np.uint8
    np.testing.assert_array_equal(ours, ref)
    assert set(np.unique(ours)) == {1, 2, 3, 4}
    oo = TrainableSegmenter(RandomForestClassifier(**forest), partial(gpuseg.multiscale_basic_features, **kwargs,
                                                                      backend="cpu"))
    np.testing.assert_array_equal(oo.fit(img, labels).predict(img), ref)
