"""The napari plugin, driven headless in a real viewer.

Qt draws into the virtual X display that pytest-xvfb starts (``make test`` installs Xvfb and the xcb
libraries): napari's canvas needs OpenGL, which Qt's ``offscreen`` platform does not provide here.
"""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari", reason="pip install 'gpuseg[napari]' (the test extra has it)")
pytestmark = [
    pytest.mark.napari,
    pytest.mark.skipif(shutil.which("Xvfb") is None and not os.environ.get("DISPLAY"),
                       reason="no X display for Qt's GL canvas: apt-get install xvfb (make test does)"),
]

os.environ.setdefault("QT_QPA_PLATFORM", "xcb")  # before the first QApplication (pytest-qt makes it lazily)

import dask.array as da  # noqa: E402
from npe2 import PluginManager, PluginManifest  # noqa: E402

import gpuseg  # noqa: E402
from gpuseg.napari_plugin.widget import (LIVE_DELAY_MS, PROBABILITY, RESULT, UNCERTAINTY,  # noqa: E402
                                         SegmenterWidget)

MANIFEST = Path(gpuseg.__file__).parent / "napari_plugin" / "napari.yaml"
TIMEOUT_MS = 120_000


def two_regions(shape, rng):
    """A dark, smooth left half and a bright, noisy right half; truth 1 left, 2 right."""
    image = np.full(shape, 0.2, np.float32)
    right = np.zeros(shape, bool)
    right[..., shape[-1] // 2:] = True
    image[right] = 0.8 + 0.1 * rng.standard_normal(int(right.sum()), dtype=np.float32)
    return image, np.where(right, 2, 1).astype(np.uint8)


@pytest.fixture
def widget(make_napari_viewer):
    """``widget(image, **image_kwargs)``: a viewer showing ``image`` with the docked widget (CPU, small forest)."""

    def make(image, **kwargs):
        viewer = make_napari_viewer()
        viewer.add_image(image, name="image", **kwargs)
        w = SegmenterWidget(viewer)
        viewer.window.add_dock_widget(w)
        w.backend.value, w.sigma_max.value, w.n_estimators.value = "cpu", 2.0, 8
        return viewer, w

    return make


def paint_two_classes(layer, shape):
    """Paint one dot of class 1 in the left half and one of class 2 in the right half (the plane shown)."""
    layer.brush_size = 5
    rows, cols = shape[-2:]
    lead = tuple(s // 2 for s in shape[:-2])
    layer.paint(lead + (rows // 2, cols // 4), 1)
    layer.paint(lead + (rows // 2, 3 * cols // 4), 2)


def register_manifest():
    """Make the plugin known to napari where gpuseg is not installed with its entry point (a PYTHONPATH checkout)."""
    manager = PluginManager.instance()
    if not any(m.name == "gpuseg" for m in manager.iter_manifests()):
        manager.register(PluginManifest.from_file(MANIFEST))


def wait(qtbot, w):
    qtbot.waitUntil(lambda: not w.busy, timeout=TIMEOUT_MS)
    assert "Error" not in w.status.value, w.status.value


def test_manifest_is_valid_and_imports():
    manifest = PluginManifest.from_file(MANIFEST)
    manifest.validate_imports()
    assert {c.id for c in manifest.contributions.commands} == {
        "gpuseg.pixel_classifier", "gpuseg.get_reader", "gpuseg.texture_mosaic"}


def test_train_labels_the_painted_pixels(widget, qtbot, rng):
    image, truth = two_regions((48, 64), rng)
    viewer, w = widget(image)
    scribbles = w.add_scribbles_layer()
    paint_two_classes(scribbles, image.shape)
    w.show_proba.value = True
    w.run(train=True)
    wait(qtbot, w)
    painted = scribbles.data > 0
    result = viewer.layers[RESULT].data
    np.testing.assert_array_equal(result[painted], scribbles.data[painted])
    assert (result == truth).mean() > 0.95
    proba = viewer.layers[PROBABILITY].data
    assert proba.shape == (2,) + image.shape
    np.testing.assert_allclose(proba.sum(axis=0), 1, atol=1e-5)
    assert viewer.layers[UNCERTAINTY].data.max() <= 1


def test_live_mode_retrains_after_a_paint_event(widget, qtbot, rng):
    image, _ = two_regions((48, 64), rng)
    image[:4] = 0.5  # a third region along the top, left unpainted at first
    viewer, w = widget(image)
    scribbles = w.add_scribbles_layer()
    w.live.value = True
    qtbot.wait(LIVE_DELAY_MS + 200)  # switched on before any stroke: nothing to train on, a status line says so
    assert not w.busy and w.status.value == "Paint at least two classes (so far: none)."
    paint_two_classes(scribbles, image.shape)
    qtbot.waitUntil(lambda: RESULT in viewer.layers, timeout=TIMEOUT_MS)
    wait(qtbot, w)
    painted = scribbles.data > 0
    np.testing.assert_array_equal(viewer.layers[RESULT].data[painted], scribbles.data[painted])
    assert viewer.layers.selection.active is scribbles, "the result layer must not take the brush"
    before = w.segmenter
    scribbles.brush_size = 3
    scribbles.paint((1, 16), 3)  # one more stroke, of a new class: retrained and relabelled, no button pressed
    qtbot.waitUntil(lambda: w.segmenter is not before and not w.busy, timeout=TIMEOUT_MS)
    assert list(w.segmenter.classes_) == [1, 2, 3]
    assert viewer.layers[RESULT].data[1, 16] == 3


def test_multichannel_image_with_its_channel_axis(widget, qtbot, rng):
    gray, truth = two_regions((48, 64), rng)
    stack = np.stack([gray, 1 - gray])  # channels first, as napari holds a multichannel image in one layer
    viewer, w = widget(stack, scale=(1.0, 0.5, 0.5))
    w.channel_axis.value = 0
    assert w.scale_info.value == "0.5 x 0.5"
    scribbles = w.add_scribbles_layer()
    assert scribbles.data.shape == gray.shape
    paint_two_classes(scribbles, gray.shape)
    w.run(train=True)
    wait(qtbot, w)
    assert w.segmenter.n_channels_ == 2
    result = viewer.layers[RESULT]
    np.testing.assert_array_equal(result.scale, (0.5, 0.5))
    painted = scribbles.data > 0
    np.testing.assert_array_equal(result.data[painted], scribbles.data[painted])
    np.testing.assert_array_equal(result.data, w.segmenter.predict(stack))
    assert (result.data == truth).mean() > 0.9


def test_cancel_stops_the_worker_and_train_runs_again(widget, qtbot, rng):
    image, truth = two_regions((48, 64), rng)
    viewer, w = widget(image)
    paint_two_classes(w.add_scribbles_layer(), image.shape)
    w.run(train=True)
    w.cancel_work()  # microseconds after the start, long before the forest is grown
    qtbot.waitUntil(lambda: not w.busy, timeout=TIMEOUT_MS)
    assert (w.segmenter, w.status.value, RESULT in viewer.layers) == (None, "Cancelled.", False)
    w.run(train=True)
    wait(qtbot, w)
    assert (viewer.layers[RESULT].data == truth).mean() > 0.95


def test_visible_region_of_a_sliced_volume():
    from napari.layers import Image

    from gpuseg.napari_plugin.layers import image_input, visible_region

    layer = Image(np.zeros((6, 100, 120), np.float32), scale=(3.0, 1.0, 1.0))
    image = image_input(layer)
    layer.corner_pixels = np.array([[0, 10, 20], [0, 49, 79]])
    assert visible_region(layer, image, (3 * 4.0, 0.0, 0.0), (1, 2)) == (slice(4, 5), slice(10, 50), slice(20, 80))
    layer.corner_pixels = np.zeros((2, 3), int)  # never drawn: all of the displayed axes
    assert visible_region(layer, image, (0.0, 0.0, 0.0), (1, 2)) == (slice(0, 1), slice(0, 100), slice(0, 120))
    pyramid = Image([np.zeros((6, 100, 120), np.float32), np.zeros((6, 50, 60), np.float32)], multiscale=True)
    pyramid.data_level = 1
    pyramid.corner_pixels = np.array([[0, 5, 10], [0, 24, 39]])  # of level 1: twice as far in level 0
    assert visible_region(pyramid, image_input(pyramid), (0.0, 0.0, 0.0), (1, 2)) == (
        slice(0, 1), slice(10, 50), slice(20, 80))


def test_blocks_cover_the_region_and_equal_predict(small_model, mosaic):
    from gpuseg.napari_plugin.jobs import Block, Progress, segment
    from gpuseg.napari_plugin.layers import ImageInput

    image = mosaic[0]
    region = (slice(10, 150), slice(40, 192))
    steps = list(segment(ImageInput(image, None, image.shape, (1.0, 1.0), (0.0, 0.0)), segmenter=small_model,
                         region=region, proba=True, tile_shape=(64, 64)))
    blocks = [s for s in steps if isinstance(s, Block)]
    progress = [s for s in steps if isinstance(s, Progress)]
    assert len(blocks) > 1 and [p.done for p in progress] == list(range(len(blocks) + 1))
    labels = np.zeros(image.shape, small_model.label_dtype)
    for block in blocks:
        labels[block.where] = block.labels
        np.testing.assert_array_equal(block.uncertainty <= 1, True)
    expected = small_model.predict(image)
    np.testing.assert_array_equal(labels[region], expected[region])
    outside = np.ones(image.shape, bool)
    outside[region] = False
    assert not labels[outside].any()


def test_3d_lazy_image_with_anisotropic_scale(widget, qtbot, rng):
    volume, truth = two_regions((6, 24, 32), rng)
    viewer, w = widget(da.from_array(volume, chunks=(3, 24, 32)), scale=(4.0, 1.0, 1.0))
    assert "no per-axis sigma" in w.scale_info.value and w.predict_full.enabled
    scribbles = w.add_scribbles_layer()
    np.testing.assert_array_equal(scribbles.scale, (4, 1, 1))
    plane = int(viewer.dims.current_step[0])
    paint_two_classes(scribbles, volume.shape)
    w.run(train=True)
    wait(qtbot, w)
    result = viewer.layers[RESULT]
    np.testing.assert_array_equal(result.scale, (4, 1, 1))
    filled = np.flatnonzero(result.data.reshape(len(volume), -1).any(axis=1))
    assert list(filled) == [plane], "a lazy image is classified where the canvas shows it first"
    whole = w.segmenter.predict(volume)
    np.testing.assert_array_equal(result.data[plane], whole[plane])
    viewer.dims.set_current_step(0, plane + 2)  # the view moves to another plane: classified when it rests
    qtbot.waitUntil(lambda: result.data[plane + 2].any() and not w.busy, timeout=TIMEOUT_MS)
    np.testing.assert_array_equal(result.data[plane + 2], whole[plane + 2])
    w.run(train=False, full=True)
    wait(qtbot, w)
    np.testing.assert_array_equal(result.data, whole)
    assert (whole == truth).mean() > 0.9


def test_save_load_and_the_reader(widget, qtbot, rng, tmp_path):
    image, truth = two_regions((48, 64), rng)
    viewer, w = widget(image)
    paint_two_classes(w.add_scribbles_layer(), image.shape)
    w.run(train=True)
    wait(qtbot, w)
    trained = viewer.layers[RESULT].data.copy()
    path = w.save_model(tmp_path / "two")
    assert path.name == "two.gpuseg"

    viewer.layers.remove(RESULT)
    w.sigma_max.value, w.n_estimators.value = 9.0, 3
    w.load_model(path)
    wait(qtbot, w)
    assert (w.sigma_max.value, w.n_estimators.value) == (2.0, 8)
    np.testing.assert_array_equal(viewer.layers[RESULT].data, trained)

    register_manifest()
    viewer.layers.selection.active = viewer.layers["image"]
    [applied] = viewer.open(str(path), plugin="gpuseg")
    np.testing.assert_array_equal(applied.data, trained)
    assert applied.name == "image (two)"


def test_sample_data_and_the_plugin_widget(make_napari_viewer):
    register_manifest()
    viewer = make_napari_viewer()
    viewer.open_sample("gpuseg", "texture_mosaic")
    assert [layer.name for layer in viewer.layers] == ["texture mosaic", "scribbles", "truth"]
    assert viewer.layers["scribbles"].data.max() == 3
    _, w = viewer.window.add_plugin_dock_widget("gpuseg", "Pixel classifier")  # napari passes the viewer
    assert isinstance(w, SegmenterWidget)
    assert (w.image.value.name, w.scribbles.value.name) == ("texture mosaic", "scribbles")
