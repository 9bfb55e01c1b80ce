"""The dock widget: pick an image and its scribbles, train, watch the result layers update."""

from __future__ import annotations

from pathlib import Path

import numpy as np

try:
    from magicgui.widgets import (CheckBox, ComboBox, Container, FloatSpinBox, Label, ProgressBar, PushButton,
                                  SpinBox)
    import napari.viewer
    from napari.layers import Image, Labels
    from napari.qt.threading import create_worker
    from qtpy.QtCore import QTimer
except ImportError as exc:
    raise ImportError(f"gpuseg's napari widget needs napari and Qt ({exc}); install them with "
                      "pip install 'gpuseg[napari]'.") from exc

from .. import Segmenter, load
from . import jobs
from .layers import ISOTROPY_NOTE, check_scribbles, image_input, visible_region

LIVE_DELAY_MS = 400
"""Quiet time after a paint stroke before live mode retrains (strokes in a burst train once)."""

RESULT, PROBABILITY, UNCERTAINTY = "gpuseg result", "gpuseg probability", "gpuseg uncertainty"


class SegmenterWidget(Container):
    """Trainable pixel classification of an Image layer from a Labels layer of scribbles.

    "Train" fits a :class:`gpuseg.Segmenter` on the scribbles and writes the
    labels of every pixel into the ``gpuseg result`` Labels layer (plus
    ``gpuseg probability``, one plane per class, and ``gpuseg uncertainty``
    Image layers when asked), all with the image's scale and translation. With
    "live" on, every paint stroke retrains after :data:`LIVE_DELAY_MS` of quiet.
    Work runs in a napari thread worker with a progress bar and a Cancel button.
    An image that is not a NumPy array in memory (Dask, Zarr) is classified
    where the canvas shows it, again whenever the view (plane, pan, zoom) comes
    to rest; "Predict full image" does the rest.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
    """

    def __init__(self, viewer: napari.viewer.Viewer):  # the annotation tells napari to pass its viewer
        self._viewer = viewer
        self.image = ComboBox(label="image", choices=self._layers_of(Image))
        self.channel_axis = ComboBox(label="channel axis", choices=self._channel_choices)
        self.scale_info = Label(label="scale")
        self.scale_info.native.setWordWrap(True)
        self.scribbles = ComboBox(label="scribbles", choices=self._layers_of(Labels))
        self.new_scribbles = PushButton(text="New scribbles layer")
        self.intensity = CheckBox(text="intensity", value=True)
        self.edges = CheckBox(text="edges", value=True)
        self.texture = CheckBox(text="texture", value=True)
        self.sigma_min = FloatSpinBox(label="sigma min", value=0.5, min=0.1, max=64.0, step=0.5)
        self.sigma_max = FloatSpinBox(label="sigma max", value=16.0, min=0.1, max=256.0, step=1.0)
        self.n_estimators = SpinBox(label="trees", value=50, min=1, max=1000)
        self.max_depth = SpinBox(label="max depth", value=10, min=1, max=64)
        self.backend = ComboBox(label="backend", choices=["auto", "cpu", "gpu"], value="auto")
        self.show_proba = CheckBox(text="probability and uncertainty layers")
        self.train = PushButton(text="Train")
        self.live = CheckBox(text="live: retrain after each stroke")
        self.predict_full = PushButton(text="Predict full image")
        self.progress = ProgressBar(value=0, min=0, max=1)
        self.cancel = PushButton(text="Cancel", enabled=False)
        self.save = PushButton(text="Save model...")
        self.load = PushButton(text="Load model...")
        self.status = Label(value="Paint at least two classes, then Train.")
        super().__init__(widgets=[
            self.image, self.channel_axis, self.scale_info, self.scribbles, self.new_scribbles,
            Container(widgets=[self.intensity, self.edges, self.texture], layout="horizontal", label="features"),
            self.sigma_min, self.sigma_max, self.n_estimators, self.max_depth, self.backend, self.show_proba,
            Container(widgets=[self.train, self.live], layout="horizontal", label=""),
            self.predict_full, Container(widgets=[self.progress, self.cancel], layout="horizontal", label="progress"),
            Container(widgets=[self.save, self.load], layout="horizontal", label="model"), self.status,
        ])
        self.segmenter = None
        self._worker = None
        self._rerun = False
        self._painted = None
        self._debounce = self._quiet_timer(self._live_train)
        self._view_debounce = self._quiet_timer(lambda: self.run(train=False))
        self.image.changed.connect(self._image_changed)
        self.channel_axis.changed.connect(self._describe)
        self.scribbles.changed.connect(self._scribbles_changed)
        self.new_scribbles.changed.connect(self.add_scribbles_layer)
        self.train.changed.connect(lambda: self.run(train=True))
        self.predict_full.changed.connect(lambda: self.run(train=False, full=True))
        self.live.changed.connect(lambda on: on and self._debounce.start())
        self.cancel.changed.connect(self.cancel_work)
        self.save.changed.connect(self._save_dialog)
        self.load.changed.connect(self._load_dialog)
        for event in ("inserted", "removed", "renamed"):
            getattr(viewer.layers.events, event).connect(self.reset_choices)
        camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera  # napari >= 0.9, before
        for emitter in (viewer.dims.events.current_step, camera.events.center, camera.events.zoom):
            emitter.connect(self._on_view)
        self.reset_choices()
        self._image_changed()
        self._scribbles_changed(self.scribbles.value)

    # -- choices --------------------------------------------------------------
    def _layers_of(self, kind):
        own = (RESULT, PROBABILITY, UNCERTAINTY)
        return lambda _widget: [(layer.name, layer) for layer in self._viewer.layers
                                if isinstance(layer, kind) and layer.name not in own]

    def _channel_choices(self, _widget):
        layer = self.image.value
        if layer is None or layer.rgb:
            return [("none" if layer is None else "RGB (last)", None)]
        return [("none (grayscale)", None)] + [(f"axis {i} ({n})", i) for i, n in enumerate(layer.data.shape)]

    def _image_changed(self, *_):
        self.channel_axis.reset_choices()
        self._describe()

    def _describe(self, *_):
        try:
            image = self.image_input()
        except ValueError as exc:
            self.scale_info.value = str(exc)
            return
        if image is None:
            self.scale_info.value = ""
            return
        text = " x ".join(f"{s:g}" for s in image.scale)
        self.scale_info.value = text + (f"\n{ISOTROPY_NOTE}" if image.anisotropic else "")
        self.predict_full.enabled = image.lazy

    def _scribbles_changed(self, layer):
        if self._painted is not None:
            self._painted.events.paint.disconnect(self._on_paint)
        self._painted = layer
        if layer is not None:
            layer.events.paint.connect(self._on_paint)

    def _on_paint(self, _event=None):
        if self.live.value:
            self._debounce.start()

    def _on_view(self, _event=None):
        """A lazy image follows the view: the region shown is classified once the view rests."""
        if self.segmenter is None or self.image.value is None:
            return
        try:
            lazy = image_input(self.image.value, self.segmenter.channel_axis).lazy
        except ValueError:
            return
        if lazy:
            self._view_debounce.start()

    def _quiet_timer(self, action):
        """A single-shot timer that runs ``action`` after :data:`LIVE_DELAY_MS` without a restart."""
        timer = QTimer(self.native)
        timer.setSingleShot(True)
        timer.setInterval(LIVE_DELAY_MS)
        timer.timeout.connect(action)
        return timer

    def _live_train(self):
        if self.live.value:
            self.run(train=True)

    # -- inputs -----------------------------------------------------------------
    def image_input(self):
        """The chosen Image layer as :class:`~gpuseg.napari_plugin.layers.ImageInput`, or None."""
        layer = self.image.value
        return None if layer is None else image_input(layer, self.channel_axis.value)

    def make_segmenter(self, image) -> Segmenter:
        """A :class:`gpuseg.Segmenter` with the widget's settings for ``image``."""
        return Segmenter(backend=self.backend.value, intensity=self.intensity.value, edges=self.edges.value,
                         texture=self.texture.value, sigma_min=self.sigma_min.value, sigma_max=self.sigma_max.value,
                         channel_axis=image.channel_axis, n_estimators=self.n_estimators.value,
                         max_depth=self.max_depth.value, random_state=0)

    def add_scribbles_layer(self):
        """Add an empty Labels layer over the image's spatial axes, with its scale, and choose it."""
        try:
            image = self.image_input()
            if image is None:
                raise ValueError("Choose an image first.")
        except ValueError as exc:
            self.status.value = str(exc)
            return None
        layer = self._viewer.add_labels(np.zeros(image.spatial_shape, np.uint8), name="scribbles",
                                        scale=image.scale, translate=image.translate)
        self.scribbles.value = layer
        return layer

    # -- work ---------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """Whether a worker is training or predicting."""
        return self._worker is not None

    def run(self, *, train: bool, full: bool = False):
        """Train on the scribbles (``train``) and classify the image, in a thread worker.

        A training asked for while a worker runs (a live stroke) starts when it
        finishes; other requests then are dropped. The image is classified where
        the canvas shows it when it is lazy (Dask, Zarr) and ``full`` is False,
        else everywhere.

        Returns
        -------
        worker : napari.qt.threading.GeneratorWorker or None
            None when nothing started (queued, or an input error shown in the status line).
        """
        if self.busy:
            self._rerun = self._rerun or train
            return None
        try:
            if self.image.value is None:
                raise ValueError("Choose an image layer.")
            if train:
                image = self.image_input()
                if self.scribbles.value is None:
                    raise ValueError("Choose a Labels layer of scribbles (or add one).")
                scribbles = check_scribbles(self.scribbles.value.data, image).copy()
                painted = np.unique(scribbles[scribbles > 0])
                if painted.size < 2:
                    raise ValueError(f"Paint at least two classes (so far: {painted.tolist() or 'none'}).")
                segmenter = self.make_segmenter(image)
            elif self.segmenter is None:
                raise ValueError("Train or load a model first.")
            else:  # a trained or loaded model, with its own channel axis
                image = image_input(self.image.value, self.segmenter.channel_axis)
                scribbles, segmenter = None, self.segmenter
        except ValueError as exc:
            self.status.value = str(exc)
            return None
        region = None
        if image.lazy and not full:
            dims = self._viewer.dims
            region = visible_region(self.image.value, image, dims.point, dims.displayed)
        worker = self._worker = create_worker(jobs.segment, image, segmenter=segmenter, scribbles=scribbles,
                                              region=region, proba=self.show_proba.value)
        worker.yielded.connect(lambda item: worker.abort_requested or self._receive(item, image))  # none after Cancel
        worker.returned.connect(self._trained)
        worker.errored.connect(lambda exc: setattr(self.status, "value", f"Error: {exc}"))
        worker.finished.connect(self._finished)
        self.cancel.enabled = True
        worker.start()
        return worker

    def cancel_work(self):
        """Stop the running worker at its next step; the result layers keep the blocks received before."""
        if self._worker is not None:
            self._rerun = False
            self._worker.quit()
            self.status.value = "Cancelled."

    def _receive(self, item, image):
        if isinstance(item, jobs.Progress):
            self.progress.max, self.progress.value = max(item.total, 1), item.done
            self.status.value = item.message
            return
        layer = self._result_layer(RESULT, image, image.spatial_shape, item.labels.dtype, "labels")
        layer.data[item.where] = item.labels
        layer.refresh()
        if item.proba is not None:
            k = item.proba.shape[-1]
            layer = self._result_layer(PROBABILITY, image, (k, *image.spatial_shape), np.float32, "image")
            layer.data[(slice(None), *item.where)] = np.moveaxis(item.proba, -1, 0)
            layer.refresh()
            layer = self._result_layer(UNCERTAINTY, image, image.spatial_shape, np.float32, "image")
            layer.data[item.where] = item.uncertainty
            layer.refresh()

    def _result_layer(self, name, image, shape, dtype, kind):
        """The viewer's layer ``name`` with this shape and dtype, made (zeros, image's scale) if missing."""
        if name in self._viewer.layers:
            layer = self._viewer.layers[name]
            if layer.data.shape == shape and layer.data.dtype == dtype:
                return layer
            self._viewer.layers.remove(layer)
        # np.zeros: the operating system commits memory only for the pages written, so a huge
        # image costs memory only where it was classified.
        data = np.zeros(shape, dtype)
        extra = len(shape) - len(image.spatial_shape)
        placed = {"name": name, "scale": (1.0,) * extra + image.scale, "translate": (0.0,) * extra + image.translate}
        layers, active = self._viewer.layers, self._viewer.layers.selection.active
        if kind == "labels":
            layer = self._viewer.add_labels(data, opacity=0.5, **placed)
        else:
            layer = self._viewer.add_image(data, contrast_limits=(0.0, 1.0), opacity=0.6, blending="additive",
                                           colormap="magma" if name == UNCERTAINTY else "viridis", visible=False,
                                           **placed)
        if self.scribbles.value in layers:  # under the strokes, so they stay visible
            layers.move(layers.index(layer), layers.index(self.scribbles.value))
        if active is not None:  # the brush keeps painting where it painted
            layers.selection.active = active
        return layer

    def _trained(self, segmenter):
        self.segmenter = segmenter
        self.status.value = f"Trained: classes {', '.join(map(str, segmenter.classes_))}."

    def _finished(self):
        self._worker = None
        self.cancel.enabled = False
        if self._rerun:
            self._rerun = False
            self.run(train=True)

    # -- model files -----------------------------------------------------------------
    def save_model(self, path):
        """Write the trained model to ``path`` (``.gpuseg`` appended if missing); returns the path."""
        if self.segmenter is None:
            raise ValueError("Train a model before saving it.")
        path = self.segmenter.save(path)
        self.status.value = f"Saved {path}."
        return path

    def load_model(self, path):
        """Load a ``.gpuseg`` model, show its settings, and classify the chosen image with it.

        Returns
        -------
        worker : napari.qt.threading.GeneratorWorker or None
            As :meth:`run` returns it (None when no image is chosen).
        """
        segmenter = load(path, backend=self.backend.value)
        for name in ("intensity", "edges", "texture", "sigma_min", "sigma_max"):
            getattr(self, name).value = getattr(segmenter, name)
        for name in ("n_estimators", "max_depth"):
            if segmenter.forest_params[name] is not None:
                getattr(self, name).value = segmenter.forest_params[name]
        self.segmenter = segmenter
        self.status.value = f"Loaded {Path(path).name}."
        return self.run(train=False)

    def _save_dialog(self):
        from qtpy.QtWidgets import QFileDialog

        path, _ = QFileDialog.getSaveFileName(self.native, "Save gpuseg model", "model.gpuseg",
                                              "gpuseg models (*.gpuseg)")
        if path:
            self._report(self.save_model, path)

    def _load_dialog(self):
        from qtpy.QtWidgets import QFileDialog

        path, _ = QFileDialog.getOpenFileName(self.native, "Load gpuseg model", "", "gpuseg models (*.gpuseg)")
        if path:
            self._report(self.load_model, path)

    def _report(self, action, path):
        try:
            action(path)
        except (OSError, ValueError) as exc:
            self.status.value = f"Error: {exc}"
