"""What the page's controls do.

The callbacks registered by :func:`register` are thin: they find the
session of the tab (by the id in its ``dcc.Store``) and call a method of
:class:`Controller`, which holds the logic and is unit-tested without a
browser or a server.
"""

from __future__ import annotations

import math
import re
import tempfile
import time
from pathlib import Path

import dash
import numpy as np
from dash import Input, Output, Patch, State, ctx, dcc, html, no_update

from .. import load
from ..features import FeatureParams
from .files import encode_png, encode_tiff, read_image
from .layout import COMPOSITE, FEATURES, channel_options, class_options, figure, newshape, shapes
from .request_checks import (decode_upload, download_stem, figure_edits, request_color, request_index, request_int,
                             request_number, sigma_range)
from .session import LIVE_FOREST
from .store import SessionStore, work_record

_SESSION_ID = re.compile(r"^[0-9a-f]{32}$")
_KEEP_MESSAGE = {None, "image-token", "model-token", "opacity", "view", "width", "active-class", "channel"}

# Checks an upload's size in the browser, so that a file over the limit is never sent, and empties the
# upload (so that the same file can be uploaded again).
_CHECK_SIZE = """
function(contents, filename) {
    const skip = window.dash_clientside.no_update;
    if (!contents) { return [skip, skip, skip]; }
    const bytes = Math.floor((contents.length - contents.indexOf(",") - 1) * 3 / 4);
    if (bytes > %d) {
        const mb = (bytes / 1048576).toFixed(1);
        return [skip, `${filename} is ${mb} MB, over the upload limit of %g MB; it was not sent.`, null];
    }
    return [{contents: contents, filename: filename}, "", null];
}
"""

# Passes on the figure's relayout events that draw, move or erase strokes; a zoom, a pan or a resize
# stays in the browser (and never makes the browser drop the answer to an upload still on its way).
_STROKE_EDITS = """
function(relayout) {
    const edits = relayout && Object.keys(relayout).some(k => k === "shapes" || k.startsWith("shapes["));
    return edits ? relayout : window.dash_clientside.no_update;
}
"""


class Controller:
    """The app's logic, one method per callback.

    Parameters
    ----------
    sessions : SessionStore
    backend : {"auto", "cpu", "gpu"}
        For uploaded models.
    """

    def __init__(self, sessions: SessionStore, backend: str = "auto"):
        self.sessions = sessions
        self.backend = backend

    def session(self, session_id):
        if not isinstance(session_id, str) or not _SESSION_ID.match(session_id):
            raise dash.exceptions.PreventUpdate
        return self.sessions.get(session_id)

    # -- uploads -------------------------------------------------------------
    def upload_image(self, session_id: str, pending: dict) -> None:
        """Read an uploaded image into the session; a failure becomes the session's message."""
        session = self.session(session_id)
        with session.lock:
            try:
                data, name = decode_upload(pending)
                image = read_image(data, name)
            except ValueError as exc:  # UnreadableImage too
                session.message = str(exc)
                return
            session.set_image(image, name)
            session.message = ""

    def upload_model(self, session_id: str, pending: dict) -> None:
        """Load an uploaded ``.gpuseg`` with :func:`gpuseg.load` and apply it to the session's image."""
        session = self.session(session_id)
        with session.lock:
            name = "model"
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "upload.gpuseg"
                try:
                    data, name = decode_upload(pending)
                    path.write_bytes(data)
                    session.apply_model(load(path, backend=self.backend), name)
                except Exception as exc:  # whatever a corrupt upload makes the loader raise becomes a message
                    session.message = f"{name} was not applied: {exc}".replace(str(path), name)
                    return
            session.message = ""

    # -- the page ------------------------------------------------------------
    def update(self, session_id: str, trigger: str | None, *, relayout=None, plane=0, frame=0, channel=COMPOSITE,
               label=1, width=8, features=tuple(FEATURES), sigma=(-1, 4), view="segmentation", opacity=0.5,
               class_name=None, class_color=None, tokens=(0, 0)) -> dict:
        """Apply the control that fired (``trigger``, a component id) and say what the page shows.

        ``plane`` and ``frame`` are the Z and T sliders' values; ``channel`` the channel shown (an int)
        or ``COMPOSITE``; out-of-range values are brought into range.

        ``tokens`` are the page's (image, model) upload counters. When they differ from those the
        session last drew, the page is redrawn whatever fired: the browser drops the answer to a
        callback that fires again before it returns (the figure's first resize can follow an upload
        that closely), and the upload must not be lost with it.

        Returns
        -------
        outputs : dict
            ``figure`` (a full figure, or a ``Patch`` when only strokes,
            overlay or drawing style changed), ``status``, ``message``,
            ``classes`` (radio options), ``label``, ``color``, ``planes``
            (slider maximum), ``plane``, ``plane_style``, ``frames``, ``frame``,
            ``frame_style`` (the same for the T slider), ``channels`` (dropdown
            options), ``channel``, ``channel_style``, ``features``, ``sigma``,
            ``image_name``.
        """
        session = self.session(session_id)
        relayout, width = figure_edits(relayout), request_number(width, 8.0, 0.5, 200.0)
        opacity = request_number(opacity, 0.5, 0.0, 1.0)
        class_color = request_color(class_color)
        with session.lock:
            plane, frame = request_index(plane, session.n_planes), request_index(frame, session.n_frames)
            channel = request_int(channel, -1) if session.image.channel_choice else -1
            channel = channel if 0 <= channel < session.image.n_channels else None
            label = request_int(label) if request_int(label) in session.class_values() else session.class_values()[0]
            previous, session.message = session.message, ""
            tokens = tuple(request_int(t) for t in tokens) if isinstance(tokens, (list, tuple)) else (0, 0)
            stale = tokens != session.shown_tokens
            retrain, full = False, stale or trigger in (None, "image-token", "model-token", "plane", "frame", "channel")
            if trigger == "graph":
                retrain = session.strokes.apply_figure_edits(relayout, plane, label, width,
                                                             classes=session.class_values(), frame=frame)
                if not (retrain or stale):  # a zoom, a pan, a resize: nothing to redraw
                    session.message = previous
                    raise dash.exceptions.PreventUpdate
            elif trigger == "undo":
                retrain = session.strokes.undo()
            elif trigger == "clear":
                session.clear()
                retrain = True
            elif trigger in ("features", "sigma"):
                try:
                    chosen = features if isinstance(features, (list, tuple)) else ()
                    retrain = session.use_features(FeatureParams(*(k in chosen for k in FEATURES), *sigma_range(sigma)))
                except ValueError as exc:
                    session.message = str(exc)
            elif trigger == "add-class":
                label = session.add_class()
            elif trigger == "rename-class" and class_name:
                session.class_of(label).name = str(class_name)[:40]
            elif trigger == "class-color" and class_color:
                session.class_of(label).color = class_color
            overlay = session.refresh(plane, frame=frame, retrain=retrain, full=full, view=view, label=label)
            if not session.message and (stale or trigger in _KEEP_MESSAGE):
                session.message = previous  # e.g. an upload's error, still true after a change of view
            session.shown_tokens = tokens
            return self._outputs(session, full, overlay, plane=plane, frame=frame, channel=channel, label=label,
                                 width=width, opacity=opacity, revision=str(tokens[0]))

    def _outputs(self, session, full, overlay, *, plane, frame, channel, label, width, opacity, revision) -> dict:
        if full:
            fig = figure(session, plane, overlay, frame=frame, channel=channel, label=label, width=width,
                         opacity=opacity, revision=revision)
        else:
            fig = Patch()
            fig["layout"]["shapes"] = shapes(session, plane, frame)
            fig["layout"]["newshape"] = newshape(session, label, width)
            fig["data"][1]["visible"] = overlay is not None
            if overlay is not None:
                fig["data"][1]["source"] = overlay
            fig["data"][1]["opacity"] = opacity
        params = session.params
        return {
            "figure": fig,
            "status": status_lines(session),
            "message": session.message,
            "classes": class_options(session),
            "label": label,
            "color": session.class_of(label).color,
            "planes": session.n_planes - 1,
            "plane": plane,
            "plane_style": _shown(session.n_planes > 1),
            "frames": session.n_frames - 1,
            "frame": frame,
            "frame_style": _shown(session.n_frames > 1),
            "channels": channel_options(session),
            "channel": COMPOSITE if channel is None else channel,
            "channel_style": _shown(session.image.channel_choice),
            "features": [k for k in FEATURES if getattr(params, k)],
            "sigma": [_log2(params.sigma_min), _log2(params.sigma_max)],
            "image_name": image_caption(session),
        }

    # -- downloads -----------------------------------------------------------
    def download(self, session_id: str, what: str, plane: int = 0, frame: int = 0) -> tuple:
        """The model (``what="download-model"``), the full-resolution labels (``"download-png"``:
        the shown slice of the shown frame; ``"download-tiff"``: the whole image or stack, every frame
        of a time-lapse, ``T`` first, see :func:`gpuseg.app.files.encode_tiff`) or the strokes
        (``"download-strokes"``: JSON, see :func:`gpuseg.app.store.work_record`).

        Returns
        -------
        data : dict or dash.no_update
            For ``dcc.Download``; ``no_update`` when there is no model yet.
        message : str
        """
        session = self.session(session_id)
        with session.lock:
            stem = download_stem(session.name)
            if what == "download-strokes":
                return dcc.send_string(work_record(session), f"{stem}-strokes.json"), ""
            if session.model is None:
                return no_update, "Nothing to download yet: scribble at least two classes, or upload a model."
            if what == "download-model":
                with tempfile.TemporaryDirectory() as tmp:
                    path = session.full_model().save(Path(tmp) / "model.gpuseg")
                    return dcc.send_bytes(path.read_bytes(), f"{stem}.gpuseg"), ""
            start = time.perf_counter()
            if what == "download-png":
                labels = session.predict_full(request_index(frame, session.n_frames))
                labels = labels[request_index(plane, session.n_planes)] if labels.ndim == 3 else labels
                data = dcc.send_bytes(encode_png(labels), f"{stem}-labels.png")
            else:
                labels = np.stack([session.predict_full(t) for t in range(session.n_frames)])
                axes = "T" + "ZYX"[-len(session.spatial_shape):]
                if session.n_frames == 1:
                    labels, axes = labels[0], axes[1:]
                data = dcc.send_bytes(encode_tiff(labels, axes), f"{stem}-labels.tif")
            session.timings["predict_full"] = time.perf_counter() - start
            return data, ""


def _log2(x: float) -> float:
    return round(math.log2(x) * 2) / 2


def _shown(shown: bool) -> dict:
    return {"display": "block" if shown else "none"}


def image_caption(session) -> str:
    """Name, frames, shape, channels and display scale of the session's image."""
    image = session.image
    frames = f"{image.n_frames} frames of " if image.n_frames > 1 else ""
    shape = " x ".join(map(str, session.spatial_shape))
    channels = ", RGB" if image.rgb else f", {image.n_channels} channels" if image.n_channels > 1 else ""
    shown = f", shown at 1/{session.scale} size" if session.scale > 1 else ""
    return f"{session.name}: {frames}{shape}{channels}{shown}"


def status_lines(session) -> list:
    """The backend and how long each step took, as page lines."""
    t = session.timings
    parts = [f"backend: {session.backend}"]
    if "features" in t:
        took = "from the cache" if t["features"] is None else f"{t['features']:.2f} s"
        parts.append(f"features (once per image and parameters) {took}")
    for key, what in (("train", "training"),
                      ("predict", "prediction of the shown pixels"), ("stroke_to_overlay", "stroke to overlay"),
                      ("train_full", "training of the full forest"), ("predict_full", "full-resolution prediction")):
        if key in t:
            parts.append(f"{what} {t[key]:.2f} s")
    if "train_pixels" in t:
        parts.append(f"{t['train_pixels']} training pixels")
    if session.model is not None:
        model = f"model: trained on {session.model_source}" if session.model_source == "scribbles" \
            else f"model: {session.model_source} (loaded from a file)"
        if session.shows_preview:
            model += (f"; shown: a preview, the first {session.model.n_estimators} of its "
                      f"{LIVE_FOREST['n_estimators']} trees (downloads use them all)")
    else:
        model = "model: none yet (scribble at least two classes)"
    lines = [html.Div(" | ".join(parts)), html.Div(model)]
    top = session.top_features()
    if top:
        lines.append(html.Div("top features: " + ", ".join(f"{name} ({share:.0%})" for name, share in top)))
    return lines


def register(app: dash.Dash, controller: Controller, max_upload_bytes: int) -> None:
    """Wire the page's components to ``controller``."""
    check = _CHECK_SIZE % (max_upload_bytes, max_upload_bytes / 2**20)
    for kind in ("image", "model"):
        app.clientside_callback(check, Output(f"pending-{kind}", "data"),
                                Output("message", "children", allow_duplicate=True),
                                Output(f"upload-{kind}", "contents"), Input(f"upload-{kind}", "contents"),
                                State(f"upload-{kind}", "filename"),
                                prevent_initial_call=True)

    app.clientside_callback(_STROKE_EDITS, Output("stroke-edits", "data"), Input("graph", "relayoutData"),
                            prevent_initial_call=True)

    @app.callback(Output("image-token", "data"),
                  Input("pending-image", "data"), State("session-id", "data"), State("image-token", "data"),
                  prevent_initial_call=True)
    def on_image(pending, session_id, token):
        if not pending:
            raise dash.exceptions.PreventUpdate
        controller.upload_image(session_id, pending)
        return (token or 0) + 1

    @app.callback(Output("model-token", "data"),
                  Input("pending-model", "data"), State("session-id", "data"), State("model-token", "data"),
                  prevent_initial_call=True)
    def on_model(pending, session_id, token):
        if not pending:
            raise dash.exceptions.PreventUpdate
        controller.upload_model(session_id, pending)
        return (token or 0) + 1

    names = ("figure", "status", "message", "classes", "label", "color", "planes", "plane", "plane_style",
             "frames", "frame", "frame_style", "channels", "channel", "channel_style", "features", "sigma",
             "image_name")

    @app.callback(
        Output("graph", "figure"), Output("status", "children"),
        Output("message", "children", allow_duplicate=True), Output("active-class", "options"),
        Output("active-class", "value"), Output("class-color", "value"), Output("plane", "max"),
        Output("plane", "value"), Output("plane-box", "style"), Output("frame", "max"), Output("frame", "value"),
        Output("frame-box", "style"), Output("channel", "options"), Output("channel", "value"),
        Output("channel-box", "style"), Output("features", "value"),
        Output("sigma", "value"), Output("image-name", "children"),
        Input("stroke-edits", "data"), Input("undo", "n_clicks"), Input("clear", "n_clicks"),
        Input("features", "value"), Input("sigma", "value"), Input("plane", "value"), Input("frame", "value"),
        Input("channel", "value"), Input("opacity", "value"), Input("view", "value"), Input("active-class", "value"),
        Input("width", "value"), Input("add-class", "n_clicks"), Input("rename-class", "n_clicks"),
        Input("class-color", "value"), Input("image-token", "data"), Input("model-token", "data"),
        State("class-name", "value"), State("session-id", "data"),
        prevent_initial_call=True,
    )
    def on_change(relayout, _undo, _clear, features, sigma, plane, frame, channel, opacity, view, label, width, _add,
                  _rename, class_color, image_token, model_token, class_name, session_id):
        trigger = "graph" if ctx.triggered_id == "stroke-edits" else ctx.triggered_id
        out = controller.update(
            session_id, trigger, relayout=relayout, plane=plane, frame=frame, channel=channel, label=label,
            width=width, features=features, sigma=sigma, view=view, opacity=opacity, class_name=class_name,
            class_color=class_color, tokens=(image_token, model_token),
        )
        return tuple(out[n] for n in names)

    @app.callback(Output("download", "data"), Output("message", "children", allow_duplicate=True),
                  Input("download-model", "n_clicks"), Input("download-png", "n_clicks"),
                  Input("download-tiff", "n_clicks"), Input("download-strokes", "n_clicks"),
                  State("session-id", "data"), State("plane", "value"), State("frame", "value"),
                  prevent_initial_call=True)
    def on_download(_model, _png, _tiff, _strokes, session_id, plane, frame):
        return controller.download(session_id, ctx.triggered_id, plane, frame)
