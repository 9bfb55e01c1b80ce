"""GPU backend against the CPU backend. Skipped, with the reason, where no GPU backend can run."""

import numpy as np
import pytest
from skimage import data

import gpuseg
from gpuseg import Segmenter

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cp():
    import cupy

    return cupy


@pytest.mark.parametrize("shape, channel_axis", [((96, 120), None), ((16, 40, 48), None), ((64, 80, 3), -1)])
def test_features_gpu_vs_cpu(cp, shape, channel_axis):
    image = np.random.default_rng(0).random(shape).astype(np.float32)
    cpu = gpuseg.multiscale_features(image, sigma_max=8, channel_axis=channel_axis, backend="cpu")
    gpu = gpuseg.multiscale_features(cp.asarray(image), sigma_max=8, channel_axis=channel_axis, backend="gpu")
    assert isinstance(gpu, cp.ndarray) and gpu.dtype == np.float32
    np.testing.assert_allclose(cp.asnumpy(gpu), cpu, rtol=1e-4, atol=2e-6)


def test_numpy_in_on_gpu_backend_gives_device_features(cp):
    out = gpuseg.multiscale_features(data.camera()[:64, :64], backend="gpu")
    assert isinstance(out, cp.ndarray)


def test_fit_predict_proba_types_and_agreement(cp, mosaic):
    image, truth, scribbles = mosaic
    gpu = Segmenter(backend="gpu", sigma_max=4, random_state=0).fit(cp.asarray(image), cp.asarray(scribbles))
    labels = gpu.predict(cp.asarray(image))
    proba = gpu.predict_proba(cp.asarray(image))
    assert isinstance(labels, cp.ndarray) and isinstance(proba, cp.ndarray)
    np.testing.assert_allclose(cp.asnumpy(proba.sum(-1)), 1, atol=1e-5)
    host = gpu.predict(image)  # NumPy in, NumPy out, computed on the device
    assert isinstance(host, np.ndarray)
    np.testing.assert_array_equal(host, cp.asnumpy(labels))
    cpu = Segmenter(backend="cpu", sigma_max=4, random_state=0).fit(image, scribbles).predict(image)
    assert np.mean(host == truth) > 0.6 and np.mean(host == cpu) > 0.9  # different forests, same task


def test_models_cross_backends(cp, mosaic, tmp_path):
    image, _, scribbles = mosaic
    for train_on, predict_on in [("gpu", "cpu"), ("cpu", "gpu")]:
        seg = Segmenter(backend=train_on, sigma_max=4, random_state=0).fit(image, scribbles)
        here = cp.asnumpy(cp.asarray(seg.predict(image)))
        there = gpuseg.load(seg.save(tmp_path / f"{train_on}.gpuseg"), backend=predict_on).predict(image)
        assert np.mean(here == np.asarray(cp.asnumpy(cp.asarray(there)))) >= 0.99


def test_tiled_equals_whole_on_gpu(cp, mosaic):
    image, _, scribbles = mosaic
    seg = Segmenter(backend="gpu", sigma_max=4, random_state=0).fit(image, scribbles)
    whole = seg.predict_proba(cp.asarray(image), tile_shape=image.shape)
    tiled = seg.predict_proba(cp.asarray(image), tile_shape=(50, 70))
    np.testing.assert_allclose(cp.asnumpy(tiled), cp.asnumpy(whole), atol=1e-6)


def test_dask_on_several_gpus_equals_in_memory(cp, mosaic):
    """dask-cuda's LocalCUDACluster: one worker per visible GPU, each predicting its blocks on its device."""
    dask_cuda = pytest.importorskip("dask_cuda", reason="dask-cuda is not installed (pip install dask-cuda)")
    distributed = pytest.importorskip("distributed")
    import dask.array as da

    image, _, scribbles = mosaic
    seg = Segmenter(backend="gpu", sigma_max=4, random_state=0).fit(image, scribbles)
    expected = seg.predict(image)
    with dask_cuda.LocalCUDACluster(dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        got = client.compute(seg.predict(da.from_array(image, chunks=(64, 64))), sync=True)
        backends = client.run(lambda: gpuseg._backend.resolve_backend("auto", quiet=True))
    assert set(backends.values()) == {"gpu"}
    np.testing.assert_array_equal(cp.asnumpy(cp.asarray(got)), expected)


def test_app_engine_on_gpu(cp, mosaic):
    """The app's stroke-to-overlay path (cached features, training, display prediction) on the device."""
    from gpuseg.app.latency import measure_stroke_to_overlay

    image, _, _ = mosaic
    assert 0 < measure_stroke_to_overlay(image, backend="gpu", repeats=1) < 60


def test_future_on_device_features(cp, mosaic):
    """gpuseg.future with CuPy features: a Segmenter answers in CuPy, a scikit-learn forest in NumPy."""
    from sklearn.ensemble import RandomForestClassifier

    from gpuseg.future import fit_segmenter, predict_segmenter

    image, truth, scribbles = mosaic
    features = gpuseg.multiscale_basic_features(cp.asarray(image), sigma_max=4, backend="gpu")
    seg = fit_segmenter(scribbles, features, Segmenter(backend="gpu", n_estimators=10, random_state=0))
    labels = predict_segmenter(features, seg)
    assert isinstance(labels, cp.ndarray) and labels.dtype == scribbles.dtype
    rf = fit_segmenter(scribbles, features, RandomForestClassifier(n_estimators=10, random_state=0))
    host = predict_segmenter(features, rf)
    assert isinstance(host, np.ndarray) and np.mean(host == cp.asnumpy(labels)) > 0.9


@pytest.mark.parametrize("preset, shape, spacing", [("compact", (96, 120), None), ("ilastik", (16, 40, 48), (3, 1, 1))])
def test_filters_gpu_vs_cpu(cp, preset, shape, spacing):
    image = np.random.default_rng(0).random(shape).astype(np.float32)
    kw = {**gpuseg.features.PRESETS[preset].to_dict(), "spacing": spacing}
    cpu = gpuseg.multiscale_features(image, **kw, backend="cpu")
    gpu = gpuseg.multiscale_features(cp.asarray(image), **kw, backend="gpu")
    np.testing.assert_allclose(cp.asnumpy(gpu), cpu, rtol=1e-4, atol=1e-5)


def test_auto_context_on_the_gpu_tiled_equals_whole_and_agrees_with_cpu(cp, mosaic):
    image, _, scribbles = mosaic
    kw = dict(sigma_max=4, n_estimators=8, random_state=0, auto_context=True)
    gpu = Segmenter(backend="gpu", **kw).fit(image, scribbles)
    whole = gpu.predict_proba(cp.asarray(image))
    np.testing.assert_array_equal(cp.asnumpy(gpu.predict_proba(cp.asarray(image), tile_shape=(60, 70))),
                                  cp.asnumpy(whole))
    cpu = Segmenter(backend="cpu", **kw).fit(image, scribbles)
    assert np.mean(cp.asnumpy(whole).argmax(-1) == cpu.predict_proba(image).argmax(-1)) > 0.97
