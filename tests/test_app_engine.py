"""The app's logic without a browser: strokes, sessions, caches, callbacks, uploads and downloads."""

from __future__ import annotations

import base64
import io
import json
import sys

import numpy as np
import pytest

pytest.importorskip("dash")

import gpuseg  # noqa: E402
from gpuseg.app import create_app, display, latency, strokes  # noqa: E402
from gpuseg.app import store as stores  # noqa: E402
from gpuseg.app import session as sessions  # noqa: E402
from gpuseg.app.callbacks import Controller  # noqa: E402
from gpuseg.app.files import UnreadableImage, encode_png, encode_tiff, read_image  # noqa: E402
from gpuseg.app.frames import Frames  # noqa: E402

SID = "0123456789abcdef0123456789abcdef"


def two_region_image(shape=(48, 64), seed=0):
    """Noisy image: dark left half, bright right half (uint8)."""
    rng = np.random.default_rng(seed)
    image = rng.normal(60, 10, shape)
    image[..., shape[-1] // 2:] += 120
    return np.clip(image, 0, 255).astype(np.uint8)


def hline(row, c0, c1):
    return f"M{c0},{row}L{(c0 + c1) / 2},{row}L{c1},{row}"


def still(image):
    """One grayscale frame: ``image`` as a Session takes it."""
    return Frames(image[None, ..., None])


def scribbled(image=None, **kw):
    """A CPU session on ``image`` with a stroke of class 1 on the left half and class 2 on the right."""
    image = two_region_image() if image is None else image
    session = sessions.Session(still(image), "test", stores.FeatureCache(), "cpu", **kw)
    cols = image.shape[-1]
    session.strokes.add(hline(10, 2, cols // 2 - 6), 1, 2)
    session.strokes.add(hline(30, cols // 2 + 6, cols - 3), 2, 2)
    return session


def data_uri(data: bytes) -> str:
    return "data:application/octet-stream;base64," + base64.b64encode(data).decode()


# -- strokes ------------------------------------------------------------------
def test_parse_path_reads_plotly_paths():
    points = strokes.parse_path("M10.5,20L11,21.25L1e1,-3")
    np.testing.assert_array_equal(points, [[10.5, 20], [11, 21.25], [10, -3]])


@pytest.mark.parametrize("path", ["", "M10", "garbage"])
def test_parse_path_refuses_non_paths(path):
    with pytest.raises(ValueError, match="Not a drawn path"):
        strokes.parse_path(path)


@pytest.mark.parametrize("scale", [1, 3])
@pytest.mark.parametrize("width", [1, 4])
def test_rasterise_draws_thick_lines_later_strokes_on_top(scale, width):
    first = strokes.Stroke(0, 0, 1, strokes.parse_path(hline(20, 5, 50)), "", width)
    second = strokes.Stroke(1, 0, 2, strokes.parse_path("M30,5L30,40"), "", width)
    labels = strokes.rasterise([first, second], (40, 60), scale)[0]
    thickness = max(1, round(width * scale))
    assert labels.dtype == np.uint8
    assert labels[20, 10] == 1 and labels[10, 30] == 2 and labels[20, 30] == 2
    assert abs(int((labels[:, 10] == 1).sum()) - thickness) <= 2  # OpenCV rounds thick lines up
    assert set(np.unique(labels)) == {0, 1, 2}


def test_rasterise_puts_strokes_on_their_plane():
    stroke = strokes.Stroke(0, 2, 1, strokes.parse_path(hline(5, 1, 8)), "", 1, frame=1)
    labels = strokes.rasterise([stroke], (3, 10, 10), 1, n_frames=2)
    assert labels.shape == (2, 3, 10, 10) and labels[1, 2, 5, 4] == 1 and labels.sum() == labels[1, 2].sum()


def test_sync_adds_edits_and_erases_the_strokes_of_the_plane_shown():
    drawn = strokes.Strokes()
    first, second = drawn.add(hline(10, 2, 26), 1, 2), drawn.add(hline(30, 38, 61), 2, 2)
    elsewhere = drawn.add(hline(20, 2, 26), 2, 2, plane=0, frame=1)
    shapes = [{"type": "path", "name": f"s{first.id}", "path": first.path},
              {"type": "path", "name": f"s{second.id}", "path": hline(31, 40, 60)},
              {"type": "path", "name": "c2", "path": hline(40, 40, 60)},
              {"type": "path", "name": "c9", "path": hline(44, 40, 60)}]  # no class 9: the first class
    assert drawn.sync(shapes, 0, default_label=1, width=3, classes=[1, 2])
    assert [s.label for s in drawn.on(0)] == [1, 2, 2, 1] and drawn.on(0, frame=1) == [elsewhere]
    assert second.path == hline(31, 40, 60) and drawn[-1].width == 3
    same = [dict(s, name=f"s{t.id}", path=t.path) for s, t in zip(shapes, drawn.on(0))]
    assert not drawn.sync(same, 0, 1, 3, classes=[1, 2])
    assert drawn.sync(shapes[:1], 0, 1, 3, classes=[1, 2])  # the other three erased, frame 1's stays
    assert [s.id for s in drawn] == [first.id, elsewhere.id]


def test_edit_path_undo_and_clear():
    session = scribbled()
    assert session.strokes.edit_path(0, 1, hline(35, 40, 60))
    assert not session.strokes.edit_path(0, 5, hline(35, 40, 60))
    assert session.strokes.undo() and len(session.strokes) == 1
    session.clear()
    assert session.strokes == [] and not session.strokes.undo()


# -- caches and sessions ----------------------------------------------------------
def test_feature_cache_computes_once_and_keeps_to_its_budget():
    cache = stores.FeatureCache(max_bytes=250)
    calls = []

    def compute(n):
        calls.append(n)
        return np.zeros(n, np.uint8)

    assert cache.get("a", lambda: compute(100)) [1] is False
    assert cache.get("a", lambda: compute(100))[1] is True
    cache.get("b", lambda: compute(100))
    cache.get("c", lambda: compute(100))  # 300 bytes: "a", least recently used, goes
    assert calls == [100, 100, 100] and len(cache) == 2
    assert cache.get("a", lambda: compute(100))[1] is False


def test_sessions_are_separate_and_bounded():
    made = []
    store = stores.SessionStore(lambda: made.append(1) or sessions.Session(
        still(two_region_image()), "x", stores.FeatureCache(), "cpu"), max_sessions=2)
    a, b = store.get("a"), store.get("b")
    a.strokes.add(hline(5, 1, 9), 1, 2)
    assert b.strokes == [] and store.get("a") is a
    store.get("c")  # drops "b", the least recently used
    assert "b" not in store and "a" in store and len(store) == 2


def test_sessions_share_cached_features_of_the_same_image():
    cache, image = stores.FeatureCache(), two_region_image()
    a = sessions.Session(still(image), "a", cache, "cpu")
    b = sessions.Session(still(image.copy()), "b", cache, "cpu")
    assert a.features() is b.features() and len(cache) == 1


@pytest.mark.parametrize("shape, scale", [((300, 200), 1), ((2048, 1000), 4), ((5, 800, 769), 2)])
def test_display_is_downsampled_to_fit(shape, scale):
    assert display.display_scale(shape, display_max=640) == scale
    plane = np.zeros(shape[-2:] + (1,), np.uint8)
    assert display.downsample(plane, scale).shape == tuple(-(-n // scale) for n in shape[-2:]) + (1,)


# -- training and prediction ----------------------------------------------------------
def test_one_class_does_not_train():
    session = scribbled()
    session.strokes.undo()
    assert not session.train()
    assert "two classes" in session.message and session.model is None


def test_training_and_views():
    session = scribbled()
    assert session.train()
    proba = session.predict_display()
    assert proba.shape == (48, 64, 2) and proba.dtype == np.float32
    labels = session.predict_full()
    assert labels.shape == (48, 64) and labels[:, :28].mean() < 1.2 and labels[:, 36:].mean() > 1.8
    for view in ("segmentation", "probability", "uncertainty"):
        rgb = session.overlay(view, 2)
        assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(session.overlay()[5, 5], [0xe6, 0x19, 0x4b])  # class 1's red
    assert session.timings["train_pixels"] == int((session.labels() > 0).sum())


def mosaic_strokes(session, truth, every=24, width=2):
    """Strokes as a user draws them on a mosaic: along rows, in the middle of the runs of one class
    (at least ``every`` pixels long, a few pixels from its edges)."""
    from scipy import ndimage as ndi

    for value in np.unique(truth):
        inside = ndi.binary_erosion(truth == value, iterations=4)
        for row in range(every // 2, truth.shape[0], every):
            cols = np.flatnonzero(inside[row])
            runs = np.split(cols, np.flatnonzero(np.diff(cols) > 1) + 1)
            for run in (r for r in runs if r.size >= every):
                c0, c1 = run[0] + run.size // 4, run[-1] - run.size // 4
                session.strokes.add(hline(row, c0, c1), int(value), width)


def test_preview_is_the_first_trees_of_the_full_model():
    from gpuseg.app.callbacks import status_lines

    session = scribbled()
    assert session.train() and session.shows_preview
    preview, full = session.model, session.full_model()
    assert session.full_model() is full  # trained once per training
    assert (preview.n_estimators, full.n_estimators) == (sessions.PREVIEW_TREES, sessions.LIVE_FOREST["n_estimators"])
    assert full.get_params() == {**preview.get_params(), "n_estimators": sessions.LIVE_FOREST["n_estimators"]}
    # the preview's trees are the full forest's first ones, node for node
    nodes = full.forest_.roots[sessions.PREVIEW_TREES]
    np.testing.assert_array_equal(preview.forest_.roots, full.forest_.roots[:sessions.PREVIEW_TREES])
    for name in ("child", "feature", "threshold", "value"):
        np.testing.assert_array_equal(getattr(preview.forest_, name), getattr(full.forest_, name)[:nodes])
    np.testing.assert_array_equal(session.predict_full(), full.predict(two_region_image()))
    assert session.training_nbytes > 0 and "train_full" in session.timings
    assert "first 16 of its 32 trees (downloads use them all)" in str(status_lines(session))
    session.strokes.add(hline(40, 40, 60), 2, 2)
    assert session.train() and session.full_model() is not full  # a new training, a new full model


def test_preview_agrees_with_the_full_model_on_the_shown_pixels():
    """On the bundled mosaic, scribbled as a user would, the preview labels the shown pixels as the full model."""
    from gpuseg.samples import texture_mosaic

    image, truth, _ = texture_mosaic((512, 512))
    session = sessions.Session(still(image), "mosaic", stores.FeatureCache(), "cpu")
    mosaic_strokes(session, truth)
    session.refresh(full=True)
    classes = session.model.classes_
    preview = classes[session.proba.argmax(-1)]
    full = classes[session.full_model().predict_proba_features(session.display_features()).argmax(-1)]
    assert (preview == full).mean() >= 0.95


def test_a_model_kept_for_a_new_image_downloads_the_full_forest():
    session = scribbled()
    session.refresh()
    full = session.full_model()
    session.set_image(still(two_region_image(seed=1)), "other")  # strokes go, the model stays
    assert not session.strokes and session.full_model() is full and session.proba is None


def test_display_features_are_kept_in_the_layout_the_forest_reads():
    session = sessions.Session(still(two_region_image((1300, 20))), "tall", stores.FeatureCache(), "cpu")
    assert session.scale == 3
    shown = session.display_features()
    np.testing.assert_array_equal(shown, session.features()[1::3, 1::3])  # the block centres
    assert np.moveaxis(shown, -1, 0).flags.c_contiguous  # features first: predicting it copies nothing
    assert session.display_features().base is shown.base  # gathered once


@pytest.mark.parametrize("view", ["segmentation", "probability", "uncertainty"])
def test_overlay_png_shows_the_overlay(view):
    from PIL import Image

    session = scribbled()
    source = session.refresh(view=view, label=2)
    png = Image.open(io.BytesIO(base64.b64decode(source.removeprefix("data:image/png;base64,"))))
    assert png.mode == "P"
    np.testing.assert_array_equal(np.asarray(png.convert("RGB")), session.overlay(view, 2))


def test_palette_png_of_many_colours_is_rgb():
    from PIL import Image

    rng = np.random.default_rng(0)
    palette = rng.integers(0, 255, (300, 3), dtype=np.uint8)
    index = rng.integers(0, 300, (5, 7))
    source = display.palette_png_source(index, palette)
    png = Image.open(io.BytesIO(base64.b64decode(source.removeprefix("data:image/png;base64,"))))
    np.testing.assert_array_equal(np.asarray(png.convert("RGB")), palette[index])


def test_training_gathers_at_most_the_cap_per_class(monkeypatch):
    monkeypatch.setattr(sessions, "MAX_TRAIN_PER_CLASS", 10)
    session = scribbled()
    session.train()
    assert session.timings["train_pixels"] == 20


def test_volume_trains_on_all_planes_and_predicts_the_shown_one(monkeypatch):
    monkeypatch.setattr(sessions, "KEPT_VIEWS", 2)
    volume = np.stack([two_region_image(seed=i) for i in range(4)])
    session = sessions.Session(still(volume), "stack", stores.FeatureCache(), "cpu")
    session.strokes.add(hline(10, 2, 25), 1, 2, plane=0)
    session.strokes.add(hline(30, 40, 60), 2, 2, plane=3)
    assert session.train() and session.model.ndim_ == 3
    assert session.predict_display(2).shape == (48, 64, 2)
    assert session.predict_full().shape == (4, 48, 64)
    for plane in range(4):
        session.predict_display(plane)
    assert list(session.views) == [(0, 2), (0, 3)] and session.views_nbytes == 2 * session.proba.nbytes


def test_measure_stroke_to_overlay_returns_seconds():
    seconds = latency.measure_stroke_to_overlay(two_region_image((96, 128)), backend="cpu", repeats=2)
    assert 0 < seconds < 30


# -- files ----------------------------------------------------------------------------
@pytest.mark.parametrize("array, shape", [
    (np.zeros((20, 30), np.uint8), (20, 30, 1)),
    (np.zeros((20, 30), np.uint16), (20, 30, 1)),
    (np.zeros((20, 30, 3), np.uint8), (20, 30, 3)),
    (np.zeros((20, 30, 4), np.uint8), (20, 30, 3)),
])
def test_read_png(array, shape):
    image = read_image(encode_png(array), "a.png")
    assert image.data.shape == (1,) + shape and image.rgb == (shape[-1] == 3)


def test_read_tiff_stack():
    image = read_image(encode_tiff(np.zeros((5, 20, 30), np.float32)), "a.tif")
    assert image.data.shape == (1, 5, 20, 30, 1) and image.data.dtype == np.float32


NOISE = np.random.default_rng(2).integers(0, 255, (40, 40), dtype=np.uint8)


@pytest.mark.parametrize("data, match", [
    (b"not an image at all", "could not be read"),
    (encode_png(NOISE)[:800], "could not be read"),
    (encode_tiff(NOISE)[:300], "could not be read"),
    (encode_png(np.zeros((2, 30), np.uint8)), "at least 3 pixels"),
    (encode_tiff(np.full((8, 8), np.nan, np.float32)), "NaN"),
], ids=["text", "truncated-png", "truncated-tiff", "too-thin", "nan"])
def test_unreadable_uploads_get_a_message(data, match):
    with pytest.raises(UnreadableImage, match=match):
        read_image(data, "upload.png")


# -- callbacks --------------------------------------------------------------------------
@pytest.fixture
def controller():
    image = still(two_region_image())
    cache = stores.FeatureCache()
    return Controller(stores.SessionStore(lambda: sessions.Session(image, "two.png", cache, "cpu")), "cpu")


def draw(controller, label, path, sid=SID, plane=0, frame=0):
    """What the figure sends after a stroke: its shapes (those of the shown plane) and the new one."""
    session = controller.sessions.get(sid)
    shapes = [{"type": "path", "name": f"s{s.id}", "path": s.path} for s in session.strokes.on(plane, frame)]
    shapes.append({"type": "path", "name": f"c{label}", "path": path})
    return controller.update(sid, "graph", relayout={"shapes": shapes}, label=label, width=2, plane=plane,
                             frame=frame)


def test_first_render_is_a_full_figure(controller):
    out = controller.update(SID, None)
    assert out["figure"].data[0].source.startswith("data:image/png;base64,")
    assert out["figure"].layout.dragmode == "drawopenpath"
    assert [o["value"] for o in out["classes"]] == [1, 2] and out["plane_style"] == {"display": "none"}
    assert "backend: cpu" in out["status"][0].children


def test_strokes_train_and_patch_the_overlay(controller):
    controller.update(SID, None)
    out = draw(controller, 1, hline(10, 2, 26))
    assert "two classes" in out["message"]
    out = draw(controller, 2, hline(30, 38, 61))
    patch = out["figure"].to_plotly_json()
    assert out["message"] == "" and "trained on scribbles" in out["status"][1].children
    assert len(json.dumps(patch)) < 20_000  # the image is not sent again
    assert controller.sessions.get(SID).proba is not None
    other = "f" * 32
    assert controller.update(other, None)["figure"].layout.shapes == ()  # another tab sees none of it


def test_stack_shows_one_plane_and_trains_on_all():
    volume = still(np.stack([two_region_image(seed=i) for i in range(4)]))
    controller = Controller(stores.SessionStore(lambda: sessions.Session(volume, "s.tif", stores.FeatureCache(), "cpu")))
    out = controller.update(SID, None)
    assert out["plane_style"] == {"display": "block"} and out["planes"] == 3
    draw(controller, 1, hline(10, 2, 26), plane=1)
    out = draw(controller, 2, hline(30, 38, 61), plane=2)
    assert "trained on scribbles" in out["status"][1].children
    out = controller.update(SID, "plane", plane=2)
    assert out["figure"].data[1].visible and [s.name for s in out["figure"].layout.shapes] == ["s1"]
    assert controller.sessions.get(SID).proba_at == (0, 2)


def test_zoom_changes_nothing(controller):
    controller.update(SID, None)
    draw(controller, 1, hline(10, 2, 26))
    from dash.exceptions import PreventUpdate

    with pytest.raises(PreventUpdate):
        controller.update(SID, "graph", relayout={"xaxis.range[0]": 3, "xaxis.range[1]": 30})
    session = controller.sessions.get(SID)
    assert len(session.strokes) == 1 and "two classes" in session.message  # still true


def test_classes_can_be_added_renamed_recoloured(controller):
    out = controller.update(SID, "add-class")
    assert out["label"] == 3 and len(out["classes"]) == 3
    controller.update(SID, "rename-class", label=3, class_name="nuclei")
    out = controller.update(SID, "class-color", label=3, class_color="#4363d8")
    session = controller.sessions.get(SID)
    assert session.classes[2] == sessions.ImageClass("nuclei", "#4363d8") and out["color"] == "#4363d8"


def test_feature_parameters(controller):
    out = controller.update(SID, "features", features=[], sigma=[-1, 4])
    assert "At least one" in out["message"]
    out = controller.update(SID, "sigma", features=["intensity"], sigma=[0, 3])
    assert controller.sessions.get(SID).params == gpuseg.FeatureParams(True, False, False, 1.0, 8.0)
    assert out["features"] == ["intensity"] and out["sigma"] == [0, 3]


def test_invalid_session_ids_are_ignored(controller):
    from dash.exceptions import PreventUpdate

    with pytest.raises(PreventUpdate):
        controller.update("../../etc", None)


def test_image_upload(controller):
    controller.upload_image(SID, {"contents": data_uri(encode_png(np.zeros((30, 40, 3), np.uint8))),
                                  "filename": "rgb.png"})
    out = controller.update(SID, "image-token")
    assert out["image_name"].startswith("rgb.png: 30 x 40, RGB") and out["message"] == ""
    controller.upload_image(SID, {"contents": data_uri(b"%PDF-1.4 nonsense"), "filename": "paper.pdf"})
    out = controller.update(SID, "image-token")
    assert "could not be read" in out["message"] and out["image_name"].startswith("rgb.png")


def test_upload_shown_even_when_a_resize_answers_in_its_place(controller):
    """The browser drops a pending answer when the callback fires again (the figure's first resize);
    the later call, whatever fired it, draws the upload the page's counters say it has not drawn."""
    from dash.exceptions import PreventUpdate

    controller.update(SID, None)
    controller.upload_image(SID, {"contents": data_uri(encode_png(np.zeros((30, 40, 3), np.uint8))),
                                  "filename": "rgb.png"})
    out = controller.update(SID, "graph", relayout={"autosize": True}, tokens=(1, 0))
    assert out["image_name"].startswith("rgb.png: 30 x 40")
    assert out["figure"].data[0].source.startswith("data:image/png")  # a full figure, not a Patch
    with pytest.raises(PreventUpdate):  # drawn: a resize is again only a resize
        controller.update(SID, "graph", relayout={"autosize": True}, tokens=(1, 0))
    controller.upload_image(SID, {"contents": data_uri(b"nonsense"), "filename": "notes.png"})
    out = controller.update(SID, "graph", relayout={"autosize": True}, tokens=(2, 0))
    assert "could not be read" in out["message"]


def test_downloads_and_model_upload(controller, tmp_path):
    _, message = controller.download(SID, "download-model")
    assert "Nothing to download" in message
    draw(controller, 1, hline(10, 2, 26))
    draw(controller, 2, hline(30, 38, 61))
    data, message = controller.download(SID, "download-model")
    path = tmp_path / data["filename"]
    path.write_bytes(base64.b64decode(data["content"]))
    image = two_region_image()
    saved = gpuseg.load(path, backend="cpu")
    session = controller.sessions.get(SID)
    assert session.shows_preview and session.model.n_estimators == sessions.PREVIEW_TREES
    assert saved.forest_.roots.size == sessions.LIVE_FOREST["n_estimators"]  # the full forest, not the preview
    labels = saved.predict(image)
    np.testing.assert_array_equal(labels, session.predict_full())

    png, _ = controller.download(SID, "download-png")
    tif, _ = controller.download(SID, "download-tiff")
    assert png["filename"] == "two-labels.png"
    np.testing.assert_array_equal(read_image(base64.b64decode(png["content"]), "l.png").frame(0), labels)
    np.testing.assert_array_equal(read_image(base64.b64decode(tif["content"]), "l.tif").frame(0), labels)

    other = "e" * 32
    controller.upload_model(other, {"contents": data_uri(path.read_bytes()), "filename": "m.gpuseg"})
    out = controller.update(other, "model-token")
    assert "m.gpuseg (loaded from a file)" in out["status"][1].children
    np.testing.assert_array_equal(controller.sessions.get(other).predict_full(), labels)


def corrupted_model(tmp_path) -> bytes:
    """A real model file with one byte of its compressed data flipped."""
    image = two_region_image()
    labels = np.zeros(image.shape, np.uint8)
    labels[5:15, 2:20], labels[25:35, 40:60] = 1, 2
    data = bytearray(gpuseg.Segmenter(backend="cpu", n_estimators=2).fit(image, labels).save(tmp_path / "m").read_bytes())
    data[100] ^= 0xFF
    return bytes(data)


@pytest.mark.parametrize("content", ["pickle", "corrupted"])
def test_bad_model_upload_gets_a_message(controller, tmp_path, content):
    import pickle

    data = pickle.dumps({"a": 1}) if content == "pickle" else corrupted_model(tmp_path)
    controller.upload_model(SID, {"contents": data_uri(data), "filename": "evil.gpuseg"})
    out = controller.update(SID, "model-token")
    assert out["message"].startswith("evil.gpuseg was not applied") and controller.sessions.get(SID).model is None
    assert "/tmp" not in out["message"]


def test_model_of_other_geometry_is_refused(controller, tmp_path):
    rgb = np.repeat(two_region_image()[..., None], 3, axis=-1)
    labels = np.zeros(rgb.shape[:2], np.uint8)
    labels[5:15, 2:20], labels[25:35, 40:60] = 1, 2
    path = gpuseg.Segmenter(backend="cpu", channel_axis=-1, n_estimators=4).fit(rgb, labels).save(tmp_path / "rgb")
    controller.upload_model(SID, {"contents": data_uri(path.read_bytes()), "filename": "rgb.gpuseg"})
    assert "3 channel(s)" in controller.update(SID, "model-token")["message"]


# -- channels and frames -------------------------------------------------------------------
def axes_tiff(array, axes, kind="imagej") -> bytes:
    """TIFF bytes of ``array`` with OME letters ``axes``: an ImageJ hyperstack, or (``kind="ome"``) an OME-TIFF."""
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, array, **{kind: True}, metadata={"axes": axes})
    return buf.getvalue()


def stack_controller(image: Frames) -> Controller:
    return Controller(stores.SessionStore(lambda: sessions.Session(image, "s.tif", stores.FeatureCache(), "cpu")),
                      "cpu")


def test_channel_choice_changes_the_picture_not_the_training(tmp_path):
    cells = np.stack([np.stack([two_region_image(seed=z), two_region_image(seed=z)[::-1]]) for z in range(4)])
    image = read_image(axes_tiff(cells, "ZCYX"), "cells.tif")  # scikit-image's cells3d layout
    assert image.data.shape == (1, 4, 48, 64, 2) and image.channel_choice and not image.rgb
    np.testing.assert_array_equal(image.data[0, ..., 1], cells[:, 1])
    controller = stack_controller(image)
    out = controller.update(SID, None)
    assert out["channel_style"] == {"display": "block"} and out["channel"] == "composite"
    assert [o["value"] for o in out["channels"]] == ["composite", 0, 1] and out["image_name"].endswith("2 channels")
    session = controller.sessions.get(SID)
    composite = session.display_image(2)  # uint8: shown as it is, channel 0 red, channel 1 green
    np.testing.assert_array_equal(composite, np.stack([cells[2, 0], cells[2, 1], np.zeros_like(cells[2, 0])], -1))
    np.testing.assert_array_equal(session.display_image(2, channel=1), np.repeat(cells[2, 1][..., None], 3, -1))

    draw(controller, 1, hline(10, 2, 26), plane=0)
    draw(controller, 2, hline(30, 38, 61), plane=3)
    model, proba = session.model, session.proba
    assert (model.ndim_, model.n_channels_) == (3, 2)
    shown = [controller.update(SID, "channel", plane=3, channel=c)["figure"].data[0].source for c in ("composite", 1)]
    assert shown[0] != shown[1]
    assert session.model is model and session.proba is proba  # the picture changed, the training did not
    assert controller.update(SID, "channel", channel=7)["channel"] == "composite"  # no such channel

    gray = gpuseg.Segmenter(backend="cpu", sigma_max=2, n_estimators=2).fit(cells[:, 0], session.labels()[0])
    path = gray.save(tmp_path / "gray.gpuseg")
    controller.upload_model(SID, {"contents": data_uri(path.read_bytes()), "filename": "gray.gpuseg"})
    message = controller.update(SID, "model-token")["message"]
    assert "3D images with 1 channel(s); this image is 3D with 2 channel(s)" in message and session.model is model


@pytest.mark.parametrize("kind", ["imagej", "ome"])
@pytest.mark.parametrize("axes, shape", [
    ("TYX", (3, 48, 64, 1)), ("TZYX", (3, 4, 48, 64, 1)), ("TCYX", (3, 48, 64, 2)), ("TZCYX", (3, 4, 48, 64, 2)),
])
def test_time_lapses_are_read_frames_first(axes, shape, kind):
    sizes = {"T": 3, "Z": 4, "C": 2, "Y": 48, "X": 64}
    array = np.random.default_rng(0).integers(0, 255, [sizes[a] for a in axes], dtype=np.uint8)
    image = read_image(axes_tiff(array, axes, kind), "movie.tif")
    assert image.data.shape == shape
    order = [axes.index(a) for a in "TZYXC" if a in axes]
    np.testing.assert_array_equal(image.data, np.transpose(array, order).reshape(shape))


def test_time_lapse_trains_on_every_frame_and_predicts_the_one_shown():
    movie = np.stack([np.stack([two_region_image(seed=3 * t + z) for z in range(3)]) for t in range(3)])
    controller = stack_controller(read_image(axes_tiff(movie, "TZYX"), "movie.tif"))
    out = controller.update(SID, None)
    assert out["frame_style"] == out["plane_style"] == {"display": "block"} and (out["frames"], out["planes"]) == (2, 2)
    assert out["channel_style"] == {"display": "none"} and out["image_name"] == "s.tif: 3 frames of 3 x 48 x 64"
    assert "two classes" in draw(controller, 1, hline(10, 2, 26), plane=1, frame=0)["message"]
    out = draw(controller, 2, hline(30, 38, 61), plane=2, frame=1)  # the other class, on another frame
    session = controller.sessions.get(SID)
    assert [s.where for s in session.strokes] == [(0, 1), (1, 2)]  # drawing on frame 1 kept frame 0's stroke
    assert "trained on scribbles" in out["status"][1].children
    labels = session.labels()
    assert set(np.unique(labels[0])) == {0, 1} and set(np.unique(labels[1])) == {0, 2} and not labels[2].any()
    assert session.timings["train_pixels"] == int((labels > 0).sum())
    assert [s["frame"] for s in json.loads(stores.work_record(session))["strokes"]] == [0, 1]

    out = controller.update(SID, "frame", frame=2, plane=1)
    assert session.proba_at == (2, 1) and out["figure"].layout.shapes == () and out["frame"] == 2
    frame = session.image.frame(2)
    np.testing.assert_allclose(session.proba, session.model.predict_proba(frame)[1], atol=1e-6)
    shown = session.proba
    controller.update(SID, "frame", frame=0, plane=1)
    controller.update(SID, "frame", frame=2, plane=1)
    assert session.proba is shown and list(session.views) == [(1, 2), (0, 1), (2, 1)]  # predicted once per model
    predicted = np.stack([session.full_model().predict(session.image.frame(t)) for t in range(3)])
    np.testing.assert_array_equal(np.stack([session.predict_full(t) for t in range(3)]), predicted)

    draw(controller, 2, hline(40, 38, 61), plane=1, frame=2)  # a new model: its predictions are new
    assert session.proba is not shown and list(session.views) == [(2, 1)]
    np.testing.assert_allclose(session.proba, session.model.predict_proba(frame)[1], atol=1e-6)
    predicted = np.stack([session.full_model().predict(session.image.frame(t)) for t in range(3)])

    tif, _ = controller.download(SID, "download-tiff")
    png, _ = controller.download(SID, "download-png", plane=1, frame=2)
    np.testing.assert_array_equal(read_image(base64.b64decode(tif["content"]), "l.tif").data[..., 0], predicted)
    np.testing.assert_array_equal(read_image(base64.b64decode(png["content"]), "l.png").frame(0), predicted[2, 1])


def test_size_limit_counts_every_frame(monkeypatch):
    from gpuseg.app import files

    movie = np.stack([two_region_image(seed=t) for t in range(3)])
    monkeypatch.setattr(files, "MAX_PIXELS", 3 * 48 * 64 - 1)
    assert read_image(axes_tiff(movie[0], "YX"), "one.tif").n_frames == 1
    with pytest.raises(UnreadableImage, match=r"9216 pixels \(3 frames of 3072\); the app takes at most 9215"):
        read_image(axes_tiff(movie, "TYX"), "movie.tif")


# -- the app ------------------------------------------------------------------------------
def test_create_app_limits_uploads_and_binds_locally():
    import inspect

    from gpuseg.app import run

    app = create_app(backend="cpu", max_upload_mb=1)
    assert app.server.config["MAX_CONTENT_LENGTH"] < 3 << 20
    assert inspect.signature(run).parameters["host"].default == "127.0.0.1"


def test_missing_dash_gives_the_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "dash", None)
    with pytest.raises(ImportError, match=r"pip install 'gpuseg\[app\]'"):
        create_app()


def test_png_encoding_round_trips():
    rgb = np.random.default_rng(1).integers(0, 255, (7, 9, 3), dtype=np.uint8)
    from PIL import Image

    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(encode_png(rgb)))), rgb)


def session_with_model(value):
    """A scribbled session given a model trained on its strokes, class 2 relabelled ``value``."""
    image = two_region_image()
    session = scribbled(image)
    labels = session.labels()[0].astype(np.int64)
    model = gpuseg.Segmenter(backend="cpu", sigma_max=16, n_estimators=5, random_state=0).fit(
        image, np.where(labels == 2, value, labels))
    session.apply_model(model, f"class-{value}.gpuseg")
    return session


def test_full_resolution_labels_keep_large_class_values():
    """A model whose classes reach 300 gives uint16 labels of 300, not 300 % 256."""
    session = session_with_model(300)
    full = session.predict_full()
    assert full.dtype == np.uint16 and set(np.unique(full)) == {1, 300}
    assert session.class_values() == [1, 2, 300]
    assert full[5, -5] == 300


def test_uploaded_model_adds_only_its_classes():
    session = session_with_model(5)
    assert session.class_values() == [1, 2, 5] and session.class_of(5).name == "class 5"
    session.refresh(full=True, retrain=False)
    rgb = session.overlay()
    assert tuple(rgb[5, -5]) == tuple(int(session.class_of(5).color[i:i + 2], 16) for i in (1, 3, 5))
    session.strokes.add(hline(20, 40, 60), 5, 2)  # strokes of class 5 rasterise as 5
    assert 5 in np.unique(session.labels())


def test_top_features_of_the_current_model_are_shown():
    from gpuseg.app.callbacks import status_lines

    session = scribbled()
    assert session.top_features() == []
    assert session.train()
    top = session.top_features(3)
    names = session.model.feature_names_
    importances = session.model.feature_importances_
    assert [name for name, _ in top] == [names[i] for i in np.argsort(-importances, kind="stable")[:3]]
    assert top[0][1] >= top[1][1] >= top[2][1] > 0
    text = str(status_lines(session))
    assert "top features: " + top[0][0] in text
