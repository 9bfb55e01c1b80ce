"""Auto-context: cross-fitting folds, the second stage's inputs, tiled == whole, model files."""

import numpy as np
import pytest

import gpuseg
from gpuseg import _cpu, autocontext
from gpuseg.features import FeatureParams


@pytest.fixture(scope="module")
def ac_model(mosaic):
    image, _, scribbles = mosaic
    return gpuseg.Segmenter(backend="cpu", sigma_max=4, n_estimators=8, random_state=0,
                            auto_context=True).fit(image, scribbles)


def test_folds_are_blocks_and_touching_blocks_differ():
    b = autocontext.FOLD_BLOCK
    rows, cols = np.meshgrid(np.arange(0, 4 * b, b), np.arange(0, 4 * b, b), indexing="ij")
    f = autocontext.folds((rows.ravel(), cols.ravel())).reshape(rows.shape)
    assert set(np.unique(f)) == set(range(autocontext.N_FOLDS))
    assert np.all(f[1:] != f[:-1]) and np.all(f[:, 1:] != f[:, :-1])
    assert autocontext.folds((np.array([0, b - 1]), np.array([0, b - 1]))).tolist() == [0, 0]


def test_label_folds_follow_c_order(rng):
    labels = (rng.random((300, 200)) < 0.01).astype(np.uint8)
    assert np.array_equal(autocontext.label_folds(labels, rows_per_read=7), autocontext.folds(np.nonzero(labels)))


def test_fold_training_leaves_each_fold_out():
    y = np.array([0, 1, 0, 1, 0, 1])
    fold = np.array([0, 0, 1, 1, 2, 2])
    plans = autocontext.fold_training(y, fold)
    for f, (rows, classes) in enumerate(plans):
        assert np.array_equal(rows, fold != f) and classes.tolist() == [0, 1]
    # leaving fold 0 out leaves one class; fold 2 has no rows: both get the full first stage
    lonely = autocontext.fold_training(np.array([0, 1, 1, 0, 1]), np.array([0, 1, 1, 0, 1]))
    assert lonely[0] is None and lonely[1] is None and lonely[2] is None
    mixed = autocontext.fold_training(np.array([0, 1, 1, 0, 1]), np.array([0, 1, 1, 0, 2]))
    assert mixed[0] is None and mixed[1] is not None and mixed[2] is not None


def test_context_features_smooth_each_class(rng):
    proba = rng.random((30, 40, 2), dtype=np.float32)
    params = FeatureParams()
    out = list(autocontext.context_features(proba, params, _cpu))
    assert len(out) == autocontext.n_context(2)
    np.testing.assert_array_equal(out[1], _cpu.gaussian(np.ascontiguousarray(proba[..., 0]),
                                                        autocontext.CONTEXT_SIGMAS[1]))


def test_second_stage_reads_features_and_context(ac_model):
    K = ac_model.classes_.size
    assert ac_model.context_forest_.n_features == ac_model.n_features_in_ + autocontext.n_context(K)
    assert ac_model.predictor().halo == ac_model.feature_params.halo() + autocontext.context_radius()


@pytest.mark.parametrize("tile_shape", [(50, 70), (192, 40)])
def test_auto_context_tiled_equals_whole(ac_model, mosaic, tile_shape):
    image = mosaic[0]
    whole = ac_model.predict_proba(image, tile_shape=image.shape)
    np.testing.assert_array_equal(ac_model.predict_proba(image, tile_shape=tile_shape), whole)


def test_fit_does_not_depend_on_tiles(mosaic, ac_model):
    image, _, scribbles = mosaic
    other = gpuseg.Segmenter(backend="cpu", sigma_max=4, n_estimators=8, random_state=0,
                             auto_context=True).fit(image, scribbles, tile_shape=(64, 100))
    np.testing.assert_array_equal(other.predict(image), ac_model.predict(image))


def test_auto_context_model_file_round_trip(ac_model, mosaic, tmp_path):
    path = ac_model.save(tmp_path / "ac")
    loaded = gpuseg.load(path, backend="cpu")
    assert loaded.auto_context and loaded.context_forest_.n_features == ac_model.context_forest_.n_features
    np.testing.assert_array_equal(loaded.predict_proba(mosaic[0]), ac_model.predict_proba(mosaic[0]))


def test_feature_stacks_are_refused(ac_model, mosaic):
    features = gpuseg.multiscale_features(mosaic[0], sigma_max=4, backend="cpu")
    with pytest.raises(ValueError, match="auto-context"):
        ac_model.predict_proba_features(features)


def test_dask_and_zarr_outputs_equal_in_memory_prediction(ac_model, mosaic, tmp_path):
    import dask.array as da
    import zarr

    from gpuseg.stream import predict_to_zarr

    image = mosaic[0]
    expected = ac_model.predict(image)
    np.testing.assert_array_equal(ac_model.predict(da.from_array(image, chunks=(70, 80))).compute(), expected)
    np.save(tmp_path / "img.npy", image)
    predict_to_zarr(ac_model, tmp_path / "img.npy", tmp_path / "out.zarr", tile_shape=(64, 50), progress=False)
    node = zarr.open(str(tmp_path / "out.zarr"), mode="r")
    np.testing.assert_array_equal((node if isinstance(node, zarr.Array) else node["0"])[:], expected)


@pytest.mark.parametrize("change", [{"context_n_features": 3}, {"context_n_features": -1}, {"context_n_features": 999}])
def test_a_second_forest_that_disagrees_is_refused(ac_model, tmp_path, change):
    import json
    import zipfile

    path = ac_model.save(tmp_path / "ac")
    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    meta = {**json.loads(members["gpuseg.json"]), **change}
    members["gpuseg.json"] = json.dumps(meta).encode()
    with zipfile.ZipFile(tmp_path / "bad.gpuseg", "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    with pytest.raises(ValueError, match="context_n_features|Invalid forest|two forests disagree"):
        gpuseg.load(tmp_path / "bad.gpuseg", backend="cpu")
