"""Axes (T, C, Z) read from files and given by hand; outputs read back by the libraries users' tools use.

Readers: tifffile (ImageJ hyperstack and OME-TIFF metadata, as Fiji, napari and
QuPath read them), zarr with ``ome-zarr-models`` (the OME-NGFF 0.5 validator)
and ``napari-ome-zarr`` (napari's reader: does it see a labels layer?).
"""

import importlib.util
import json
import os
import subprocess
import sys
import warnings

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
import zarr

import gpuseg
import gpuseg.axes
from gpuseg.metadata import read_metadata, read_spacing
from gpuseg.ome_zarr import PYRAMID_MIN
from gpuseg.predictor import Predictor
from gpuseg.stream import DONE_DIR, open_image, predict_to_file, predict_to_zarr

SHAPE = (64, 64)
T = 3


def _scene(rng, n_channels=None):
    """A 2-class picture: bright right half (in channel 0), and scribbles in each half."""
    image = rng.normal(0, 0.3, SHAPE + ((n_channels,) if n_channels else ())).astype(np.float32)
    (image[:, 32:, 0] if n_channels else image[:, 32:])[...] += 2
    labels = np.zeros(SHAPE, np.uint8)
    labels[2:6, 4:28] = 1
    labels[2:6, 36:60] = 2
    return image, labels


def _model(image, labels, channel_axis=None):
    return gpuseg.Segmenter(backend="cpu", sigma_max=2, n_estimators=5, max_depth=6, random_state=0,
                            channel_axis=channel_axis).fit(image, labels)


@pytest.fixture(scope="module")
def gray():
    image, labels = _scene(np.random.default_rng(0))
    return _model(image, labels), image, labels


@pytest.fixture(scope="module")
def rgb():
    image, labels = _scene(np.random.default_rng(1), 3)
    return _model(image, labels, channel_axis=-1), image, labels


def _movie(image):
    return np.stack([np.roll(image, 8 * t, axis=1) for t in range(T)])


def _ome_zarr(path, data, axes, scale):
    names = [{"name": a, "type": {"t": "time", "c": "channel"}.get(a, "space")} for a in axes]
    for n in names:
        if n["type"] == "space":
            n["unit"] = "micrometer"
    attrs = {"ome": {"version": "0.5", "multiscales": [{"axes": names, "datasets": [
        {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}]}]}}
    group = zarr.create_group(str(path), attributes=attrs)
    group.create_array("0", data=data, chunks=tuple(min(n, 32) if a in "yx" else 1 for a, n in zip(axes, data.shape)),
                       dimension_names=list(axes))
    return path


NAPARI_READER = """
import json, sys
from napari_ome_zarr import napari_get_reader
layers = napari_get_reader(sys.argv[1])(sys.argv[1])
print(json.dumps([[kind, [list(level.shape) for level in data]] for data, _, kind in layers]))
"""


def _napari_layers(path) -> list:
    """``[kind, level shapes]`` of each layer napari's OME-Zarr reader makes of ``path``.

    In a child process: the reader starts napari's plugin manager, which the napari plugin's tests own here.
    """
    if importlib.util.find_spec("napari_ome_zarr") is None:
        pytest.skip("napari-ome-zarr is not installed (the test extra has it)")
    done = subprocess.run([sys.executable, "-c", NAPARI_READER, str(path)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _validated(path):
    """The ome-zarr-models object of a group: raises on anything invalid OME-NGFF."""
    from ome_zarr_models import open_ome_zarr

    return open_ome_zarr(zarr.open_group(str(path), mode="r"))


# -- reading axes -------------------------------------------------------------------
def test_axes_and_sizes_from_files(tmp_path, gray):
    _, image, _ = gray
    movie = _movie(image)
    tifffile.imwrite(tmp_path / "ij.tif", movie, imagej=True, resolution=(1 / 0.29, 1 / 0.29),
                     metadata={"axes": "TYX", "unit": "um"})
    two = np.stack([movie, movie], axis=1)
    tifffile.imwrite(tmp_path / "ome.ome.tif", two, ome=True,
                     metadata={"axes": "ZCYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5, "PhysicalSizeZ": 2.0})
    five = np.concatenate([movie, movie])[:5]  # (tifffile takes 3 planes for planar RGB)
    tifffile.imwrite(tmp_path / "plain.tif", five)
    iio.imwrite(tmp_path / "rgb.png", np.zeros(SHAPE + (3,), np.uint8))
    _ome_zarr(tmp_path / "c.ome.zarr", movie, "cyx", [1.0, 0.25, 0.125])
    assert read_metadata(tmp_path / "ij.tif", movie.shape) == ("TYX", {"Y": 0.29, "X": 0.29}, "um")
    assert read_metadata(tmp_path / "ome.ome.tif", two.shape) == (
        "ZCYX", {"Z": 2.0, "Y": 0.5, "X": 0.5}, "um")
    assert read_metadata(tmp_path / "plain.tif", five.shape).axes is None  # tifffile says QYX: unknown
    assert read_metadata(tmp_path / "rgb.png", SHAPE + (3,)).axes == "YXC"
    assert read_metadata(tmp_path / "c.ome.zarr", movie.shape) == ("CYX", {"Y": 0.25, "X": 0.125}, "um")
    assert read_spacing(tmp_path / "ome.ome.tif", 3) == (2.0, 0.5, 0.5)
    assert read_spacing(tmp_path / "npy.npy", 2) is None


def test_axes_checked():
    with pytest.raises(ValueError, match="one letter of T, C, Z, Y, X"):
        gpuseg.axes.check_axes("TQX", (2, 3, 4))
    with pytest.raises(ValueError, match="name 2 axes; the image has 3"):
        gpuseg.axes.check_axes("yx", (2, 3, 4))


def test_predict_with_axes_api(gray, rgb):
    seg, image, labels = gray
    movie = _movie(image)
    np.testing.assert_array_equal(gpuseg.axes.predict(seg, movie, "TYX"), [seg.predict(f) for f in movie])
    with pytest.raises(ValueError, match="name that axis T"):
        gpuseg.axes.predict(seg, movie, "ZYX")
    seg3, image3, _ = rgb
    cyx = np.moveaxis(image3, -1, 0)  # the RGB model on a CYX copy: the channel axis is moved for it
    np.testing.assert_array_equal(gpuseg.axes.predict(seg3, cyx, "CYX"), seg3.predict(image3))
    trained = gpuseg.axes.fit(gpuseg.Segmenter(backend="cpu", sigma_max=2, n_estimators=5, random_state=0,
                                               channel_axis=-1), cyx[None], labels[None], "TCYX")
    assert trained.n_channels_ == 3 and trained.ndim_ == 2


# -- TIFF outputs ---------------------------------------------------------------------
def test_time_lapse_tiff_to_imagej_and_ome_tiff(tmp_path, gray):
    seg, image, _ = gray
    movie = _movie(image)
    src = tmp_path / "movie.tif"
    tifffile.imwrite(src, movie, imagej=True, resolution=(1 / 0.29, 1 / 0.29), metadata={"axes": "TYX", "unit": "um"})
    expected = np.stack([seg.predict_proba(f) for f in movie])
    predict_to_file(seg, src, tmp_path / "labels.tif")
    predict_to_file(seg, src, tmp_path / "proba.tif", proba=True)
    predict_to_file(seg, src, tmp_path / "proba.ome.tif", proba=True)
    with tifffile.TiffFile(tmp_path / "labels.tif") as tif:
        assert tif.is_imagej and tif.series[0].axes == "TYX" and tif.imagej_metadata["unit"] == "um"
        np.testing.assert_allclose(1 / np.divide(*tif.pages[0].tags["XResolution"].value), 0.29, rtol=1e-6)
        np.testing.assert_array_equal(tif.asarray(), seg.classes_[expected.argmax(-1)])
    with tifffile.TiffFile(tmp_path / "proba.tif") as tif:  # a hyperstack: 3 frames of 2 channels
        assert tif.series[0].axes == "TCYX" and tif.imagej_metadata["channels"] == 2
        assert tif.imagej_metadata["frames"] == T and tif.imagej_metadata["hyperstack"]
        np.testing.assert_allclose(np.moveaxis(tif.asarray(), 1, -1), expected, atol=1e-6)
    with tifffile.TiffFile(tmp_path / "proba.ome.tif") as tif:
        assert tif.is_ome and tif.series[0].axes == "TCYX"
        assert 'PhysicalSizeX="0.29"' in tif.ome_metadata and 'SizeC="2"' in tif.ome_metadata
        np.testing.assert_allclose(np.moveaxis(tif.asarray(), 1, -1), expected, atol=1e-6)


# -- OME-Zarr outputs -------------------------------------------------------------------
def test_multichannel_ome_zarr_labels_under_labels(tmp_path, rgb):
    seg, image, _ = rgb
    src = _ome_zarr(tmp_path / "cells.ome.zarr", np.moveaxis(image, -1, 0), "cyx", [1.0, 0.5, 0.5])
    out = predict_to_zarr(seg, src, src / "labels" / "gpuseg", progress=False)
    labels = zarr.open_group(str(out), mode="r")
    assert labels["0"].chunks == (32, 32)  # the input's chunks
    assert labels["0"].metadata.dimension_names == ("y", "x")
    assert not (out / "0" / DONE_DIR).exists()
    ome = labels.attrs["ome"]
    assert ome["image-label"]["source"] == {"image": "../../"}
    assert ome["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"] == [0.5, 0.5]
    np.testing.assert_array_equal(labels["0"][:], seg.predict(image))
    assert type(_validated(src)).__name__ == "Image"
    assert type(_validated(src / "labels")).__name__ == "Labels" and _validated(src / "labels").attributes.ome.labels == ["gpuseg"]
    assert type(_validated(out)).__name__ == "ImageLabel"
    assert [kind for kind, _ in _napari_layers(src)] == ["image", "labels"]


def test_zarr_from_tiff_is_an_ome_labels_image_with_a_pyramid(tmp_path, gray):
    seg, image, _ = gray
    big = np.tile(image, (5, 5))  # 320 x 320: two levels
    tifffile.imwrite(tmp_path / "big.tif", big)
    out = predict_to_zarr(seg, tmp_path / "big.tif", tmp_path / "big.zarr", tile_shape=(160, 160), progress=False)
    group = zarr.open_group(str(out), mode="r")
    assert sorted(group.keys()) == ["0", "1"] and max(group["1"].shape) <= PYRAMID_MIN
    np.testing.assert_array_equal(group["1"][:], group["0"][::2, ::2])  # nearest
    scales = [d["coordinateTransformations"][0]["scale"] for d in group.attrs["ome"]["multiscales"][0]["datasets"]]
    assert scales == [[1.0, 1.0], [2.0, 2.0]]
    assert type(_validated(out)).__name__ == "ImageLabel"
    assert _napari_layers(out) == [["labels", [[320, 320], [160, 160]]]]


def test_time_lapse_zarr_resumes_frame_by_frame(tmp_path, gray, monkeypatch):
    seg, image, _ = gray
    movie = _movie(image)
    src = _ome_zarr(tmp_path / "movie.ome.zarr", movie, "tyx", [60.0, 0.5, 0.5])
    real, calls = Predictor.classify, []

    def dies_after_five(*args, **kwargs):
        if len(calls) == 5:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(Predictor, "classify", dies_after_five)
    monkeypatch.setattr(Predictor, "default_tile_shape", lambda self, spatial, n_features: (32, 32))  # a block a tile
    out = tmp_path / "movie-proba.zarr"
    with pytest.raises(KeyboardInterrupt):
        predict_to_zarr(seg, src, out, proba=True, tile_shape=(32, 32), progress=False)
    assert sorted(os.listdir(out / "0" / DONE_DIR)) == ["0.0.0", "0.0.1", "0.1.0", "0.1.1", "1.0.0"]
    monkeypatch.setattr(Predictor, "classify", lambda *a, **k: calls.append(1) or real(*a, **k))
    predict_to_zarr(seg, src, out, proba=True, progress=False)
    assert len(calls) == T * 4  # each tile of each frame once
    group = zarr.open_group(str(out), mode="r")
    assert group["0"].metadata.dimension_names == ("t", "c", "y", "x") and group["0"].chunks == (1, 2, 32, 32)
    np.testing.assert_allclose(np.moveaxis(group["0"][:], 1, -1), [seg.predict_proba(f) for f in movie], atol=1e-6)
    assert type(_validated(out)).__name__ == "Image" and not (out / "0" / DONE_DIR).exists()
    assert group.attrs["ome"]["multiscales"][0]["axes"][0] == {"name": "t", "type": "time"}
    before = len(calls)
    predict_to_zarr(seg, src, out, proba=True, progress=False)  # complete: nothing to do
    assert len(calls) == before


def test_3d_stack_zcyx(tmp_path):
    rng = np.random.default_rng(2)
    volume = rng.normal(0, 0.3, (8, 2, 32, 32)).astype(np.float32)  # ZCYX, as scikit-image's cells3d
    volume[:, 0, :, 16:] += 2
    labels = np.zeros((8, 32, 32), np.uint8)
    labels[:, 2:4, 2:12] = 1
    labels[:, 2:4, 20:30] = 2
    seg = gpuseg.axes.fit(gpuseg.Segmenter(backend="cpu", sigma_max=1, n_estimators=5, random_state=0,
                                           channel_axis=-1), volume, labels, "ZCYX")
    assert seg.ndim_ == 3 and seg.n_channels_ == 2
    tifffile.imwrite(tmp_path / "stack.tif", volume, imagej=True, metadata={"axes": "ZCYX", "spacing": 2.0},
                     resolution=(2.0, 2.0))
    out = predict_to_file(seg, tmp_path / "stack.tif", tmp_path / "stack-labels.tif")
    with tifffile.TiffFile(out) as tif:
        assert tif.series[0].axes == "ZYX" and tif.imagej_metadata["spacing"] == 2.0
        np.testing.assert_array_equal(tif.asarray(), seg.predict(np.moveaxis(volume, 1, -1)))


# -- guards ---------------------------------------------------------------------------------
def test_model_records_training_input_and_warns_on_another(tmp_path):
    rng = np.random.default_rng(3)
    image = (rng.normal(0, 0.3, SHAPE) * 1000 + 20000).astype(np.uint16)
    image[:, 32:] += 5000
    _, labels = _scene(rng)
    seg = _model(image, labels)
    loaded = gpuseg.load(seg.save(tmp_path / "m.gpuseg"))
    assert loaded.training_input_["dtype"] == "uint16"
    with warnings.catch_warnings():
        warnings.simplefilter("error", gpuseg.guards.InputMismatchWarning)
        predict_to_file(loaded, image, tmp_path / "same.npy")  # like the training data: no warning
    with pytest.warns(gpuseg.guards.InputMismatchWarning, match=r"float32 .* trained on uint16"):
        predict_to_file(loaded, image.astype(np.float32), tmp_path / "other.npy")
    with pytest.warns(gpuseg.guards.InputMismatchWarning, match="values in"):
        predict_to_file(loaded, image // 100, tmp_path / "dim.npy")


def test_swapped_scribbles_refused(gray):
    _, image, labels = gray
    with pytest.raises(ValueError, match="are the image and the scribbles swapped"):
        gpuseg.guards.check_scribbles((image * 1000).astype(np.int32), "scribbles.png")
    with pytest.raises(ValueError, match="swapped"):
        gpuseg.guards.check_scribbles(np.arange(300 * 300).reshape(300, 300) % 400, "labels.tif")
    gpuseg.guards.check_scribbles(labels, "scribbles.png")
