"""Segmenter.fit_predict: the labels of fit + predict, with the scribbled tiles' features computed once."""

import numpy as np
import pytest

import gpuseg._cpu as cpu
from gpuseg import Segmenter
from gpuseg.predictor import Predictor
from gpuseg.tile_cache import TileCache
from gpuseg.tiling import iter_tiles


def _count_tile_features(monkeypatch):
    """Count the tiles whose features :meth:`Predictor.classify` computes."""
    calls = []
    classify = Predictor.classify

    def counting(self, block, crop, kind):
        calls.append(crop)
        return classify(self, block, crop, kind)

    monkeypatch.setattr(Predictor, "classify", counting)
    return calls


@pytest.mark.parametrize("tile_shape", [None, (80, 70)])
def test_fit_predict_equals_fit_then_predict_and_reuses_the_features(mosaic, monkeypatch, tile_shape):
    image, _, scribbles = mosaic
    params = dict(backend="cpu", n_estimators=8, random_state=0)
    expected = Segmenter(**params).fit(image, scribbles, tile_shape=tile_shape).predict(image, tile_shape=tile_shape)
    calls = _count_tile_features(monkeypatch)
    model = Segmenter(**params)
    labels = model.fit_predict(image, scribbles, tile_shape=tile_shape)
    np.testing.assert_array_equal(labels, expected)
    assert labels.dtype == expected.dtype
    spatial = image.shape
    tiles = iter_tiles(spatial, tile_shape or spatial, 0)
    scribbled = sum(bool(scribbles[t.write].any()) for t in tiles)
    assert scribbled > 0
    assert len(calls) == len(tiles) - scribbled  # only the tiles without scribbles are computed again
    np.testing.assert_array_equal(model.predict(image, tile_shape=tile_shape), expected)  # a trained model


@pytest.mark.parametrize("tile_shape", [None, (80, 70)])
def test_fit_predict_without_room_keeps_only_the_last_labelled_tile(mosaic, monkeypatch, tile_shape):
    """With no room in the cache, the last labelled tile's matrix (the training's feature buffer, no copy)
    is still kept, and classified first; every other tile is computed again."""
    image, _, scribbles = mosaic
    params = dict(backend="cpu", n_estimators=8, random_state=0, preset="skimage")
    expected = Segmenter(**params).fit(image, scribbles, tile_shape=tile_shape).predict(image, tile_shape=tile_shape)
    monkeypatch.setattr(cpu, "memory_budget", lambda: 2.0 ** 30)  # tiles of the whole image...
    monkeypatch.setattr(TileCache, "has_room", lambda self, nbytes: False)  # ...that the cache cannot keep
    calls = _count_tile_features(monkeypatch)
    order = []
    classify_tiles = Predictor.classify_tiles

    def recording(self, image, tiles, kind, cache=None):
        for tile, result in classify_tiles(self, image, tiles, kind, cache):
            order.append(tile.write)
            yield tile, result

    monkeypatch.setattr(Predictor, "classify_tiles", recording)
    np.testing.assert_array_equal(Segmenter(**params).fit_predict(image, scribbles, tile_shape=tile_shape), expected)
    tiles = iter_tiles(image.shape, tile_shape or image.shape, 0)
    last = [t.write for t in tiles if scribbles[t.write].any()][-1]
    assert len(calls) == len(tiles) - 1 and order[0] == last
    assert sorted(order) == sorted(t.write for t in tiles)


def test_fit_predict_with_auto_context_and_series(mosaic):
    image, _, scribbles = mosaic
    params = dict(backend="cpu", n_estimators=5, random_state=0, sigma_max=4, auto_context=True)
    expected = Segmenter(**params).fit(image, scribbles).predict(image)
    np.testing.assert_array_equal(Segmenter(**params).fit_predict(image, scribbles), expected)
    with pytest.raises(TypeError, match="one image"):
        Segmenter(**params).fit_predict([image, image], [scribbles, scribbles])


def test_fit_predict_refuses_bad_scribbles_as_fit_does(mosaic):
    image, _, _ = mosaic
    with pytest.raises(ValueError, match="No labelled pixel"):
        Segmenter(backend="cpu").fit_predict(image, np.zeros(image.shape, np.uint8))


def test_tile_cache_holds_within_its_budget():
    tiles = iter_tiles((20, 10), (10, 10), 2)
    cache = TileCache(budget_bytes=4 * 3 * 100)
    X = np.ones((3, 100), np.float32)
    assert cache.has_room(X.nbytes)
    cache.put(tiles[0], X)
    assert not cache.has_room(X.nbytes) and cache.held_bytes == X.nbytes
    assert cache.pop(tiles[1]) is None
    assert cache.pop(tiles[0]) is X and cache.held_bytes == 0 and len(cache) == 0
    assert cache.pop(tiles[0]) is None
