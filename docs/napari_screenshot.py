"""Make docs/napari-screenshot.png: the gpuseg widget in napari after a live segmentation.

Run on a machine with a display, or headless in a virtual one from Xvfb::

    Xvfb :97 -screen 0 1920x1200x24 & DISPLAY=:97 python docs/napari_screenshot.py

(Qt's ``xcb`` platform there, not ``offscreen``: the offscreen platform draws the
canvas only for ``canvas_only=True``, and this picture needs the widget beside it.)

The bundled texture mosaic opens as napari's sample; live mode is switched on
and the sample's scribbles are painted as one stroke, which retrains the forest
and fills the result layer; the window (widget included) is then captured with
the viewer's screenshot API.
"""

from pathlib import Path

import napari
import numpy as np
from qtpy.QtWidgets import QApplication

from gpuseg.napari_plugin.contributions import texture_mosaic_sample
from gpuseg.napari_plugin.widget import SegmenterWidget

OUT = Path(__file__).resolve().parent / "napari-screenshot.png"


def main():
    viewer = napari.Viewer()
    viewer.window.resize(1500, 1000)
    (image, image_kwargs, _), (strokes, _, _), (truth, _, _) = texture_mosaic_sample()
    viewer.add_image(image, **image_kwargs)
    widget = SegmenterWidget(viewer)
    viewer.window.add_dock_widget(widget, name="gpuseg pixel classifier")
    widget.sigma_max.value = 8.0
    scribbles = widget.add_scribbles_layer()
    widget.live.value = True
    where = np.nonzero(strokes)
    scribbles.data_setitem(where, strokes[where])  # one paint event, as a stroke of the brush emits
    app = QApplication.instance()
    while not widget.busy:  # the debounce timer starts the worker
        app.processEvents()
    while widget.busy:
        app.processEvents()
    viewer.layers.selection.active = scribbles
    viewer.reset_view()
    app.processEvents()
    viewer.screenshot(str(OUT), canvas_only=False, flash=False)
    print(f"{OUT}: {widget.status.value}, {(viewer.layers['gpuseg result'].data == truth).mean():.1%} of pixels "
          "equal to the ground truth")
    viewer.close()


if __name__ == "__main__":
    main()
