"""Hostile requests to the app's server: each answered with a message, never an HTTP 500 or a busy core."""

from __future__ import annotations

import base64
import json
import time

import numpy as np
import pytest

pytest.importorskip("dash")

from gpuseg.app import create_app  # noqa: E402
from gpuseg.app.request_checks import download_stem  # noqa: E402

SID = "0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def client():
    app = create_app(backend="cpu")
    return app, app.server.test_client()


def post(client, fragment: str, values: dict, changed: str):
    """POST a callback request as the page sends it: ``values`` by component id, ``changed`` the trigger."""
    app, http = client
    key = next(k for k in app.callback_map if fragment in k)
    spec = app.callback_map[key]
    outputs = [{"id": p.split(".")[0], "property": p.split(".", 1)[1]} for p in key.strip(".").split("...")]
    body = {"output": key, "outputs": outputs if key.startswith("..") else outputs[0],
            "inputs": [{**i, "value": values.get(i["id"])} for i in spec["inputs"]],
            "state": [{**s, "value": values.get(s["id"])} for s in spec["state"]],
            "changedPropIds": [changed]}
    return http.post("/_dash-update-component", json=body)


def page_message(client, **values):
    response = post(client, "graph.figure", {"session-id": SID, "features": ["intensity"], **values},
                    "image-token.data")
    assert response.status_code == 200
    return json.loads(response.data)["response"]["message"]["children"]


@pytest.mark.parametrize("sigma", [[-1, 18], [-1, 40], [-1, "x"], [5, -1], [-1], None, "abc", [-1, float("nan")]])
def test_sigma_outside_the_slider_is_a_message_at_once(client, sigma):
    start = time.perf_counter()
    response = post(client, "graph.figure", {"session-id": SID, "sigma": sigma, "features": ["intensity"]},
                    "sigma.value")
    assert response.status_code == 200 and time.perf_counter() - start < 30
    message = json.loads(response.data)["response"]["message"]["children"]
    assert "sigma range must be two values of the slider" in message


def _png_uri() -> str:
    from gpuseg.app.files import encode_png

    image = (np.arange(32 * 32) % 251).reshape(32, 32).astype(np.uint8)
    return "data:image/png;base64," + base64.b64encode(encode_png(image)).decode()


@pytest.mark.parametrize("kind", ["image", "model"])
@pytest.mark.parametrize("pending, expected", [
    ({"contents": "data:image/png;base64", "filename": "x.png"}, "did not arrive as a file"),
    ({"contents": 12345, "filename": "x.png"}, "did not arrive as a file"),
    ({"contents": ["a", "b"], "filename": "x.png"}, "did not arrive as a file"),
    ({"contents": "data:image/png;base64,@@@@", "filename": "x.png"}, "not valid base64"),
    ("just a string", "did not arrive as a file"),
])
def test_malformed_uploads_get_a_message(client, kind, pending, expected):
    response = post(client, f"{kind}-token.data", {f"pending-{kind}": pending, "session-id": SID,
                                                  f"{kind}-token": 0}, f"pending-{kind}.data")
    assert response.status_code == 200
    assert expected in page_message(client, **{f"{kind}-token": 1})


def test_upload_without_a_file_name_is_read(client):
    response = post(client, "image-token.data", {"pending-image": {"contents": _png_uri(), "filename": None},
                                                 "session-id": SID, "image-token": 0}, "pending-image.data")
    assert response.status_code == 200
    response = post(client, "graph.figure", {"session-id": SID, "features": ["intensity"], "image-token": 1},
                    "image-token.data")
    assert json.loads(response.data)["response"]["image-name"]["children"].startswith("upload: 32 x 32")


@pytest.mark.parametrize("name, stem", [
    ("../../etc/passwd.png", "passwd"), ("a\x00b\n\"c\".tif", "a_b_c"), ("." * 5, "image"), ("", "image"),
    ("x" * 400 + ".png", "x" * 64), ("ünïcødé.png", "n_c_d"), (None, "None"),
])
def test_download_names_are_safe(name, stem):
    assert download_stem(name) == stem


# -- sessions ---------------------------------------------------------------------------
def _store(clock, **kw):
    from gpuseg.app.frames import Frames
    from gpuseg.app.session import Session
    from gpuseg.app.store import FeatureCache, SessionStore

    image = (np.arange(48 * 64) % 200).reshape(1, 48, 64, 1).astype(np.uint8)
    cache = FeatureCache()
    return SessionStore(lambda: Session(Frames(image.copy()), "x.png", cache, "cpu"), clock=clock, **kw)


def _scribble(session):
    session.strokes.add("M2,10L20,10", 1, 2)
    session.strokes.add("M40,30L60,30", 2, 2)


def test_evicted_tab_is_told_and_its_strokes_are_recoverable():
    now = [0.0]
    store = _store(lambda: now[0], max_sessions=16)
    first = store.get("a" * 32)
    _scribble(first)
    for i in range(16):  # 16 more page loads
        now[0] += 1
        store.get(f"{i:032x}")
    assert "a" * 32 not in store and len(store) == 16
    back = store.get("a" * 32)
    assert "closed by the server" in back.message and "2 strokes were kept" in back.message
    assert "least recently used" in back.message
    record = json.loads(back.recovered)
    assert [s["path"] for s in record["strokes"]] == ["M2,10L20,10", "M40,30L60,30"]
    assert [s["label"] for s in record["strokes"]] == [1, 2]


def test_sessions_are_bounded_by_memory_and_idle_time():
    now = [0.0]
    one = 48 * 64
    store = _store(lambda: now[0], max_sessions=100, max_bytes=3 * one, max_idle_s=60)
    for i in range(5):
        _scribble(store.get(f"{i:032x}"))
    assert len(store) == 3 and store.nbytes() <= 3 * one  # each session's own image copy counted
    now[0] += 61
    store.get("f" * 32)
    assert len(store) == 1
    assert "idle for over" in store.get(f"{4:032x}").message


def test_strokes_download_through_the_controller():
    from gpuseg.app.callbacks import Controller

    now = [0.0]
    controller = Controller(_store(lambda: now[0], max_sessions=1), "cpu")
    _scribble(controller.sessions.get(SID))
    controller.sessions.get("b" * 32)  # drops SID's session
    data, message = controller.download(SID, "download-strokes")
    record = json.loads(data["content"])
    assert data["filename"] == "x-strokes.json" and record["strokes"] == [] and len(record["recovered"]["strokes"]) == 2


# -- uploaded models ------------------------------------------------------------------------
def _model_upload(tmp_path, classes) -> dict:
    import gpuseg

    rng = np.random.default_rng(0)
    image = rng.random((48, 64), dtype=np.float32)
    labels = np.zeros(image.shape, np.int64)
    for i, c in enumerate(classes):
        labels[2 + 3 * (i % 14), 2 + 20 * (i // 14) % 60: 10 + 20 * (i // 14) % 60] = c
    seg = gpuseg.Segmenter(backend="cpu", sigma_max=1, n_estimators=2, max_depth=3, random_state=0)
    data = seg.fit(image, labels).save(tmp_path / "m.gpuseg").read_bytes()
    return {"contents": "data:application/octet-stream;base64," + base64.b64encode(data).decode(),
            "filename": "m.gpuseg"}


def test_a_model_with_a_huge_class_value_is_applied_at_once(tmp_path):
    from gpuseg.app.callbacks import Controller

    controller = Controller(_store(time.monotonic), "cpu")
    start = time.perf_counter()
    controller.upload_model(SID, _model_upload(tmp_path, [1, 2, 10**9]))
    session = controller.sessions.get(SID)
    assert time.perf_counter() - start < 30 and session.message == ""
    assert session.class_values() == [1, 2, 10**9]
    assert session.predict_full().dtype == np.uint32  # 10**9 stays 10**9, never wrapped to 255 or less


def test_a_model_with_too_many_classes_is_refused(tmp_path, monkeypatch):
    from gpuseg.app import session as session_module
    from gpuseg.app.callbacks import Controller

    monkeypatch.setattr(session_module, "MAX_CLASSES", 3)
    controller = Controller(_store(time.monotonic), "cpu")
    controller.upload_model(SID, _model_upload(tmp_path, [1, 2, 3, 4]))
    session = controller.sessions.get(SID)
    assert "has 4 classes; the app shows at most 3" in session.message and session.model is None


@pytest.mark.parametrize("changed, values", [
    ("plane.value", {"plane": "x"}), ("frame.value", {"frame": [1]}), ("channel.value", {"channel": {"a": 1}}),
    ("active-class.value", {"active-class": "x"}),
    ("image-token.data", {"image-token": "x", "opacity": "x"}), ("class-color.value", {"class-color": {"a": 1}}),
    ("features.value", {"features": 5}), ("view.value", {"view": 5}),
    ("stroke-edits.data", {"stroke-edits": {"shapes": "x"}}), ("stroke-edits.data", {"stroke-edits": ["x"]}),
    ("stroke-edits.data", {"stroke-edits": {"shapes": [{"path": 5}, {"path": "abc"}, "x"]}}),
    ("stroke-edits.data", {"stroke-edits": {"shapes[0].path": 7}}),
    ("stroke-edits.data", {"width": "x", "stroke-edits": {"shapes": [{"path": "M1,2L5,6", "name": ["c1"]}]}}),
])
def test_requests_with_values_no_control_sends_are_answered(client, changed, values):
    response = post(client, "graph.figure", {"session-id": SID, "features": ["intensity"], "sigma": [-1, 4], **values},
                    changed)
    assert response.status_code in (200, 204)  # an answer, or "nothing to update"; never 500


def test_a_download_request_with_a_bad_plane_is_answered(client):
    assert post(client, "download.data", {"session-id": SID, "plane": "x", "frame": -5},
                "download-png.n_clicks").status_code == 200
