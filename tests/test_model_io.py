import io
import json
import pickle
import zipfile

import numpy as np
import pytest

import gpuseg
from gpuseg.model_io import FORMAT_VERSION


def test_round_trip_predicts_identically(small_model, mosaic, tmp_path):
    path = small_model.save(tmp_path / "m")
    assert path.name == "m.gpuseg"
    loaded = gpuseg.load(path, backend="cpu")
    np.testing.assert_array_equal(loaded.classes_, small_model.classes_)
    np.testing.assert_array_equal(loaded.predict(mosaic[0]), small_model.predict(mosaic[0]))
    np.testing.assert_array_equal(loaded.predict_proba(mosaic[0]), small_model.predict_proba(mosaic[0]))
    assert loaded.feature_params == small_model.feature_params


def test_file_holds_only_json_and_numeric_arrays(small_model, tmp_path):
    path = small_model.save(tmp_path / "m.gpuseg")
    with zipfile.ZipFile(path) as zf:
        names = sorted(zf.namelist())
        meta = json.loads(zf.read("gpuseg.json"))
    assert names == sorted(["gpuseg.json", "child.npy", "feature.npy", "threshold.npy", "value.npy",
                            "roots.npy", "depth.npy", "impurity_decrease.npy"])
    assert meta["format_version"] == FORMAT_VERSION and meta["classes"] == [1, 2, 3]
    assert meta["features"]["sigma_max"] == 4 and "gpuseg_version" in meta


class _Boom:
    def __reduce__(self):
        return (open, ("/tmp/gpuseg-pickle-was-executed", "w"))


def test_pickle_is_refused_and_not_executed(tmp_path):
    marker = "/tmp/gpuseg-pickle-was-executed"
    import os

    if os.path.exists(marker):
        os.unlink(marker)
    path = tmp_path / "evil.gpuseg"
    path.write_bytes(pickle.dumps(_Boom()))
    with pytest.raises(ValueError, match="pickle"):
        gpuseg.load(path)
    assert not os.path.exists(marker)


def _rewrite(src, dst, edit):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            data = edit(name, zin.read(name))
            if data is not None:
                zout.writestr(name, data)


def test_foreign_truncated_and_tampered_files(small_model, tmp_path):
    good = small_model.save(tmp_path / "good.gpuseg")
    cases = {}
    (tmp_path / "text.gpuseg").write_text("hello")
    cases["text.gpuseg"] = "not a ZIP"
    (tmp_path / "trunc.gpuseg").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    cases["trunc.gpuseg"] = "corrupt or truncated"
    with zipfile.ZipFile(tmp_path / "foreign.gpuseg", "w") as zf:
        zf.writestr("something.txt", "x")
    cases["foreign.gpuseg"] = "no gpuseg.json"
    _rewrite(good, tmp_path / "future.gpuseg",
             lambda n, d: json.dumps({**json.loads(d), "format_version": 99}).encode() if n == "gpuseg.json" else d)
    cases["future.gpuseg"] = "format version 99"
    _rewrite(good, tmp_path / "missing.gpuseg", lambda n, d: None if n == "value.npy" else d)
    cases["missing.gpuseg"] = "value.npy is missing"

    def bad_child(name, data):
        if name != "child.npy":
            return data
        import io

        arr = np.load(io.BytesIO(data))
        arr[0] = 10**6
        buf = io.BytesIO()
        np.save(buf, arr)
        return buf.getvalue()

    _rewrite(good, tmp_path / "nan.gpuseg",
             lambda n, d: _npy(np.full(np.load(io.BytesIO(d)).shape, np.nan)) if n == "impurity_decrease.npy" else d)
    cases["nan.gpuseg"] = "impurity_decrease must be finite"
    _rewrite(good, tmp_path / "oob.gpuseg", bad_child)
    cases["oob.gpuseg"] = "child index is out of range"

    def object_array(name, data):
        if name != "value.npy":
            return data
        import io

        buf = io.BytesIO()
        np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        return buf.getvalue()

    _rewrite(good, tmp_path / "objects.gpuseg", object_array)
    cases["objects.gpuseg"] = "pickle|Object arrays"
    for name, match in cases.items():
        with pytest.raises(ValueError, match=match):
            gpuseg.load(tmp_path / name)


def test_file_without_impurity_data_loads_without_importances(small_model, tmp_path):
    """A model file from before gpuseg stored impurity decreases: it predicts; importances say why not."""
    _rewrite(small_model.save(tmp_path / "new"), tmp_path / "old.gpuseg",
             lambda n, d: None if n == "impurity_decrease.npy" else d)
    seg = gpuseg.load(tmp_path / "old.gpuseg", backend="cpu")
    image = np.zeros((20, 20), np.uint8)
    np.testing.assert_array_equal(seg.predict(image), small_model.predict(image))
    assert seg.feature_names_ == small_model.feature_names_
    with pytest.raises(AttributeError, match="Re-train the model"):
        seg.feature_importances_


def _npy(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def test_missing_file():
    with pytest.raises(FileNotFoundError):
        gpuseg.load("/nonexistent/model.gpuseg")


def test_save_is_atomic_and_replaces(small_model, tmp_path):
    path = tmp_path / "m.gpuseg"
    path.write_text("old")
    small_model.save(path)
    gpuseg.load(path)
    assert [p.name for p in tmp_path.iterdir()] == ["m.gpuseg"]  # no temp file left behind
