"""The interactive app: scribble on an image in the browser, see it segmented live.

Needs the ``app`` extra (Dash and plotly): ``pip install 'gpuseg[app]'``.
Start it with ``gpuseg app [IMAGE]`` or :func:`run`; :func:`create_app`
builds the Dash app without serving it (for tests and WSGI servers).
"""

from __future__ import annotations

import uuid
from pathlib import Path

APP_INSTALL_HINT = "pip install 'gpuseg[app]'"

__all__ = ["create_app", "run"]


def _require_dash():
    try:
        import dash  # noqa: F401
        import plotly  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"The gpuseg app needs Dash and plotly ({exc}); install them with {APP_INSTALL_HINT}."
        ) from exc


def sample_image():
    """The bundled sample (scikit-image's ``coins``, no download) as :class:`~gpuseg.app.frames.Frames`, and its name."""
    from skimage import data

    from .frames import Frames

    return Frames(data.coins()[None, ..., None]), "coins.png (scikit-image sample)"


def create_app(image_path=None, model=None, *, backend="auto", max_upload_mb=64.0, max_sessions=32,
               sessions_gb=2.0, idle_hours=4.0, cache_gb=4.0):
    """Build the Dash app.

    Parameters
    ----------
    image_path : str or path-like, optional
        PNG, JPEG or TIFF to start every session with; the bundled sample by default.
    model : str or path-like, optional
        A ``.gpuseg`` model to apply to the starting image (loaded with :func:`gpuseg.load`).
    backend : {"auto", "cpu", "gpu"}
    max_upload_mb : float
        Largest upload accepted; larger files are refused in the browser, with a message.
    max_sessions, sessions_gb, idle_hours
        Sessions (browser tabs) kept on the server: at most this many, their images and
        overlays within this many GiB, each idle for at most this long. Past these the
        least recently used is dropped; its tab is told, and can download its strokes
        (see :class:`gpuseg.app.store.SessionStore`).
    cache_gb : float
        Memory budget of the cached feature stacks, shared by all sessions.

    Returns
    -------
    app : dash.Dash

    Raises
    ------
    ImportError
        Without Dash or plotly, with the install hint.
    ValueError
        An unreadable image or model file.
    """
    _require_dash()
    import dash

    from .. import load
    from . import callbacks, layout
    from .display import COLORS
    from .session import Session
    from .store import FeatureCache, SessionStore
    from .files import read_image

    if image_path is None:
        image, name = sample_image()
    else:
        image, name = read_image(Path(image_path).read_bytes(), str(image_path)), Path(image_path).name
    start_model = None if model is None else load(model, backend=backend)
    cache = FeatureCache(int(cache_gb * 2**30))

    def new_session():
        session = Session(image, name, cache, backend)
        if start_model is not None:
            try:
                session.apply_model(start_model, Path(model).name)
            except ValueError as exc:
                session.message = str(exc)
        return session

    max_bytes = int(max_upload_mb * 2**20)
    app = dash.Dash(__name__, title="gpuseg", update_title=None)
    # Base64 makes an upload 4/3 larger; anything far beyond the limit is refused by the server too.
    app.server.config["MAX_CONTENT_LENGTH"] = max_bytes * 3 // 2 + (1 << 20)
    controller = callbacks.Controller(SessionStore(new_session, max_sessions, int(sessions_gb * 2**30),
                                                   idle_hours * 3600), backend)

    def page():  # a new session for every page load: one per browser tab
        session_id = uuid.uuid4().hex
        return layout.serve_layout(COLORS, max_upload_mb, session_id, controller.update(session_id, None))

    app.layout = page
    callbacks.register(app, controller, max_bytes)
    return app


def run(image_path=None, host="127.0.0.1", port=8050, model=None, **options):
    """Serve the app until interrupted; ``options`` go to :func:`create_app`.

    Binds 127.0.0.1 (this machine only) unless ``host`` says otherwise.
    """
    app = create_app(image_path, model, **options)
    print(f"gpuseg app: open http://{host}:{port}/ in a browser (Ctrl+C stops it)")
    app.run(host=host, port=port, debug=False)
