"""Dask arrays: lazy prediction equals in-memory prediction, on threads and on a process cluster."""

import pickle

import dask
import dask.array as da
import numpy as np
import pytest

from types import SimpleNamespace

from gpuseg import Segmenter
from gpuseg.predictor import Predictor
from gpuseg.tiling import Tile, iter_tiles

SIGMA_MAX = 4  # halo 18


@pytest.fixture(scope="module")
def scene():
    rng = np.random.default_rng(0)
    image = rng.normal(0, 0.3, (90, 100)).astype(np.float32)
    image[:, 50:] += 1
    image[30:45, 20:40] += 2
    labels = np.zeros(image.shape, np.uint8)
    labels[2:5, 5:40] = 1
    labels[-5:-2, 60:95] = 2
    labels[33:40, 25:35] = 3
    seg = Segmenter(backend="cpu", sigma_max=SIGMA_MAX, n_estimators=10, max_depth=8, random_state=0)
    seg.fit(image, labels)
    proba = seg.predict_proba(image, progress=False)
    return seg, image, proba, seg.classes_[proba.argmax(axis=-1)]


@pytest.fixture(scope="module")
def scene_channels():
    rng = np.random.default_rng(1)
    image = rng.normal(0, 0.3, (3, 60, 70)).astype(np.float32)
    image[0, :, 35:] += 1
    image[2, 20:30] -= 1
    labels = np.zeros(image.shape[1:], np.uint8)
    labels[2:5, 5:30] = 1
    labels[-5:-2, 40:65] = 2
    labels[22:28, 10:20] = 5
    seg = Segmenter(backend="cpu", sigma_max=SIGMA_MAX, n_estimators=10, max_depth=8, random_state=0,
                    channel_axis=0).fit(image, labels)
    return seg, image, seg.predict_proba(image, progress=False)


# input chunks unlike the tiles; tiles even, odd, under the halo, larger than the image
@pytest.mark.parametrize("tile_shape", [(32, 32), (29, 41), (7, 5), (200, 200), None])
def test_dask_threads_equals_in_memory(scene, tile_shape):
    seg, image, proba, labels = scene
    lazy = da.from_array(image, chunks=(17, 60))
    lazy_labels = seg.predict(lazy, tile_shape=tile_shape)
    lazy_proba = seg.predict_proba(lazy, tile_shape=tile_shape)
    assert isinstance(lazy_labels, da.Array) and isinstance(lazy_proba, da.Array)
    assert lazy_labels.shape == labels.shape and lazy_labels.dtype == seg.label_dtype
    assert lazy_proba.shape == proba.shape and lazy_proba.dtype == np.float32
    with dask.config.set(scheduler="threads", num_workers=2):
        got_labels, got_proba = dask.compute(lazy_labels, lazy_proba)
    np.testing.assert_array_equal(got_labels, labels)
    np.testing.assert_allclose(got_proba, proba, rtol=0, atol=1e-6)


def test_dask_blocks_at_the_edge_see_the_true_edge(scene):
    """Blocks return the chunks the graph declares; chunks under the halo (18) are merged away."""
    seg, image, proba, _ = scene
    lazy = seg.predict_proba(da.from_array(image), tile_shape=(40, 45))  # would leave 10-pixel chunks
    assert all(c >= seg.feature_params.halo() for axis in lazy.chunks[:2] for c in axis)
    last = tuple(len(c) - 1 for c in lazy.chunks)
    for index in [(0, 0, 0), (0, last[1], 0), last]:
        block = lazy.blocks[index].compute(scheduler="sync")
        assert block.shape == tuple(c[i] for c, i in zip(lazy.chunks, index))
    start = tuple(sum(c[:-1]) for c in lazy.chunks[:2])
    np.testing.assert_allclose(lazy.blocks[last].compute(scheduler="sync"), proba[start[0]:, start[1]:],
                               rtol=0, atol=1e-6)


def test_dask_channel_axis(scene_channels):
    seg, image, proba = scene_channels
    lazy = seg.predict_proba(da.from_array(image, chunks=(1, 25, 25)), tile_shape=(25, 30))
    assert lazy.chunks[-1] == (3,) and lazy.shape == proba.shape
    np.testing.assert_allclose(lazy.compute(scheduler="threads"), proba, rtol=0, atol=1e-6)
    labels = seg.predict(da.from_array(image), tile_shape=(25, 30)).compute(scheduler="threads")
    np.testing.assert_array_equal(labels, seg.classes_[proba.argmax(axis=-1)])


def test_segmenter_pickles(scene):
    seg, image, proba, _ = scene
    seg.predict(image[:20, :20], progress=False)  # caches the forest arrays
    again = pickle.loads(pickle.dumps(seg))
    np.testing.assert_array_equal(again.predict_proba(image, progress=False), proba)


def test_dask_distributed_processes(scene):
    distributed = pytest.importorskip("distributed")
    seg, image, proba, labels = scene
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                                  worker_dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        lazy = da.from_array(image, chunks=(45, 50))
        got_labels, got_proba = client.compute([seg.predict(lazy), seg.predict_proba(lazy)], sync=True)
        workers = client.run(lambda: "ok")
    assert len(workers) == 2
    np.testing.assert_array_equal(got_labels, labels)
    np.testing.assert_allclose(got_proba, proba, rtol=0, atol=1e-6)


def _tight_backend(max_pixels, computed):
    """The CPU backend, but whose forest kernels run out of memory on more than ``max_pixels`` pixels."""
    from gpuseg import _cpu

    def tight(kernel):
        def run(arrays, X):
            if X.shape[1] > max_pixels:
                raise MemoryError("fake out of memory")
            computed.append(X.shape[1])
            return kernel(arrays, X)
        return run

    return SimpleNamespace(**{**{name: getattr(_cpu, name) for name in _cpu.__all__},
                              "forest_predict_proba": tight(_cpu.forest_predict_proba),
                              "forest_predict_labels": tight(_cpu.forest_predict_labels)})


@pytest.mark.parametrize("max_pixels", [500, 40])
def test_out_of_memory_splits_the_tile(scene, max_pixels):
    """A MemoryError (CuPy's OutOfMemoryError is one) halves the tile until it fits; same result."""
    seg, image, proba, _ = scene
    computed = []
    predictor = Predictor(seg, _tight_backend(max_pixels, computed))
    block = predictor.read_block(image, Tile((slice(10, 80), slice(5, 70)), (), ()))
    crop = (slice(18, 52), slice(18, 47))  # 34 x 29 = 986 pixels, with the halo (18) around them
    got = predictor.classify(block, crop, "proba")
    np.testing.assert_allclose(got, proba[28:62, 23:52], rtol=0, atol=1e-6)
    assert sum(computed) == 986 and len(computed) > 1
    computed.clear()
    np.testing.assert_array_equal(seg.predict(image, tile_shape=(30, 30)),
                                  next(predictor.classify_tiles(image, iter_tiles(image.shape, image.shape, 18),
                                                                "labels"))[1])


def test_out_of_memory_on_one_pixel_raises(scene):
    seg, image, _, _ = scene
    predictor = Predictor(seg, _tight_backend(0, []))
    block = predictor.read_block(image, Tile((slice(0, 20), slice(0, 20)), (), ()))
    with pytest.raises(MemoryError, match="fake"):
        predictor.classify(block, (slice(0, 20), slice(0, 20)), "labels")


def test_predictor_pickles_without_device_arrays(scene):
    seg, image, proba, _ = scene
    predictor = seg.predictor()
    next(predictor.classify_tiles(image, predictor.plan(image).tiles, "proba"))  # puts the forest "on the device"
    again = pickle.loads(pickle.dumps(predictor))
    assert again.be is predictor.be and not again._on_device
    (_, got), = again.classify_tiles(image, predictor.plan(image, image.shape).tiles, "proba")
    np.testing.assert_allclose(got, proba, rtol=0, atol=1e-6)
