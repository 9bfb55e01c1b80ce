"""Predicting into storage: a resumable Zarr array streamed tile by tile, or a whole file.

:func:`predict_to_zarr` classifies an image tile by tile into a chunked,
compressed Zarr v3 array whose chunks are the tiles. It is resumable: the
output records which model and input it belongs to and the tile grid, and each
finished tile leaves an empty marker file, ``.gpuseg-done/<chunk index>`` in
the array's directory, created only after its chunk is written. A run killed
at any moment and started again with the same arguments computes only the
tiles without a marker, rewriting whatever half-written chunk they may have,
and ends with the output of an uninterrupted run. Every tile is classified and
written by :meth:`TileWriter.write`, in this process or on the workers of a
Dask cluster (:mod:`gpuseg.cluster`); outputs may be fsspec URLs.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
from pathlib import Path
from typing import NamedTuple

import numpy as np
import zarr
from tqdm.auto import tqdm

from .image_io import OUTPUT_SUFFIXES, locate, open_image, open_image_and_multiscale, write_image
from .segmenter import PREDICTS_WITH

__all__ = ["model_fingerprint", "open_image", "predict_to_file", "predict_to_zarr", "prepare_zarr"]

FORMAT = "gpuseg-prediction"
DONE_DIR = ".gpuseg-done"


# -- fingerprints --------------------------------------------------------------
def model_fingerprint(segmenter) -> str:
    """SHA-256 of what a trained segmenter predicts with: its feature settings, classes and forest.

    Returns
    -------
    digest : str
        64 hex digits; equal for a model and the same model saved and loaded.
    """
    meta = segmenter.model_meta()
    meta = {k: meta[k] for k in PREDICTS_WITH}
    h = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    forest = segmenter.forest_
    for name in forest.ARRAYS:
        a = np.ascontiguousarray(getattr(forest, name))
        h.update(f"{name}{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _job(segmenter, image, path, proba: bool) -> dict:
    """What an output is the prediction of: compared on resume."""
    return {
        "format": FORMAT,
        "model": model_fingerprint(segmenter),
        "input": {
            "path": None if path is None else _input_name(locate(path)),
            "shape": [int(s) for s in image.shape],
            "dtype": str(np.dtype(image.dtype)),
        },
        "output": "probabilities" if proba else "labels",
    }


def _input_name(where) -> str:
    """How an input is recorded: its resolved path if local (given as a path or a ``file://`` URL), else its URL."""
    return str(Path(where.path).resolve()) if where.local else where.store


# -- streaming to Zarr -----------------------------------------------------------
def predict_to_zarr(segmenter, image, out_path, *, proba=False, tile_shape=None, overwrite=False, progress=True,
                    client=None):
    """Classify an image tile by tile into a Zarr v3 array; resumable after a crash or a kill.

    Parameters
    ----------
    segmenter : gpuseg.Segmenter
        Trained.
    image : str, path-like or array
        A path or URL :func:`open_image` reads, or an array of spatial shape
        ``S`` (plus the training images' channel axis) supporting slicing.
    out_path : str or path-like
        Output directory (conventionally ``*.zarr``), a local path or a URL
        (``file://``, ``s3://``, ``gs://``, ``memory://``; see
        :func:`gpuseg.image_io.locate`). Holds a Zarr array of labels (shape
        ``S``, dtype ``segmenter.label_dtype``) or float32 probabilities
        (``S + (n_classes,)``), chunked by tiles and compressed. For an
        OME-Zarr input it is an OME-Zarr 0.5 image instead: a group with one
        level, ``0``, and the input's axes and scale (probabilities then have
        their class axis first, ``(n_classes,) + S``, as OME orders axes).
    proba : bool
        Write probabilities instead of labels.
    tile_shape : tuple of int, optional
        Tile and chunk size; default from the memory budget. On resume the
        output's tiles are kept.
    overwrite : bool
        Replace an existing output made with another model, input or output
        kind (otherwise refused). An output of this very job is resumed.
    progress : bool
        Show a progress bar with the time left.
    client : distributed.Client, optional
        Classify on this Dask cluster: its workers compute tiles and write
        their chunks and markers into the output themselves (see
        :mod:`gpuseg.cluster`), so the output and a path input must be where
        the workers can reach them. Default: the active Dask client, if there
        is one, else this process.

    Returns
    -------
    out_path : pathlib.Path or str
        A path for a local output, the URL otherwise.

    Raises
    ------
    ValueError
        ``out_path`` exists and is not this job's output (pass ``overwrite=True``,
        ``--overwrite`` on the command line), or a ``tile_shape`` other than
        that of the output being resumed; an image the model cannot classify.

    Notes
    -----
    An input is recognised on resume by its path, shape and dtype (an array
    passed directly: by shape and dtype only), and the model by
    :func:`model_fingerprint`. A ``memory://`` output lives in one process:
    use it without a cluster of worker processes.
    """
    from . import cluster

    job = prepare_zarr(segmenter, image, out_path, proba=proba, tile_shape=tile_shape, overwrite=overwrite)
    client = cluster.active_client(client)
    finished = job.writer.write(job.predictor, job.todo) if client is None else cluster.write_tiles(client, [job])
    for _ in tqdm(finished, total=job.n_tiles, initial=job.n_tiles - len(job.todo), desc="gpuseg predict",
                  unit="tile", disable=not progress):
        pass
    return job.out


class ZarrJob(NamedTuple):
    """A prediction output created or resumed, and what is left to do: see :func:`prepare_zarr`."""

    out: object
    model: str
    predictor: object
    writer: "TileWriter"
    todo: list
    n_tiles: int


def prepare_zarr(segmenter, image, out_path, *, proba=False, tile_shape=None, overwrite=False) -> ZarrJob:
    """Create (or check, to resume) the output of :func:`predict_to_zarr` and list the tiles without a marker.

    Parameters and errors are :func:`predict_to_zarr`'s.

    Returns
    -------
    job : ZarrJob
        ``out`` (a path, or the URL), ``model`` (:func:`model_fingerprint`),
        ``predictor``, ``writer``, the tiles ``todo`` and the number of tiles in all.
    """
    path = image if isinstance(image, (str, os.PathLike)) else None
    image, ome = open_image_and_multiscale(path) if path is not None else (image, None)
    predictor = segmenter.predictor()
    out = locate(out_path)
    job = _job(segmenter, image, path, proba)
    resume = out.fs.exists(out.path) and not overwrite
    if resume:
        tile_shape = _resumed_tile_shape(out, job, tile_shape)
    plan = predictor.plan(image, tile_shape)
    if not resume:
        if out.fs.exists(out.path):
            out.fs.rm(out.path, recursive=True)
        _create(out, {**job, "tile_shape": list(plan.tile_shape)}, segmenter, plan.spatial, proba, ome)
    writer = TileWriter(image if path is None else os.fspath(path), out.store if ome is None else out.join("0"),
                        "proba" if proba else "labels", ome is not None, plan.tile_shape, opened=image)
    done = writer.done_markers()
    todo = [t for t in plan.tiles if writer.marker(t) not in done]
    return ZarrJob(Path(out.path) if out.local else out.store, job["model"], predictor, writer, todo, len(plan.tiles))


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


def _resumed_tile_shape(out, job: dict, tile_shape) -> tuple:
    """Tile shape of an existing output of ``job``; refuses any other output."""
    try:
        stored = dict(zarr.open(out.store, mode="r").attrs).get("gpuseg")
    except Exception:  # not Zarr at all, or unreadable
        stored = None
    if not isinstance(stored, dict) or {k: stored.get(k) for k in job} != job:
        raise ValueError(
            f"{out.store} already exists and is not the output of this model on this input "
            f"({job['output']}); pass overwrite=True (--overwrite) to replace it, or choose another output path."
        )
    if tile_shape is not None and [int(t) for t in tile_shape] != stored["tile_shape"]:
        raise ValueError(
            f"{out.store} is being written with tiles of {tuple(stored['tile_shape'])}; resume it without tile_shape, "
            "or pass overwrite=True (--overwrite) to start again."
        )
    return tuple(stored["tile_shape"])


def _create(out, attrs: dict, segmenter, spatial: tuple, proba: bool, ome) -> None:
    """Create the empty output beside ``out`` and move it into place.

    On a local filesystem the move is a rename, so the output exists whole or
    not at all; on an object store it is a copy of a few small files.
    """
    tmp, tmp_store = (_beside(p, ".{}.partial") for p in (out.path, out.store))
    if out.fs.exists(tmp):
        out.fs.rm(tmp, recursive=True)
    tile = tuple(attrs["tile_shape"])
    n_classes = len(segmenter.classes_)
    if not proba:
        shape, chunks, dtype = spatial, tile, segmenter.label_dtype
    elif ome is None:
        shape, chunks, dtype = spatial + (n_classes,), tile + (n_classes,), np.float32
    else:
        shape, chunks, dtype = (n_classes,) + spatial, (n_classes,) + tile, np.float32
    array = {"shape": shape, "chunks": chunks, "dtype": dtype, "fill_value": 0}
    if ome is None:
        zarr.create_array(store=tmp_store, attributes={"gpuseg": attrs}, **array)
    else:
        meta = _ome_multiscale(ome, segmenter.channel_axis, proba)
        group = zarr.create_group(store=tmp_store, attributes={"gpuseg": attrs, "ome": meta})
        group.create_array("0", **array)
    out.fs.makedirs(f"{tmp}/{'' if ome is None else '0/'}{DONE_DIR}", exist_ok=True)
    if out.local:
        os.rename(tmp, out.path)
    else:
        out.fs.mv(tmp, out.path, recursive=True)


def _beside(path: str, pattern: str) -> str:
    """The sibling of ``path`` (a path or URL) named ``pattern.format(its name)``."""
    parent, name = posixpath.split(path.rstrip("/"))
    return posixpath.join(parent, pattern.format(name))


def _ome_multiscale(ome: dict, channel_axis, proba: bool) -> dict:
    """OME-Zarr 0.5 metadata of a one-level output, from the input's ``multiscales`` entry.

    The input's channel axis is dropped; probabilities get a class axis first.
    """
    n_axes = len(ome["axes"])
    keep = [i for i in range(n_axes) if channel_axis is None or i != channel_axis % n_axes]

    def transforms(items):
        result = []
        for t in items or []:
            t = dict(t)
            for key, new in (("scale", 1.0), ("translation", 0.0)):
                if key in t:
                    t[key] = ([new] if proba else []) + [t[key][i] for i in keep]
            result.append(t)
        return result

    axes = [ome["axes"][i] for i in keep]
    axes = ([{"name": "class", "type": "channel"}] if proba else []) + [
        a if isinstance(a, dict) else {"name": a} for a in axes
    ]
    level0 = ome["datasets"][0]
    multiscale = {
        "name": "gpuseg probabilities" if proba else "gpuseg labels",
        "axes": axes,
        "datasets": [{"path": "0", "coordinateTransformations": transforms(level0.get("coordinateTransformations"))}],
    }
    if ome.get("coordinateTransformations"):
        multiscale["coordinateTransformations"] = transforms(ome["coordinateTransformations"])
    return {"version": "0.5", "multiscales": [multiscale]}


# -- whole files -------------------------------------------------------------------
def predict_to_file(segmenter, image, out_path, *, proba=False):
    """Classify a whole image in memory and write it atomically to ``.npy``, ``.tif``/``.tiff`` or ``.png``.

    Parameters
    ----------
    segmenter : gpuseg.Segmenter
        Trained.
    image : str, path-like or array
        As in :func:`predict_to_zarr`.
    out_path : str or path-like
        The suffix picks the format. PNG holds labels only (8 or 16 bit).
    proba : bool
        Write float32 probabilities of shape ``S + (n_classes,)`` instead of
        labels of shape ``S``.

    Returns
    -------
    out_path : pathlib.Path

    Raises
    ------
    ValueError
        An unsupported output suffix, or probabilities / 3D labels to PNG.
    """
    out = Path(out_path)
    suffix = out.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise ValueError(f"Cannot write {out}: predict_to_file writes .npy, .tif/.tiff or .png "
                         "(use predict_to_zarr for a .zarr output).")
    if suffix == ".png" and (proba or segmenter.ndim_ != 2):
        raise ValueError(f"PNG holds 2D labels only; write {out.with_suffix('.tif').name} or a .npy instead.")
    if isinstance(image, (str, os.PathLike)):
        image = open_image(image)
    return write_image(out, segmenter.predict_proba(image) if proba else segmenter.predict(image))
