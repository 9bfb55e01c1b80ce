"""The GPU backend's own code, run on the CPU: cuML parameters, training with and without cuML, the
allocator, and the CUDA predict kernel's source (compiled for the host by ``tests/gpu_stub.py``)."""

import importlib.abc
import importlib.machinery
import logging
import math
import sys

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

import gpuseg
from gpuseg import _backend, _cpu
from gpuseg.cuml_params import cuml_params

import gpu_stub

# cuML 26.10.00's RandomForestClassifier.__init__ keywords (python/cuml/cuml/ensemble/randomforestclassifier.py).
CUML_26_10_KEYWORDS = {
    "n_estimators", "split_criterion", "bootstrap", "max_samples", "max_depth", "max_leaves", "max_features",
    "n_bins", "min_samples_leaf", "min_samples_split", "min_impurity_decrease", "max_batch_size", "random_state",
    "n_streams", "oob_score", "class_weight", "verbose", "output_type",
}
BASE = {"n_estimators": 50, "max_depth": 10, "max_samples": 0.05, "max_features": "sqrt", "min_samples_leaf": 1,
        "class_weight": None, "random_state": None}


def _cuml_rules(params: dict, n_rows: int) -> dict:
    """What cuML 26.10's ``_fit_forest`` makes of the values (randomforest_common.pyx), for the checks below."""
    depth = params.get("max_depth")
    if depth is not None and (not isinstance(depth, int) or depth <= 0):
        raise ValueError("cuML: max_depth must be a positive integer or None")
    leaf = params.get("min_samples_leaf", 1)
    leaf = leaf if isinstance(leaf, int) else math.ceil(leaf * n_rows)
    features = params.get("max_features", "sqrt")
    if not (isinstance(features, (int, float)) or features in ("sqrt", "log2", None)):
        raise ValueError("cuML: max_features")
    float(params.get("max_samples", 1.0))  # a Cython float parameter
    return {"min_samples_leaf": leaf}


@pytest.mark.parametrize("params", [
    BASE,
    {**BASE, "max_depth": np.int64(10), "min_samples_leaf": np.int64(5), "n_estimators": np.int32(20)},
    {**BASE, "max_samples": 300, "max_features": np.int64(3), "random_state": np.int64(7)},
    {**BASE, "max_samples": None, "max_depth": None, "class_weight": {0: np.float64(2.0), np.int64(1): 1}},
    {**BASE, "class_weight": "balanced", "min_samples_leaf": 0.01, "max_features": 0.5},
])
def test_translation_gives_what_cuml_accepts_and_means(params):
    out = cuml_params(params, n_samples=1000)
    assert set(out) <= CUML_26_10_KEYWORDS
    for key, value in out.items():
        assert type(value) in (int, float, str, dict, type(None)), (key, type(value))
    rules = _cuml_rules(out, 1000)
    want_leaf = params["min_samples_leaf"]
    want_leaf = want_leaf if float(want_leaf) >= 1 else math.ceil(want_leaf * 1000)
    assert rules["min_samples_leaf"] == want_leaf  # a NumPy 5 stays 5 rows, not 5 x n_rows
    if isinstance(params["max_samples"], int):
        assert out["max_samples"] == params["max_samples"] / 1000
    if params["max_samples"] is None:
        assert out["max_samples"] == 1.0
    if params["class_weight"] is None:
        assert "class_weight" not in out  # older cuML has no such keyword
    if isinstance(params["class_weight"], dict):
        assert out["class_weight"] == {0: 2.0, 1: 1.0} and all(type(k) is int for k in out["class_weight"])
    if params["random_state"] is not None:
        assert out["random_state"] == int(params["random_state"]) and out["n_streams"] == 1


@pytest.mark.parametrize("change, message", [
    ({"max_samples": 5000}, "at most that many"),
    ({"max_samples": 0.0}, "max_samples"),
    ({"class_weight": "balanced_subsample"}, "balanced_subsample"),
    ({"random_state": np.random.RandomState(0)}, "non-negative integer"),
    ({"max_depth": 2.5}, "max_depth"),
    ({"min_samples_leaf": True}, "min_samples_leaf"),
    ({"n_bins": 64}, "no parameter"),
])
def test_translation_refuses_what_cuml_cannot_honour(change, message):
    with pytest.raises(ValueError, match=message):
        cuml_params({**BASE, **change}, n_samples=1000)


def test_class_weight_needs_cuml_26_08():
    with pytest.raises(ValueError, match="26.8"):
        cuml_params({**BASE, "class_weight": "balanced"}, 1000, cuml_version=(25, 10))
    assert cuml_params({**BASE, "class_weight": "balanced"}, 1000, cuml_version=(26, 8))["class_weight"] == "balanced"


# -- the GPU backend on stand-ins ------------------------------------------------------------------

@pytest.fixture
def kernels(tmp_path_factory):
    if not gpu_stub.have_compiler():
        pytest.skip("g++ is not installed: the stand-in compiles the CUDA kernel source for the host")
    return tmp_path_factory.getbasetemp() / "host-kernels"


@pytest.fixture
def stub_gpu(monkeypatch, kernels):
    kernels.mkdir(exist_ok=True)
    yield gpu_stub.install(monkeypatch, kernels)
    _forget_gpu_module()


def _forget_gpu_module():
    sys.modules.pop("gpuseg._gpu", None)
    if hasattr(gpuseg, "_gpu"):
        del gpuseg._gpu
    gpu_stub.clear_caches()


def _data(n_classes, n=800, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 8)).astype(np.float32)
    y = np.digitize(X[:, 0] + X[:, 1] * X[:, 2], np.quantile(X[:, 0], np.linspace(0, 1, n_classes + 1)[1:-1]))
    return X, y


def test_gpu_backend_runs_without_cuml_and_says_who_trains(stub_gpu, caplog):
    assert _backend.gpu_unavailable_reason() is None
    trainer, detail, _ = _backend.gpu_trainer()
    assert trainer == "scikit-learn" and "cuml cannot be imported" in detail
    with caplog.at_level(logging.INFO, logger="gpuseg"):
        assert _backend.resolve_backend("auto") == "gpu"
    assert "forests trained by scikit-learn on the host" in caplog.text


@pytest.mark.parametrize("n_classes", [2, 3, 5])
def test_cuml_less_training_is_scikit_learns(stub_gpu, n_classes):
    from gpuseg import _gpu

    X, y = _data(n_classes)
    params = {**BASE, "max_samples": 0.5, "random_state": 0}
    on_gpu = _gpu.forest_fit(X, y, params, n_classes)
    on_cpu = _cpu.forest_fit(X, y, params, n_classes)
    for name in on_cpu.ARRAYS:
        np.testing.assert_array_equal(getattr(on_gpu, name), getattr(on_cpu, name))


@pytest.mark.parametrize("n_classes", [2, 3, 7])
def test_cuda_predict_kernel_equals_cpu_kernel(stub_gpu, n_classes):
    from gpuseg import _gpu

    X, y = _data(n_classes)
    forest = _cpu.forest_fit(X, y, {**BASE, "n_estimators": 9, "max_samples": None, "random_state": 1}, n_classes)
    test = np.ascontiguousarray(_data(n_classes, n=1000, seed=3)[0].T)  # 1000 samples: a partial last block
    got = _gpu.forest_predict_proba(forest.arrays(_gpu), test)
    np.testing.assert_allclose(got, _cpu.forest_predict_proba(forest.arrays(_cpu), test), rtol=0, atol=1e-6)
    empty = _gpu.forest_predict_proba(forest.arrays(_gpu), test[:, :0])  # no launch on an empty grid
    assert empty.shape == (0, n_classes)
    labels = _gpu.forest_predict_labels(forest.arrays(_gpu), test)
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(labels, _cpu.forest_predict_labels(forest.arrays(_cpu), test))
    assert _gpu.forest_predict_labels(forest.arrays(_gpu), test[:, :0]).shape == (0,)


def test_segmenter_on_the_gpu_backend_equals_cpu(stub_gpu, mosaic):
    """The GPU driver path (dispatch, tiles, copies, training, kernel) with stand-ins, against the CPU backend."""
    image, _, scribbles = mosaic
    params = dict(sigma_max=4, n_estimators=10, max_depth=8, random_state=0)
    gpu = gpuseg.Segmenter(backend="gpu", **params).fit(image, scribbles)
    cpu = gpuseg.Segmenter(backend="cpu", **params).fit(image, scribbles)
    labels = gpu.predict(image, tile_shape=(100, 90))
    # cuCIM's stand-in is scikit-image: the same features up to float32 rounding, so nearly the same forest.
    assert labels.dtype == cpu.label_dtype and labels.shape == image.shape
    assert np.mean(labels == cpu.predict(image)) > 0.99
    proba = gpu.predict_proba(image[:60, :70])
    np.testing.assert_allclose(proba.sum(-1), 1, atol=1e-5)
    # fit_predict keeps the scribbled tiles' feature matrices on the device for the prediction
    both = gpuseg.Segmenter(backend="gpu", **params).fit_predict(image, scribbles, tile_shape=(100, 90))
    assert isinstance(both, np.ndarray) and both.dtype == labels.dtype
    np.testing.assert_array_equal(both, labels)


def test_gpu_filters_equal_cpu(stub_gpu, rng):
    """ilastik's filters through the GPU module (cupyx's stand-in is SciPy), with spacing, against the CPU."""
    from gpuseg.features import FILTERS

    volume = rng.random((9, 20, 22), dtype=np.float32)
    kw = dict(sigma_max=1, filters={name: (0.7, 1.6) for name in FILTERS}, spacing=(2, 1, 1))
    gpu = gpuseg.multiscale_features(volume, backend="gpu", **kw)
    np.testing.assert_allclose(gpu, gpuseg.multiscale_features(volume, backend="cpu", **kw), rtol=1e-5, atol=1e-6)


def test_auto_context_through_the_gpu_module(stub_gpu, mosaic):
    """Auto-context's fit (fold forests, context rows) and two-stage tiles through the GPU module's stand-ins."""
    image, _, scribbles = mosaic
    kw = dict(sigma_max=2, n_estimators=6, random_state=0, auto_context=True)
    gpu = gpuseg.Segmenter(backend="gpu", **kw).fit(image, scribbles)
    whole = gpu.predict_proba(image)
    np.testing.assert_array_equal(gpu.predict_proba(image, tile_shape=(70, 90)), whole)
    cpu = gpuseg.Segmenter(backend="cpu", **kw).fit(image, scribbles)
    assert np.mean(whole.argmax(-1) == cpu.predict_proba(image).argmax(-1)) > 0.97


class _CumlFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports a ``cuml`` stand-in that does what cuML's ``__init__`` does to CuPy: sets RMM's allocator."""

    def __init__(self, cupy, fits):
        self.cupy, self.fits = cupy, fits

    def find_spec(self, name, path=None, target=None):
        if name in ("cuml", "cuml.ensemble"):
            return importlib.machinery.ModuleSpec(name, self)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        if module.__name__ == "cuml":
            module.__version__ = "26.10.00"
            module.__path__ = []
            self.cupy.cuda.set_allocator("rmm_cupy_allocator")
            return
        fits = self.fits

        class RandomForestClassifier:
            def __init__(self, **kwargs):
                unknown = set(kwargs) - CUML_26_10_KEYWORDS
                if unknown:
                    raise TypeError(f"unexpected keyword(s) {sorted(unknown)}")
                _cuml_rules(kwargs, 10**6)
                self.kwargs = kwargs

            def fit(self, X, y):
                assert X.dtype == np.float32 and y.dtype == np.int32
                k = self.kwargs
                self.sk = RandomForestClassifier_(
                    n_estimators=k["n_estimators"], max_depth=k["max_depth"], max_samples=k["max_samples"],
                    max_features=k["max_features"], min_samples_leaf=k["min_samples_leaf"],
                    class_weight=k.get("class_weight"), random_state=k.get("random_state")).fit(X, y)
                fits.append(k)
                return self

            def as_treelite(self):
                import treelite.sklearn

                return treelite.sklearn.import_model(self.sk)

        module.RandomForestClassifier = RandomForestClassifier


RandomForestClassifier_ = RandomForestClassifier


def test_cuml_training_path_and_allocator(monkeypatch, kernels):
    pytest.importorskip("treelite", reason="treelite is in the test extra: pip install '.[test]'")
    kernels.mkdir(exist_ok=True)
    cp = gpu_stub.install(monkeypatch, kernels)
    monkeypatch.delitem(sys.modules, "cuml")
    monkeypatch.delitem(sys.modules, "cuml.ensemble", raising=False)
    fits = []
    finder = _CumlFinder(cp, fits)
    monkeypatch.setattr(sys, "meta_path", [finder, *sys.meta_path])
    try:
        trainer, detail, version = _backend.gpu_trainer()
        assert (trainer, detail, version) == ("cuml", "cuML 26.10.00", (26, 10))
        # cuML set RMM's allocator on import; gpuseg put back the one the process had.
        assert cp.allocator_log == ["rmm_cupy_allocator", "cupy-pool"] and cp._state["allocator"] == "cupy-pool"
        from gpuseg import _gpu

        X, y = _data(3)
        params = {**BASE, "max_depth": np.int64(6), "min_samples_leaf": np.int64(2), "max_samples": 400,
                  "class_weight": {0: 2.0, 1: 1.0, 2: 1.0}, "random_state": 0}
        forest = _gpu.forest_fit(X, y, params, 3)
        assert fits[0]["max_samples"] == 0.5 and fits[0]["min_samples_leaf"] == 2 and fits[0]["n_streams"] == 1
        reference = RandomForestClassifier(n_estimators=50, max_depth=6, min_samples_leaf=2, max_samples=0.5,
                                           class_weight={0: 2.0, 1: 1.0, 2: 1.0}, random_state=0).fit(X, y)
        test = _data(3, n=500, seed=9)[0]
        np.testing.assert_allclose(_cpu.forest_predict_proba(forest.arrays(_cpu), np.ascontiguousarray(test.T)),
                                   reference.predict_proba(test), atol=2e-6)
    finally:
        _forget_gpu_module()


def test_no_cupy_means_no_gpu_backend(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    gpu_stub.clear_caches()
    try:
        assert "cupy cannot be imported" in _backend.gpu_unavailable_reason()
        with pytest.raises(RuntimeError, match=r"pip install 'gpuseg\[gpu\]'"):
            _backend.resolve_backend("gpu")
    finally:
        gpu_stub.clear_caches()


def test_cuda_predict_kernel_compiles_for_a_device(stub_gpu, tmp_path):
    """The kernel source as CUDA (nvcc's front end is NVRTC's): PTX for K = 2 and 40, no GPU needed."""
    import shutil
    import subprocess

    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not installed: the CUDA source is compiled by the host-C++ test only")
    from gpuseg import _gpu

    types_ = gpu_stub.kernel_parameter_types(_gpu._PREDICT_SOURCE, "predict_proba")
    source = _gpu._PREDICT_SOURCE + "".join(
        f"template __global__ void predict_proba<{k}>({', '.join(types_)});\n" for k in (2, 40))
    (tmp_path / "k.cu").write_text(source)
    proc = subprocess.run(["nvcc", "-ptx", "-std=c++17", "-o", str(tmp_path / "k.ptx"), str(tmp_path / "k.cu")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "predict_proba" in (tmp_path / "k.ptx").read_text()


def test_info_says_who_trains_on_the_gpu(stub_gpu):
    from gpuseg.info import describe

    text = describe()
    assert "backends: cpu, gpu" in text and "Stub GPU" in text
    assert "GPU forests trained by: scikit-learn on the host (cuml cannot be imported" in text


def test_future_on_the_gpu_backend(stub_gpu, mosaic):
    """gpuseg.future's default Segmenter on the GPU driver path: the tiled path, labels in the scribbles' dtype,
    and importances (scikit-learn trains where cuML is missing)."""
    from gpuseg.future import TrainableSegmenter

    image, _, scribbles = mosaic
    params = dict(sigma_max=4, n_estimators=10, max_depth=8, random_state=0)
    gpu = TrainableSegmenter(gpuseg.Segmenter(backend="gpu", **params)).fit(image, scribbles.astype(np.int32))
    cpu = TrainableSegmenter(gpuseg.Segmenter(backend="cpu", **params)).fit(image, scribbles.astype(np.int32))
    labels = gpu.predict(image)
    assert labels.dtype == np.int32 and np.mean(labels == cpu.predict(image)) > 0.99
    assert gpu.clf.feature_importances_.shape == (len(gpu.clf.feature_names_),)
