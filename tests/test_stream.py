"""Reading images lazily, streaming predictions to Zarr, resuming after a kill, whole-file outputs."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
import zarr

import gpuseg
from gpuseg import Segmenter
from gpuseg.predictor import Predictor
from gpuseg.stream import DONE_DIR, model_fingerprint, open_image, predict_to_file, predict_to_zarr

SHAPE = (128, 144)


def _fit(image, labels, seed=0):
    return Segmenter(backend="cpu", sigma_max=4, n_estimators=10, max_depth=8, random_state=seed).fit(image, labels)


@pytest.fixture(scope="module")
def scene():
    rng = np.random.default_rng(0)
    image = rng.normal(0, 0.3, SHAPE).astype(np.float32)
    image[:, 70:] += 1
    image[40:60, 20:50] += 2
    labels = np.zeros(SHAPE, np.uint8)
    labels[2:5, 5:60] = 1
    labels[-5:-2, 80:140] = 2
    labels[45:55, 25:45] = 3
    seg = _fit(image, labels)
    proba = seg.predict_proba(image, progress=False)
    return seg, image, proba, seg.classes_[proba.argmax(axis=-1)].astype(seg.label_dtype)


@pytest.fixture(scope="module")
def model_file(scene, tmp_path_factory):
    return scene[0].save(tmp_path_factory.mktemp("model") / "model.gpuseg")


def _ome_zarr(path, image, version):
    """A two-level OME-Zarr image (0.5 on Zarr v3, 0.4 on Zarr v2) with a scale."""
    axes = [{"name": n, "type": "space", "unit": "micrometer"} for n in "yx"]
    datasets = [{"path": str(i), "coordinateTransformations": [{"type": "scale", "scale": [0.5 * 2**i, 0.25 * 2**i]}]}
                for i in range(2)]
    multiscales = [{"version": version, "axes": axes, "datasets": datasets}] if version == "0.4" else [
        {"axes": axes, "datasets": datasets}]
    attrs = {"multiscales": multiscales} if version == "0.4" else {"ome": {"version": version, "multiscales": multiscales}}
    group = zarr.create_group(str(path), zarr_format=2 if version == "0.4" else 3, attributes=attrs)
    group.create_array("0", data=image, chunks=(50, 50))
    group.create_array("1", data=image[::2, ::2], chunks=(50, 50))
    return path


# -- reading ----------------------------------------------------------------------
def test_open_image_formats(scene, tmp_path):
    image = scene[1]
    np.save(tmp_path / "a.npy", image)
    tifffile.imwrite(tmp_path / "strips.tif", image)
    tifffile.imwrite(tmp_path / "tiled.tif", image, tile=(64, 64))
    zarr.create_array(str(tmp_path / "array.zarr"), data=image, chunks=(40, 40))
    zarr.create_group(str(tmp_path / "group.zarr")).create_array("raw", data=image)
    _ome_zarr(tmp_path / "v05.ome.zarr", image, "0.5")
    _ome_zarr(tmp_path / "v04.ome.zarr", image, "0.4")
    expected = {
        "a.npy": np.memmap, "strips.tif": np.ndarray, "tiled.tif": zarr.Array, "array.zarr": zarr.Array,
        "group.zarr": zarr.Array, "v05.ome.zarr": zarr.Array, "v04.ome.zarr": zarr.Array,
    }
    for name, kind in expected.items():
        opened = open_image(tmp_path / name)
        assert isinstance(opened, kind), name
        np.testing.assert_array_equal(opened[:], image, err_msg=name)
    picture = (np.arange(60 * 70) % 251).astype(np.uint8).reshape(60, 70)
    iio.imwrite(tmp_path / "p.png", picture)
    np.testing.assert_array_equal(open_image(tmp_path / "p.png"), picture)


def test_open_image_refuses(tmp_path):
    with pytest.raises(FileNotFoundError):
        open_image(tmp_path / "missing.npy")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ValueError, match="gpuseg reads"):
        open_image(tmp_path / "notes.txt")
    group = zarr.create_group(str(tmp_path / "two.zarr"))
    group.create_array("a", shape=(5, 5), dtype="u1")
    group.create_array("b", shape=(5, 5), dtype="u1")
    with pytest.raises(ValueError, match="2 arrays"):
        open_image(tmp_path / "two.zarr")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a Zarr"):
        open_image(tmp_path / "empty")


# -- streaming to Zarr ----------------------------------------------------------------
@pytest.mark.parametrize("proba", [False, True])
def test_predict_to_zarr_equals_predict(scene, tmp_path, proba):
    seg, image, expected_proba, expected_labels = scene
    np.save(tmp_path / "in.npy", image)
    out = predict_to_zarr(seg, tmp_path / "in.npy", tmp_path / "out.zarr", proba=proba, tile_shape=(48, 40),
                          progress=False)
    group = zarr.open_group(str(out), mode="r")
    result = group["0"]
    assert result.chunks == ((3, 48, 40) if proba else (48, 40))
    assert result.compressors  # compressed
    assert not (out / "0" / DONE_DIR).exists()  # markers go when complete
    if proba:
        assert result.dtype == np.float32
        np.testing.assert_allclose(np.moveaxis(result[:], 0, -1), expected_proba, rtol=0, atol=1e-6)
    else:
        assert result.dtype == seg.label_dtype
        np.testing.assert_array_equal(result[:], expected_labels)
    assert group.attrs["gpuseg"]["model"] == model_fingerprint(seg)


def test_zarr_and_tiff_inputs(scene, tmp_path):
    seg, image, _, expected = scene
    zarr.create_array(str(tmp_path / "in.zarr"), data=image, chunks=(30, 70))
    tifffile.imwrite(tmp_path / "in.tif", image, tile=(32, 32))
    for name in ("in.zarr", "in.tif"):
        out = predict_to_zarr(seg, tmp_path / name, tmp_path / f"{name}.out.zarr", tile_shape=(64, 64), progress=False)
        np.testing.assert_array_equal(open_image(out)[:], expected)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
@pytest.mark.parametrize("proba", [False, True])
def test_ome_zarr_in_ome_zarr_out(scene, tmp_path, version, proba):
    seg, image, expected_proba, expected_labels = scene
    source = _ome_zarr(tmp_path / "in.ome.zarr", image, version)
    out = predict_to_zarr(seg, source, tmp_path / "out.ome.zarr", proba=proba, tile_shape=(64, 72), progress=False)
    group = zarr.open_group(str(out), mode="r")
    ome = group.attrs["ome"]
    assert ome["version"] == "0.5"
    (multiscale,) = ome["multiscales"]
    names = [a["name"] for a in multiscale["axes"]]
    dataset = multiscale["datasets"][0]
    scale = dataset["coordinateTransformations"][0]["scale"]
    if proba:
        assert names == ["c", "y", "x"] and scale == [1.0, 0.5, 0.25]
        np.testing.assert_allclose(np.moveaxis(group[dataset["path"]][:], 0, -1), expected_proba, rtol=0, atol=1e-6)
    else:
        assert names == ["y", "x"] and scale == [0.5, 0.25]
        np.testing.assert_array_equal(group[dataset["path"]][:], expected_labels)
    assert open_image(out).shape == group["0"].shape


@pytest.mark.parametrize("ome", [False, True])
def test_memory_urls_round_trip(scene, ome, monkeypatch):
    """A Zarr input and the output both as memory:// URLs (one process: fsspec's memory is per process)."""
    import fsspec

    seg, image, _, labels = scene
    root = f"memory://gpuseg-round-trip-{ome}"
    if ome:
        _ome_zarr(f"{root}/in.ome.zarr", image, "0.5")
    else:
        zarr.create_array(f"{root}/in.zarr", data=image, chunks=(40, 40))
    src = f"{root}/in.ome.zarr" if ome else f"{root}/in.zarr"
    out = predict_to_zarr(seg, src, f"{root}/out.zarr", tile_shape=(32, 32), progress=False)
    assert out == f"{root}/out.zarr"
    np.testing.assert_array_equal(open_image(out)[:], labels)
    fs = fsspec.filesystem("memory")
    done = f"/gpuseg-round-trip-{ome}/out.zarr/0/{DONE_DIR}"
    assert not fs.exists(done)  # markers go when complete
    # as if killed before its last tile: the markers of all tiles but one, not complete
    group = zarr.open_group(out, mode="r+")
    group.attrs["gpuseg"] = {**group.attrs["gpuseg"], "complete": False}
    for marker in [f"{i}.{j}" for i in range(4) for j in range(5)][1:]:
        fs.touch(f"{done}/{marker}")
    assert len(fs.ls(done)) == 4 * 5 - 1  # one tile lost: the resumed run computes it, and only it, again
    calls = []
    real = Predictor.classify
    monkeypatch.setattr(Predictor, "classify", lambda *a, **k: calls.append(1) or real(*a, **k))
    predict_to_zarr(seg, src, out, progress=False)
    assert len(calls) == 1
    assert not fs.exists(done)
    assert zarr.open_group(out, mode="r").attrs["gpuseg"]["complete"]
    assert zarr.open(out, mode="r").attrs["gpuseg"]["input"]["path"] == src
    np.testing.assert_array_equal(open_image(out)[:], labels)
    fs.rm(f"/gpuseg-round-trip-{ome}", recursive=True)


def test_credentials_in_urls_refused(scene):
    with pytest.raises(ValueError, match="environment"):
        predict_to_zarr(scene[0], scene[1], "s3://key:secret@bucket/out.zarr", progress=False)


def test_ome_zarr_channels_are_dropped(scene, tmp_path):
    _, image, _, labels = scene
    stacked = np.stack([image, image[::-1]])  # (c, y, x)
    seg = Segmenter(backend="cpu", sigma_max=2, n_estimators=5, random_state=0, channel_axis=0).fit(stacked, labels)
    axes = [{"name": "c", "type": "channel"}] + [{"name": n, "type": "space"} for n in "yx"]
    scale = [{"type": "scale", "scale": [3.0, 0.5, 0.25]}]  # the channel entry goes
    attrs = {"ome": {"version": "0.5", "multiscales": [
        {"axes": axes, "datasets": [{"path": "s0", "coordinateTransformations": scale}]}]}}
    zarr.create_group(str(tmp_path / "in.ome.zarr"), attributes=attrs).create_array("s0", data=stacked)
    out = predict_to_zarr(seg, tmp_path / "in.ome.zarr", tmp_path / "out.ome.zarr", proba=True, progress=False)
    (multiscale,) = zarr.open_group(str(out), mode="r").attrs["ome"]["multiscales"]
    assert [a["name"] for a in multiscale["axes"]] == ["c", "y", "x"]
    assert multiscale["datasets"][0]["coordinateTransformations"][0]["scale"] == [1.0, 0.5, 0.25]
    np.testing.assert_allclose(np.moveaxis(open_image(out)[:], 0, -1), seg.predict_proba(stacked, progress=False),
                               rtol=0, atol=1e-6)


def test_fingerprint_survives_save_and_load(scene, model_file):
    seg, image, _, labels = scene
    assert model_fingerprint(gpuseg.load(model_file, backend="cpu")) == model_fingerprint(seg)
    assert model_fingerprint(_fit(image, labels, seed=1)) != model_fingerprint(seg)


def test_overwrite_guard(scene, tmp_path):
    seg, image, _, labels = scene
    out = tmp_path / "out.zarr"
    predict_to_zarr(seg, image, out, tile_shape=(64, 64), progress=False)
    other_model = _fit(image, labels, seed=1)
    refused = [
        dict(segmenter=other_model, image=image),
        dict(segmenter=seg, image=image[:, :100]),
        dict(segmenter=seg, image=image, proba=True),
    ]
    for kwargs in refused:
        with pytest.raises(ValueError, match="--overwrite"):
            predict_to_zarr(out_path=out, progress=False, **kwargs)
    with pytest.raises(ValueError, match="--overwrite"):
        predict_to_zarr(seg, image, out, tile_shape=(32, 32), progress=False)
    predict_to_zarr(seg, image, out, progress=False)  # the same job: resumed, nothing to do
    out2 = predict_to_zarr(other_model, image, out, overwrite=True, progress=False)
    np.testing.assert_array_equal(open_image(out2)[:], other_model.predict(image, progress=False))
    (tmp_path / "plain").mkdir()
    with pytest.raises(ValueError, match="--overwrite"):
        predict_to_zarr(seg, image, tmp_path / "plain", progress=False)


KILLED_RUN = """
import sys, time
import gpuseg, gpuseg.stream as stream
from gpuseg.predictor import Predictor
real = Predictor.classify

def slow(*args, **kwargs):
    time.sleep(0.05)
    return real(*args, **kwargs)

Predictor.classify = slow
Predictor.default_tile_shape = lambda self, spatial, n_features: (48, 48)  # blocks of 3 x 3 chunks
seg = gpuseg.load(sys.argv[1], backend="cpu")
stream.predict_to_zarr(seg, sys.argv[2], sys.argv[3], tile_shape=(16, 16), progress=False)
"""


def test_resume_after_sigkill(scene, model_file, tmp_path, monkeypatch):
    seg, image, _, expected = scene
    np.save(tmp_path / "in.npy", image)
    out = tmp_path / "out.zarr"
    n_tiles = 8 * 9
    (tmp_path / "run.py").write_text(textwrap.dedent(KILLED_RUN))
    proc = subprocess.Popen([sys.executable, str(tmp_path / "run.py"), str(model_file), str(tmp_path / "in.npy"),
                             str(out)])
    try:
        deadline = time.monotonic() + 180  # the first import may compile the numba kernels
        while not (out / "0" / DONE_DIR).is_dir() or len(os.listdir(out / "0" / DONE_DIR)) < 8:
            assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    markers = {m: (out / "0" / DONE_DIR / m).stat().st_mtime_ns for m in os.listdir(out / "0" / DONE_DIR)}
    chunks = {m: (out / "0" / "c" / m.replace(".", "/")).stat().st_mtime_ns for m in markers}
    assert 8 <= len(markers) < n_tiles
    # a half-written chunk of an unfinished tile (zarr writes atomically, but a crash may not be so kind)
    unfinished = next(f"{i}.{j}" for i in range(8) for j in range(9) if f"{i}.{j}" not in markers)
    torn = out / "0" / "c" / unfinished.replace(".", "/")
    torn.parent.mkdir(parents=True, exist_ok=True)
    torn.write_bytes(b"\x00garbage")

    calls = []
    real = Predictor.classify
    monkeypatch.setattr(Predictor, "classify", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(Predictor, "default_tile_shape", lambda self, spatial, n_features: (48, 48))
    predict_to_zarr(gpuseg.load(model_file, backend="cpu"), tmp_path / "in.npy", out, progress=False)
    unmarked = {(i // 3, j // 3) for i in range(8) for j in range(9) if f"{i}.{j}" not in markers}
    assert len(calls) == len(unmarked)  # blocks whose chunks are all finished are not recomputed
    assert {m: (out / "0" / "c" / m.replace(".", "/")).stat().st_mtime_ns for m in markers} == chunks
    assert not (out / "0" / DONE_DIR).exists()

    whole = predict_to_zarr(seg, tmp_path / "in.npy", tmp_path / "whole.zarr", tile_shape=(16, 16), progress=False)
    resumed, uninterrupted = zarr.open_group(str(out), mode="r"), zarr.open_group(str(whole), mode="r")
    np.testing.assert_array_equal(resumed["0"][:], uninterrupted["0"][:])
    np.testing.assert_array_equal(resumed["0"][:], expected)
    assert dict(resumed.attrs) == dict(uninterrupted.attrs) | {"gpuseg": {
        **uninterrupted.attrs["gpuseg"], "input": resumed.attrs["gpuseg"]["input"]}}


def _count_classified(monkeypatch) -> list:
    """The shapes of the regions ``Predictor.classify`` is asked for, from now on."""
    crops, real = [], Predictor.classify
    monkeypatch.setattr(Predictor, "classify", lambda self, block, crop, kind: crops.append(
        tuple(c.stop - c.start for c in crop)) or real(self, block, crop, kind))
    return crops


@pytest.mark.parametrize("proba", [False, True])
def test_blocks_of_chunks_equal_predict(scene, tmp_path, monkeypatch, proba):
    """Chunks are classified in blocks as large as the memory budget's tile; the output stays chunked by tiles."""
    seg, image, expected_proba, expected_labels = scene
    np.save(tmp_path / "in.npy", image)
    monkeypatch.setattr(Predictor, "default_tile_shape", lambda self, spatial, n_features: (50, 100))
    crops = _count_classified(monkeypatch)
    out = predict_to_zarr(seg, tmp_path / "in.npy", tmp_path / "out.zarr", proba=proba, tile_shape=(16, 24),
                          progress=False)
    # 8 x 6 chunks; at most 3 x 4 per block: 3 x 2 blocks of 3 (or 2) x 3 chunks
    assert crops == [(48, 72), (48, 72), (48, 72), (48, 72), (32, 72), (32, 72)]
    result = zarr.open_group(str(out), mode="r")["0"]
    assert result.chunks == ((3, 16, 24) if proba else (16, 24))
    if proba:
        np.testing.assert_allclose(np.moveaxis(result[:], 0, -1), expected_proba, rtol=0, atol=1e-6)
    else:
        np.testing.assert_array_equal(result[:], expected_labels)


def test_a_block_interrupted_between_chunks_resumes(scene, tmp_path, monkeypatch):
    """A run stopped after some chunks of a block: the rerun classifies the rest of that block, writes only its
    unfinished chunks, and skips the blocks already done."""
    from fsspec.implementations.local import LocalFileSystem

    seg, image, _, expected = scene
    np.save(tmp_path / "in.npy", image)
    out = tmp_path / "out.zarr"
    monkeypatch.setattr(Predictor, "default_tile_shape", lambda self, spatial, n_features: (48, 48))
    real_touch, touched = LocalFileSystem.touch, []

    def touch_then_stop(self, path, *args, **kwargs):
        if len(touched) == 9 + 4:  # the first block of 3 x 3 chunks, then 4 chunks of the second
            raise KeyboardInterrupt
        touched.append(path.rsplit("/", 1)[-1])
        return real_touch(self, path, *args, **kwargs)

    monkeypatch.setattr(LocalFileSystem, "touch", touch_then_stop)
    with pytest.raises(KeyboardInterrupt):
        predict_to_zarr(seg, tmp_path / "in.npy", out, tile_shape=(16, 16), progress=False)
    monkeypatch.setattr(LocalFileSystem, "touch", real_touch)
    assert sorted(os.listdir(out / "0" / DONE_DIR)) == sorted(touched)
    assert touched[9:] == ["0.3", "0.4", "0.5", "1.3"]  # chunks in C order within their block
    written = {m: (out / "0" / "c" / m.replace(".", "/")).stat().st_mtime_ns for m in touched}

    crops = _count_classified(monkeypatch)
    predict_to_zarr(seg, tmp_path / "in.npy", out, progress=False)
    # the second block's last two rows of chunks, then the 7 blocks not started
    assert crops == [(32, 48)] + [(48, 48)] * 4 + [(32, 48)] * 3
    assert {m: (out / "0" / "c" / m.replace(".", "/")).stat().st_mtime_ns for m in touched} == written
    assert not (out / "0" / DONE_DIR).exists()
    np.testing.assert_array_equal(zarr.open_group(str(out), mode="r")["0"][:], expected)


def test_a_new_outputs_pyramid_is_written_with_its_tiles(scene, tmp_path, monkeypatch):
    """The pyramid of a new output is written tile by tile (tiles off the levels' pixel grid, two frames): the
    levels equal level 0's every 2**k-th pixel, and level 0 is not read again to fill them. A resumed output's
    levels (one of whose chunks a killed run left torn) are filled from level 0 at the end."""
    from fsspec.implementations.local import LocalFileSystem

    from gpuseg import stream

    seg, image, _, _ = scene
    movie = np.stack([np.tile(image, (3, 5))[:300, :700], np.tile(image[::-1], (3, 5))[:300, :700]])  # t, y, x
    filled, real_fill = [], stream.fill_pyramid
    monkeypatch.setattr(stream, "fill_pyramid", lambda *args: filled.append(1) or real_fill(*args))
    monkeypatch.setattr(Predictor, "default_tile_shape", lambda self, spatial, n_features: (72, 200))

    def check(out):
        group = zarr.open_group(str(out), mode="r")
        assert sorted(group.array_keys()) == ["0", "1", "2"]  # 300 x 700, 150 x 350, 75 x 175
        level0 = group["0"][:]
        np.testing.assert_array_equal(level0, np.stack([seg.predict(frame, progress=False) for frame in movie]))
        for k in (1, 2):
            np.testing.assert_array_equal(group[str(k)][:], level0[:, :: 2**k, :: 2**k])

    from gpuseg import tile_writer

    parts, real_part = [], tile_writer.write_pyramid_part
    monkeypatch.setattr(tile_writer, "write_pyramid_part", lambda levels, axes, where, values: parts.append(
        tuple(w.stop - w.start for w in where[1:])) or real_part(levels, axes, where, values))
    crops = _count_classified(monkeypatch)
    new = predict_to_zarr(seg, movie, tmp_path / "new.zarr", axes="tyx", tile_shape=(30, 90), progress=False)
    # each block's part of the levels in one write (2 x 2 chunks of 30 x 90 but at the edges), not one per chunk
    assert parts == crops and len(parts) == 2 * 5 * 4 and parts[0] == (60, 180)
    check(new)
    assert filled == []

    out = tmp_path / "resumed.zarr"
    real_touch = LocalFileSystem.touch

    def touch_until_20_chunks_are_done(self, path, *args, **kwargs):  # then a user's Ctrl-C
        if len(os.listdir(out / "0" / DONE_DIR)) >= 20:
            raise KeyboardInterrupt
        return real_touch(self, path, *args, **kwargs)

    monkeypatch.setattr(LocalFileSystem, "touch", touch_until_20_chunks_are_done)
    with pytest.raises(KeyboardInterrupt):
        predict_to_zarr(seg, movie, out, axes="tyx", tile_shape=(30, 90), progress=False)
    monkeypatch.setattr(LocalFileSystem, "touch", real_touch)
    torn = next(p for p in (out / "1").rglob("*") if p.is_file() and p.name != "zarr.json")
    torn.write_bytes(b"\x00garbage")
    check(predict_to_zarr(seg, movie, out, axes="tyx", progress=False))
    assert filled == [1]


# -- whole files ----------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".npy", ".tif", ".png"])
def test_predict_to_file(scene, tmp_path, suffix):
    seg, image, _, expected = scene
    out = predict_to_file(seg, image, tmp_path / f"labels{suffix}")
    np.testing.assert_array_equal(open_image(out), expected)
    assert os.listdir(tmp_path) == [out.name]  # no temporary file left


@pytest.mark.parametrize("suffix", [".npy", ".tif"])
def test_predict_to_file_proba(scene, tmp_path, suffix):
    seg, image, expected, _ = scene
    np.save(tmp_path / "in.npy", image)
    out = predict_to_file(seg, tmp_path / "in.npy", tmp_path / f"proba{suffix}", proba=True)
    result = open_image(out) if suffix == ".npy" else np.moveaxis(open_image(out), 0, -1)  # TIFF: classes as C of CYX
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-6)


def test_predict_to_file_refuses(scene, tmp_path):
    seg, image, _, _ = scene
    with pytest.raises(ValueError, match="PNG holds 2D labels only"):
        predict_to_file(seg, image, tmp_path / "p.png", proba=True)
    with pytest.raises(ValueError, match="predict_to_zarr"):
        predict_to_file(seg, image, tmp_path / "p.zarr")
    assert os.listdir(tmp_path) == []


def test_resume_after_the_input_changed_is_refused(small_model, mosaic, tmp_path):
    import zarr

    from gpuseg.stream import predict_to_zarr

    src = tmp_path / "in.zarr"
    image = mosaic[0]
    zarr.create_array(store=str(src), data=image, chunks=(64, 64))
    out = tmp_path / "out.zarr"
    predict_to_zarr(small_model, src, out, tile_shape=(64, 64), progress=False)
    zarr.open(str(src), mode="r+")[:64, :64] = 255 - image[:64, :64]  # same path, shape and dtype
    with pytest.raises(ValueError, match="changed since"):  # a complete output too: it is not of this input now
        predict_to_zarr(small_model, src, out, progress=False)
    predict_to_zarr(small_model, src, out, overwrite=True, progress=False)
    np.testing.assert_array_equal(open_image(out)[:], small_model.predict(zarr.open(str(src))[:]))


@pytest.mark.parametrize("tile", [(0, 0), (8, 8, 8)])
def test_bad_tiles_create_nothing(small_model, mosaic, tmp_path, tile):
    from gpuseg.stream import predict_to_zarr

    with pytest.raises(ValueError, match="[Tt]ile"):
        predict_to_zarr(small_model, mosaic[0], tmp_path / "out.zarr", tile_shape=tile, progress=False)
    assert list(tmp_path.iterdir()) == []
    predict_to_zarr(small_model, mosaic[0], tmp_path / "out.zarr", tile_shape=(64, 64), progress=False)


def test_a_failed_create_leaves_no_partial_directory(small_model, mosaic, tmp_path, monkeypatch):
    import zarr

    from gpuseg.stream import predict_to_zarr

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(zarr, "create_group", fail)
    with pytest.raises(OSError):
        predict_to_zarr(small_model, mosaic[0], tmp_path / "out.zarr", tile_shape=(64, 64), progress=False)
    assert list(tmp_path.iterdir()) == []


def test_library_refuses_an_output_over_its_input(small_model, mosaic, tmp_path):
    import zarr

    from gpuseg.stream import predict_to_file, predict_to_zarr

    src = tmp_path / "in.zarr"
    zarr.create_array(store=str(src), data=mosaic[0], chunks=(64, 64))
    with pytest.raises(ValueError, match="same path as the input"):
        predict_to_zarr(small_model, src, src, overwrite=True, progress=False)
    np.save(tmp_path / "in.npy", mosaic[0])
    with pytest.raises(ValueError, match="same path as the input"):
        predict_to_file(small_model, tmp_path / "in.npy", tmp_path / "in.npy")
    np.testing.assert_array_equal(zarr.open(str(src), mode="r")[:], mosaic[0])
    np.testing.assert_array_equal(np.load(tmp_path / "in.npy"), mosaic[0])


def test_a_2_40_zarr_is_planned_and_streamed_lazily(small_model, tmp_path):
    """Tiles of a 2**40 x 2**40 input are made one by one: the first ones are classified at once."""
    import itertools
    import tracemalloc

    big = zarr.create_array(store=str(tmp_path / "big.zarr"), shape=(2**40, 2**40), dtype="u1", chunks=(256, 256))
    predictor = small_model.predictor()
    tracemalloc.start()
    plan = predictor.plan(big, (256, 256))
    first = list(itertools.islice(predictor.classify_tiles(big, plan.tiles, "labels"), 2))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert plan.tiles.count == 2**64 and peak < 64 * 2**20
    assert [t.write for t, _ in first] == [(slice(0, 256), slice(0, 256)), (slice(0, 256), slice(256, 512))]


def test_read_ahead_reads_the_next_region_while_this_one_is_classified():
    import time

    from gpuseg.predictor import _read_ahead

    reads = []

    def read(tile):
        reads.append(tile)
        if tile == 3:
            raise OSError("unreadable chunk")
        return tile * 10

    assert list(_read_ahead(read, [])) == []
    blocks = _read_ahead(read, range(5))
    assert next(blocks) == (0, 0)
    deadline = time.monotonic() + 5
    while 1 not in reads and time.monotonic() < deadline:  # tile 1 is read while the caller holds tile 0
        time.sleep(0.01)
    assert reads == [0, 1]
    assert next(blocks) == (1, 10) and next(blocks) == (2, 20)
    with pytest.raises(OSError, match="unreadable"):
        next(blocks)


def test_a_failed_chunk_write_stops_the_run_before_later_tiles_are_written(scene, tmp_path, monkeypatch):
    """Tiles are written in a thread while the next one is classified: a write's error reaches the caller, and no
    tile after the failed one is written; the rerun completes the output."""
    from gpuseg.tile_writer import TileWriter

    seg, image, _, expected = scene
    np.save(tmp_path / "in.npy", image)
    out = tmp_path / "out.zarr"
    monkeypatch.setattr(Predictor, "default_tile_shape", lambda self, spatial, n_features: (16, 16))  # a chunk a tile
    real_write, written, failed = TileWriter._write_tile, [], []

    def write_then_fail(self, frames, index, tile, *rest):
        if len(written) == 2 and not failed:  # the third write fails once; a later one would succeed
            failed.append(tile.write)
            raise OSError("No space left on device")
        written.append(tile.write)
        return real_write(self, frames, index, tile, *rest)

    monkeypatch.setattr(TileWriter, "_write_tile", write_then_fail)
    with pytest.raises(OSError, match="No space left"):
        predict_to_zarr(seg, tmp_path / "in.npy", out, tile_shape=(16, 16), progress=False)
    assert len(written) == 2 and len(os.listdir(out / "0" / DONE_DIR)) == 2
    monkeypatch.setattr(TileWriter, "_write_tile", real_write)
    predict_to_zarr(seg, tmp_path / "in.npy", out, tile_shape=(16, 16), progress=False)
    np.testing.assert_array_equal(zarr.open_group(str(out), mode="r")["0"][:], expected)


def test_tiles_of_an_image_not_in_memory_are_read_in_a_thread_ahead(scene):
    """classify_tiles reads a Zarr-like image's next region in its read-ahead thread (the labels are the
    same); a NumPy image starts no such thread."""
    import threading

    from gpuseg.tiling import iter_tiles

    seg, image, _, expected = scene
    readers = []

    class Recorded:  # an array that is neither NumPy's nor CuPy's, as a Zarr array is
        shape, ndim, dtype = image.shape, image.ndim, image.dtype

        def __getitem__(self, key):
            readers.append(threading.current_thread().name)
            return image[key]

    predictor = seg.predictor()
    tiles = iter_tiles(image.shape, (32, 64), predictor.halo)
    out = np.empty(image.shape, seg.label_dtype)
    for tile, result in predictor.classify_tiles(Recorded(), tiles, "labels"):
        out[tile.write] = result
    np.testing.assert_array_equal(out, expected)
    assert len(readers) == len(tiles) and all(name.startswith("gpuseg-read") for name in readers)
    threads = set()
    for _ in predictor.classify_tiles(np.asarray(image), tiles, "labels"):
        threads.update(t.name for t in threading.enumerate())
    assert not any(name.startswith("gpuseg-read") for name in threads)  # a NumPy image is sliced in place
