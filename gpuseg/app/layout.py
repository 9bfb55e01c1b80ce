"""The page: controls on the left, the image with its scribbles and overlay on the right.

Also the figure itself (:func:`figure`) and the pieces of it that callbacks
patch (:func:`shapes`, :func:`newshape`), so the page and its updates
are drawn by the same code.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from dash import dcc, html

from .display import png_source
from .session import LIVE_FOREST, PREVIEW_TREES, Session

SIGMA_LOG2 = (-1, 5)  # sigma slider range: 0.5 to 32 pixels, log2 scale
_FULL_FOREST = (f"The full forest of {LIVE_FOREST['n_estimators']} trees; on the CPU the overlay shows a preview, "
                f"its first {PREVIEW_TREES}, trained after each stroke.")
VIEWS = {"segmentation": "Segmentation", "probability": "Probability of the selected class",
         "uncertainty": "Uncertainty (where the forest is least sure)"}
FEATURES = {"intensity": "Intensity", "edges": "Edges", "texture": "Texture"}
COMPOSITE = "composite"  # the channel dropdown's value for the first three channels as red, green, blue
GRAPH_CONFIG = {
    "modeBarButtonsToAdd": ["drawopenpath", "eraseshape"],
    "displaylogo": False,
    "scrollZoom": True,
    "toImageButtonOptions": {"format": "png"},
}
_BLANK = png_source(np.zeros((1, 1, 4), np.uint8))

_PANEL = {"width": "320px", "flex": "0 0 320px", "padding": "10px 14px", "overflowY": "auto",
          "borderRight": "1px solid #ddd", "fontSize": "14px"}
_BUTTON = {"marginRight": "6px", "marginTop": "4px"}
_UPLOAD = {"border": "1px dashed #888", "borderRadius": "6px", "padding": "8px", "textAlign": "center",
           "cursor": "pointer", "marginBottom": "6px", "fontSize": "13px"}


def shapes(session: Session, plane: int, frame: int = 0) -> list:
    """The figure's shapes: the strokes of the plane shown, named ``s<id>``, in their class colours."""
    return [
        {"type": "path", "path": s.path, "name": f"s{s.id}", "editable": True, "opacity": 0.9,
         "line": {"color": session.class_of(s.label).color, "width": s.width}}
        for s in session.strokes.on(plane, frame)
    ]


def newshape(session: Session, label: int, width: float) -> dict:
    """How the next drawn stroke looks; its name ``c<label>`` tells the server its class."""
    return {"line": {"color": session.class_of(label).color, "width": width}, "opacity": 0.9,
            "name": f"c{label}"}


def figure(session: Session, plane: int, overlay: str | None, *, frame: int = 0, channel: int | None = None,
           label: int, width: float, opacity: float, revision: str) -> go.Figure:
    """The image (downsampled for display) in full-resolution pixel coordinates, overlay and strokes.

    ``overlay`` is the ``data:`` URI :meth:`Session.refresh` returns, or None; ``plane``, ``frame`` and
    ``channel`` are what :meth:`Session.display_image` shows.
    """
    scale = session.scale
    at = {"x0": (scale - 1) / 2, "y0": (scale - 1) / 2, "dx": scale, "dy": scale, "hoverinfo": "skip"}
    fig = go.Figure([
        go.Image(source=png_source(session.display_image(plane, frame, channel)), name="image", **at),
        go.Image(source=overlay or _BLANK, name="overlay", opacity=opacity, visible=overlay is not None, **at),
    ])
    fig.update_layout(
        dragmode="drawopenpath", newshape=newshape(session, label, width), shapes=shapes(session, plane, frame),
        margin={"l": 0, "r": 0, "t": 0, "b": 0}, uirevision=revision,
        xaxis={"visible": False}, yaxis={"visible": False, "scaleanchor": "x"},
        plot_bgcolor="white", paper_bgcolor="white",
    )
    return fig


def _section(title: str, *children) -> html.Div:
    return html.Div([html.H4(title, style={"margin": "10px 0 3px"}), *children])


def class_options(session: Session) -> list:
    """Radio options of the classes, each with a swatch of its colour."""
    return [
        {"label": html.Span([
            html.Span(style={"display": "inline-block", "width": "14px", "height": "14px", "marginRight": "6px",
                             "verticalAlign": "middle", "background": c.color, "borderRadius": "3px"}),
            c.name]), "value": c.value}
        for c in session.classes
    ]


def channel_options(session: Session) -> list:
    """Dropdown options of the channel shown: the composite (``COMPOSITE``), then each channel (its index)."""
    n = session.image.n_channels
    composite = "Composite (0 red, 1 green)" if n == 2 else "Composite (0 red, 1 green, 2 blue)"
    return [{"label": composite, "value": COMPOSITE}] + [{"label": f"Channel {c}", "value": c} for c in range(n)]


def _index_slider(what: str, title: str, shown: dict) -> html.Div:
    """Slider ``what`` (``"plane"``, ``"frame"``) in box ``what-box``, hidden for an image with one of them;
    its maximum, value and style are ``shown[what + "s"]``, ``shown[what]``, ``shown[what + "_style"]``."""
    return html.Div(id=f"{what}-box", style=shown[f"{what}_style"], children=[
        html.Label(title), dcc.Slider(id=what, min=0, max=max(shown[f"{what}s"], 1), step=1, value=shown[what],
                                      marks=None, tooltip={"placement": "bottom"})])


def serve_layout(palette: dict, max_upload_mb: float, session_id: str, shown: dict):
    """The page of one browser tab.

    Parameters
    ----------
    palette : dict
        Colour names to ``#rrggbb``.
    max_upload_mb : float
    session_id : str
        The tab's session, kept in the page's ``session-id`` store.
    shown : dict
        What the page shows first: the outputs of ``Controller.update`` (figure included, so that
        every later update can patch it).
    """
    color_options = [{"label": html.Span("\u25a0 " + name, style={"color": c}), "value": c}
                     for name, c in palette.items()]
    controls = html.Div([
        html.H3("gpuseg", style={"margin": "4px 0"}),
        html.Div("Pick a class, then draw on the image with the mouse. The classifier retrains after "
                 "every stroke and colours every pixel. To remove a stroke: Undo, or click it and use the "
                 "eraser of the figure's tool bar.", style={"color": "#555", "fontSize": "13px"}),
        _section("Image",
                 dcc.Upload(id="upload-image", children=html.Div(["Drop or ", html.A("choose an image"),
                                                                  " (PNG, JPEG, TIFF)"]),
                            style=_UPLOAD, accept=".png,.jpg,.jpeg,.tif,.tiff"),
                 html.Div(shown["image_name"], id="image-name", style={"fontSize": "12px", "color": "#555"}),
                 html.Div(id="channel-box", style=shown["channel_style"], children=[
                     html.Label("Channel shown (training uses all)"),
                     dcc.Dropdown(id="channel", options=shown["channels"], value=shown["channel"],
                                  clearable=False, searchable=False)]),
                 _index_slider("frame", "Time point (T)", shown),
                 _index_slider("plane", "Slice (Z)", shown)),
        _section("Classes",
                 dcc.RadioItems(id="active-class", options=shown["classes"], value=shown["label"],
                                labelStyle={"display": "block"}),
                 html.Div("Selected class: rename it, change its colour, or add a class.",
                          style={"fontSize": "12px", "color": "#777", "marginTop": "4px"}),
                 html.Div([
                     dcc.Input(id="class-name", placeholder="new name", debounce=True,
                               style={"width": "170px"}),
                     html.Button("Rename", id="rename-class", style=_BUTTON),
                 ]),
                 html.Div([
                     dcc.Dropdown(id="class-color", options=color_options, value=shown["color"], clearable=False,
                                  placeholder="colour", style={"width": "130px", "display": "inline-block",
                                                               "verticalAlign": "middle"}),
                     html.Button("Add class", id="add-class", style=_BUTTON),
                 ])),
        _section("Strokes",
                 html.Label("Width"), dcc.Slider(id="width", min=1, max=40, step=1, value=8,
                                                 marks={1: "1", 10: "10", 20: "20", 40: "40"},
                                                 allow_direct_input=False),
                 html.Button("Undo", id="undo", style=_BUTTON), html.Button("Clear", id="clear", style=_BUTTON)),
        _section("Features",
                 dcc.Checklist(id="features", options=[{"label": v, "value": k} for k, v in FEATURES.items()],
                               value=shown["features"], inline=True, inputStyle={"marginRight": "4px"},
                               labelStyle={"marginRight": "10px"}),
                 html.Label("Sigma range (pixels)"),
                 dcc.RangeSlider(id="sigma", min=SIGMA_LOG2[0], max=SIGMA_LOG2[1], step=0.5, value=shown["sigma"],
                                 marks={v: f"{2.0 ** v:g}" for v in range(SIGMA_LOG2[0], SIGMA_LOG2[1] + 1)},
                                 allow_direct_input=False)),
        _section("View",
                 dcc.RadioItems(id="view", options=[{"label": v, "value": k} for k, v in VIEWS.items()],
                                value="segmentation", labelStyle={"display": "block"}),
                 html.Label("Overlay opacity"),
                 dcc.Slider(id="opacity", min=0, max=1, step=0.05, value=0.5, marks={0: "0", 0.5: "0.5", 1: "1"},
                            allow_direct_input=False)),
        _section("Model",
                 html.Button("Download model", id="download-model", style=_BUTTON, title=_FULL_FOREST),
                 html.Button("Labels PNG", id="download-png", style=_BUTTON, title=_FULL_FOREST),
                 html.Button("Labels TIFF", id="download-tiff", style=_BUTTON, title=_FULL_FOREST),
                 html.Button("Strokes (JSON)", id="download-strokes", style=_BUTTON),
                 dcc.Upload(id="upload-model", children=html.Div(["Drop or ", html.A("choose a .gpuseg model"),
                                                                  " to apply"]),
                            style={**_UPLOAD, "marginTop": "8px"}, accept=".gpuseg"),
                 html.Div(f"Uploads up to {max_upload_mb:g} MB.", style={"fontSize": "12px", "color": "#777"})),
    ], style=_PANEL)
    main = html.Div([
        html.Div(shown["message"], id="message", role="alert",
                 style={"color": "#b00020", "minHeight": "20px", "fontWeight": "bold"}),
        dcc.Loading(dcc.Graph(id="graph", figure=shown["figure"], config=GRAPH_CONFIG, style={"height": "78vh"}),
                    delay_show=800),
        html.Div(shown["status"], id="status", style={"fontFamily": "monospace", "fontSize": "13px", "color": "#333"}),
    ], style={"flex": "1 1 auto", "padding": "8px 12px", "minWidth": 0})
    return html.Div([
        dcc.Store(id="session-id", data=session_id),
        dcc.Store(id="pending-image"), dcc.Store(id="pending-model"), dcc.Store(id="stroke-edits"),
        dcc.Store(id="image-token", data=0), dcc.Store(id="model-token", data=0),
        dcc.Download(id="download"),
        controls, main,
    ], style={"display": "flex", "height": "100vh", "fontFamily": "sans-serif"})
