"""Hostile model files: every one refused with a ValueError, quickly and in bounded memory."""

import io
import json
import signal
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

import gpuseg

BUDGET = 64 * 2**20  # bytes a refusal may allocate
N_FUZZ = 600


@pytest.fixture(scope="module")
def good_bytes(tmp_path_factory):
    from gpuseg import Segmenter

    rng = np.random.default_rng(0)
    image = rng.random((32, 32), dtype=np.float32)
    labels = np.zeros((32, 32), np.uint8)
    labels[2:6, 2:30], labels[20:24, 2:30], labels[12:14, 2:30] = 1, 2, 3
    seg = Segmenter(backend="cpu", sigma_max=2, n_estimators=3, max_depth=4, random_state=0).fit(image, labels)
    return seg.save(tmp_path_factory.mktemp("model") / "m.gpuseg").read_bytes()


def _members(data: bytes) -> dict:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def _zip(members: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _with_meta(good: bytes, **changes) -> bytes:
    members = _members(good)
    meta = json.loads(members["gpuseg.json"])
    for key, value in changes.items():
        target, _, sub = key.partition("__")
        if sub:
            meta[target][sub] = value
        else:
            meta[target] = value
    members["gpuseg.json"] = json.dumps(meta).encode()
    return _zip(members)


def _npy(array=None, *, header_shape=None, dtype="<i4", body=b"") -> bytes:
    buf = io.BytesIO()
    if array is not None:
        np.save(buf, array, allow_pickle=False)
        return buf.getvalue()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": header_shape})
    return buf.getvalue() + body


class _Hang(Exception):
    pass


def _load(tmp_path, data: bytes, name="x.gpuseg", seconds=5):
    """gpuseg.load on ``data``; a load running past ``seconds`` fails the test instead of hanging it."""
    path = tmp_path / name
    path.write_bytes(data)

    def on_alarm(*_):
        raise _Hang(f"loading {name} took over {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return gpuseg.load(path, backend="cpu")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


# -- fuzzing -----------------------------------------------------------------------
HOSTILE_VALUES = [-1, 0, 2**63, 2**64 - 1, 10**30, 1e308, float("nan"), "x", None, True, [], {}, [1], [[1]],
                  [2, 1], [1, 1], [-3, 5], [1, 2, 10**9], [1, 2**63], 2**20, 1e-300, 10**9]
META_KEYS = ["classes", "ndim", "n_channels", "n_features", "channel_axis", "features", "forest_params",
             "features__sigma_min", "features__sigma_max", "features__num_sigma", "features__intensity",
             "forest_params__class_weight", "forest_params__n_estimators", "format_version"]


def _mutations(good: bytes, n: int, seed: int = 0):
    """``n`` seeded mutations of a good model file, in three families of a third each."""
    rng = np.random.default_rng(seed)
    members = _members(good)
    names = sorted(members)
    for i in range(n):
        family = i % 3
        if family == 0:  # the file's bytes: flips, truncation, insertion, a repeated chunk
            data = bytearray(good)
            op = rng.integers(4)
            if op == 0:
                for pos in rng.integers(0, len(data), rng.integers(1, 8)):
                    data[pos] ^= 1 << int(rng.integers(8))
            elif op == 1:
                data = data[: rng.integers(0, len(data))]
            elif op == 2:
                pos = int(rng.integers(0, len(data)))
                data[pos:pos] = rng.bytes(int(rng.integers(1, 64)))
            else:
                a = int(rng.integers(0, len(data) - 64))
                data += data[a:a + 64] * int(rng.integers(1, 100))
            yield bytes(data)
        elif family == 1:  # a member's bytes, re-zipped with a valid checksum: headers and data reach the parser
            name = names[rng.integers(len(names))]
            content = bytearray(members[name])
            limit = min(len(content), 128) if rng.random() < 0.7 else len(content)  # headers more often
            for pos in rng.integers(0, limit, rng.integers(1, 4)):
                content[pos] = int(rng.integers(256))
            yield _zip({**members, name: bytes(content)})
        else:  # the metadata's values
            key = META_KEYS[rng.integers(len(META_KEYS))]
            value = HOSTILE_VALUES[rng.integers(len(HOSTILE_VALUES))]
            yield _with_meta(good, **{key: value})


def test_fuzzed_model_files_raise_only_value_error(good_bytes, tmp_path):
    refused, loaded, start = 0, 0, time.perf_counter()
    for i, data in enumerate(_mutations(good_bytes, N_FUZZ)):
        try:
            seg = _load(tmp_path, data, f"fuzz{i % 10}.gpuseg")
        except ValueError:
            refused += 1
            continue
        loaded += 1  # a harmless mutation (a flipped bit in a threshold, say): the model must be sound
        assert np.all(np.diff(seg.classes_) > 0) and seg.classes_[0] >= 1
        assert seg.forest_.value.shape[1] == seg.classes_.size
    elapsed = time.perf_counter() - start
    print(f"fuzzed model files: {N_FUZZ} tried, {refused} refused with ValueError, {loaded} loaded soundly, "
          f"{elapsed:.1f} s")
    assert refused + loaded == N_FUZZ and refused >= 0.7 * N_FUZZ  # the rest: bytes no reader looks at


# -- bombs and huge declarations ---------------------------------------------------
def test_npy_header_declaring_billions_of_elements_is_refused_before_allocating(good_bytes, tmp_path):
    members = _members(good_bytes)
    members["child.npy"] = _npy(header_shape=(1_600_000_000,))
    data = _zip(members)
    peak = _peak_bytes(lambda: pytest.raises(ValueError, _load, tmp_path, data))
    assert peak < BUDGET


def test_consistent_huge_forest_is_refused_by_size_before_inflating(good_bytes, tmp_path):
    members = _members(good_bytes)
    n, k = 2**27, 3
    for name in ("child", "feature"):
        members[f"{name}.npy"] = _npy(header_shape=(n,))
    members["threshold.npy"] = _npy(header_shape=(n,), dtype="<f4")
    members["value.npy"] = _npy(header_shape=(n, k), dtype="<f4")
    members["impurity_decrease.npy"] = _npy(header_shape=(n,), dtype="<f8")
    data = _zip(members)
    with pytest.raises(ValueError, match="over the limit"):
        _load(tmp_path, data)


def test_decompression_bomb_member_is_refused_without_inflating_it(good_bytes, tmp_path):
    """child.npy declares 64 Mi nodes and really inflates to 256 MB of zeros: nothing near that is allocated."""
    members = _members(good_bytes)
    path = tmp_path / "bomb.gpuseg"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, content in members.items():
            if name != "child.npy":
                zf.writestr(name, content)
        with zf.open("child.npy", "w", force_zip64=True) as f:
            f.write(_npy(header_shape=(2**26,)))
            zeros = bytes(2**22)
            for _ in range(64):
                f.write(zeros)
    assert path.stat().st_size < 2**20
    peak = _peak_bytes(lambda: pytest.raises(ValueError, gpuseg.load, path))
    assert peak < BUDGET


def test_member_longer_than_its_header_declares_is_refused(good_bytes, tmp_path):
    members = _members(good_bytes)
    members["child.npy"] += bytes(1000)
    with pytest.raises(ValueError, match="header declares"):
        _load(tmp_path, _zip(members))


def test_deeply_nested_json_is_refused(good_bytes, tmp_path):
    members = _members(good_bytes)
    members["gpuseg.json"] = b"[" * 200_000 + b"]" * 200_000
    with pytest.raises(ValueError):
        _load(tmp_path, _zip(members))


# -- metadata that would mislead -----------------------------------------------------
@pytest.mark.parametrize("classes", [[1, 2, 2**63], [1, 2, 2**64 - 1], [-1, 1, 2], [1, 1, 2], [3, 2, 1],
                                     [0, 1, 2], [1.0, 2.0, 3.0], [1, 2]])
def test_bad_classes_are_refused(good_bytes, tmp_path, classes):
    with pytest.raises(ValueError, match="classes"):
        _load(tmp_path, _with_meta(good_bytes, classes=classes))


def test_probability_rows_must_sum_to_one(good_bytes, tmp_path):
    members = _members(good_bytes)
    value = np.load(io.BytesIO(members["value.npy"]))
    value[0] *= 3
    members["value.npy"] = _npy(value)
    with pytest.raises(ValueError, match="sum to 1"):
        _load(tmp_path, _zip(members))


@pytest.mark.parametrize("change", [{"features__sigma_max": 2.0**20}, {"features__num_sigma": 10**9},
                                    {"features__sigma_min": 1e-300}])
def test_feature_settings_too_costly_to_predict_with_are_refused(good_bytes, tmp_path, change):
    start = time.perf_counter()
    with pytest.raises(ValueError, match="sigma"):
        _load(tmp_path, _with_meta(good_bytes, **change))
    assert time.perf_counter() - start < 2


def test_large_but_sound_class_values_still_load(good_bytes, tmp_path):
    seg = _load(tmp_path, _with_meta(good_bytes, classes=[1, 2, 10**9]))
    assert seg.label_dtype == np.uint32


# -- labels --------------------------------------------------------------------------
@pytest.mark.parametrize("value, dtype", [(2**64 - 1, np.uint64), (2**63, np.uint64), (1e20, np.float64),
                                          (2.0**63, np.float64)])
def test_labels_beyond_int64_are_refused_not_dropped(value, dtype):
    image = np.random.default_rng(0).random((16, 16), dtype=np.float32)
    labels = np.zeros((16, 16), dtype)
    labels[2, 2:10], labels[8, 2:10] = 1, value
    with pytest.raises(ValueError, match="at most 2\\*\\*63 - 1"):
        gpuseg.Segmenter(backend="cpu", sigma_max=1, n_estimators=2).fit(image, labels)


def test_labels_as_nested_lists_train():
    image = np.random.default_rng(0).random((16, 16), dtype=np.float32)
    labels = np.zeros((16, 16), np.int64)
    labels[2, 2:10], labels[8, 2:10] = 1, 2
    seg = gpuseg.Segmenter(backend="cpu", sigma_max=1, n_estimators=2, random_state=0).fit(image, labels.tolist())
    np.testing.assert_array_equal(seg.classes_, [1, 2])


def test_every_forest_array_has_a_bounded_reader():
    from gpuseg._model_checks import _ARRAYS
    from gpuseg.forest import Forest

    assert set(_ARRAYS) == set(Forest.ARRAYS + Forest.OPTIONAL_ARRAYS)
