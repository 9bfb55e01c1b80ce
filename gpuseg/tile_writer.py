"""Classified tiles into a prediction output: each tile's Zarr chunk, then its done-marker.

:class:`TileWriter` is the one sink of :func:`gpuseg.stream.predict_to_zarr`,
in this process or on the workers of a Dask cluster (:mod:`gpuseg.cluster`).
A tile's marker, an empty file ``.gpuseg-done/<chunk index>`` in the array's
directory (or key prefix, on an object store), is written only after its chunk.
"""

from __future__ import annotations

import numpy as np
import zarr

from .image_io import locate, open_image

DONE_DIR = ".gpuseg-done"


class TileWriter:
    """Writes classified tiles of one image into a prediction output: each tile's chunk, then its marker.

    Every caller classifies and writes through :meth:`write`, in this process
    or on a Dask worker. It pickles without the opened image and array; where
    it is unpickled, it opens them the first time it writes.

    Parameters
    ----------
    source : str or array
        The image's path or URL (opened by :func:`open_image`), or the image.
    store : str
        Path or URL of the Zarr array the tiles go into (chunks are tiles).
    kind : {"labels", "proba"}
    classes_first : bool
        Probabilities are stored class axis first (OME-Zarr's axis order).
    tile_shape : tuple of int
    opened : array, optional
        The image already opened from ``source`` in this process (not pickled).
    """

    def __init__(self, source, store: str, kind: str, classes_first: bool, tile_shape: tuple, opened=None):
        self.source, self.store, self.kind = source, store, kind
        self.classes_first, self.tile_shape = classes_first and kind == "proba", tuple(tile_shape)
        where = locate(store)
        self.fs, self.done = where.fs, f"{where.path}/{DONE_DIR}"
        self._image, self._array = opened, None

    def __getstate__(self):
        return {**self.__dict__, "_image": None, "_array": None}

    def marker(self, tile) -> str:
        """Marker file name of a tile: its chunk index, e.g. ``"0.3"``."""
        return ".".join(str(s.start // t) for s, t in zip(tile.write, self.tile_shape))

    def done_markers(self) -> set:
        """Names of the markers written so far."""
        try:
            return {name.rsplit("/", 1)[-1] for name in self.fs.ls(self.done, detail=False)}
        except FileNotFoundError:  # object stores have no empty directories
            return set()

    def write(self, predictor, tiles, *, skip_done=False):
        """Classify ``tiles`` with ``predictor`` and write each one's chunk, then its marker.

        Parameters
        ----------
        predictor : gpuseg.predictor.Predictor
        tiles : list of Tile
            Tiles of the output's grid; each is one whole chunk, so writing one
            again (a retried task) rewrites the same bytes.
        skip_done : bool
            Leave out tiles whose marker exists (a task retried after its worker died).

        Yields
        ------
        tile : Tile
            Each tile, once its marker is written.
        """
        if self._image is None:
            self._image = open_image(self.source) if isinstance(self.source, str) else self.source
        if self._array is None:
            self._array = zarr.open_array(self.store, mode="r+")
        if skip_done:
            tiles = [t for t in tiles if not self.fs.exists(f"{self.done}/{self.marker(t)}")]
        for tile, result in predictor.classify_tiles(self._image, tiles, self.kind):
            if self.classes_first:
                self._array[(slice(None),) + tile.write] = np.moveaxis(result, -1, 0)
            else:
                self._array[tile.write] = result
            self.fs.touch(f"{self.done}/{self.marker(tile)}")
            yield tile
