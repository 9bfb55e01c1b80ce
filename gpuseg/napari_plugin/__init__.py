"""gpuseg in napari: paint scribbles in a Labels layer, watch every pixel classified.

An npe2 plugin (``pip install 'gpuseg[napari]'``): its manifest, ``napari.yaml``
beside this file, names a dock widget (:class:`~gpuseg.napari_plugin.widget.SegmenterWidget`),
a reader that applies a ``.gpuseg`` model to the selected image, and the bundled
sample. napari imports those modules only when one of them is used; training and
prediction are :class:`gpuseg.Segmenter`'s, the engine of the CLI and the app.
"""
