"""Predicting into storage: a resumable Zarr array streamed tile by tile, or a whole file.

:func:`predict_to_zarr` classifies an image tile by tile into a chunked,
compressed Zarr v3 array whose chunks are the tiles. It is resumable: the
output records which model and input it belongs to and the tile grid, and each
finished tile leaves an empty marker file, ``.gpuseg-done/<chunk index>`` in
the array's directory, created only after its chunk is written. A run killed
at any moment and started again with the same arguments computes only the
tiles without a marker, rewriting whatever half-written chunk they may have,
and ends with the output of an uninterrupted run. Every tile is classified and
written by :meth:`gpuseg.tile_writer.TileWriter.write`, in this process or on the workers of a
Dask cluster (:mod:`gpuseg.cluster`); outputs may be fsspec URLs.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import posixpath
from pathlib import Path
from typing import NamedTuple

import numpy as np
import zarr
from tqdm.auto import tqdm

from ._file_guards import check_outputs, content_identity
from .image_io import OUTPUT_SUFFIXES, locate, open_image, open_image_and_multiscale, write_image
from .segmenter import PREDICTS_WITH
from .tile_writer import DONE_DIR, TileWriter

__all__ = ["model_fingerprint", "open_image", "predict_to_file", "predict_to_zarr", "prepare_zarr"]

FORMAT = "gpuseg-prediction"


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
    for forest in (segmenter.forest_, segmenter.context_forest_):
        for name in forest.ARRAYS if forest is not None else ():
            a = np.ascontiguousarray(getattr(forest, name))
            h.update(f"{name}{a.dtype.str}{a.shape}".encode())
            h.update(a.tobytes())
    return h.hexdigest()


def _job(segmenter, image, path, proba: bool) -> dict:
    """What an output is the prediction of: compared on resume.

    A local input (a path or a ``file://`` URL) is named by its resolved path
    and has a content identity; an input at another URL is named by the URL.
    """
    where = None if path is None else locate(path)
    return {
        "format": FORMAT,
        "model": model_fingerprint(segmenter),
        "input": {
            "path": None if where is None else (str(Path(where.path).resolve()) if where.local else where.store),
            "shape": [int(s) for s in image.shape],
            "dtype": str(np.dtype(image.dtype)),
            "content": content_identity(where.path) if where is not None and where.local else None,
        },
        "output": "probabilities" if proba else "labels",
    }


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
        ``out_path`` exists and is not this job's output, or its input changed
        since (pass ``overwrite=True``, ``--overwrite`` on the command line); a
        ``tile_shape`` other than that of the output being resumed, or not one
        positive size per axis; an output over the input; an image the model
        cannot classify.

    Notes
    -----
    An input is recognised on resume by its path, shape, dtype and content
    identity (size and modification time of each of its files, see
    :func:`gpuseg._file_guards.content_identity`; an array passed directly, or
    a URL other than ``file://``: by path, shape and dtype only), and the model
    by :func:`model_fingerprint`. Before anything is created, an output that
    is, holds or lies inside the input is refused and ``tile_shape`` is
    checked. A ``memory://`` output lives in one process: use it without a
    cluster of worker processes.
    """
    from . import cluster

    job = prepare_zarr(segmenter, image, out_path, proba=proba, tile_shape=tile_shape, overwrite=overwrite)
    client = cluster.active_client(client)
    finished = job.writer.write(job.predictor, job.todo) if client is None else cluster.write_tiles(client, [job])
    for _ in tqdm(finished, total=job.n_tiles, initial=job.n_done, desc="gpuseg predict", unit="tile",
                  disable=not progress):
        pass
    return job.out


class ZarrJob(NamedTuple):
    """A prediction output created or resumed, and what is left to do: see :func:`prepare_zarr`."""

    out: object
    model: str
    predictor: object
    writer: TileWriter
    todo: object
    n_tiles: int
    n_done: int


def prepare_zarr(segmenter, image, out_path, *, proba=False, tile_shape=None, overwrite=False) -> ZarrJob:
    """Create (or check, to resume) the output of :func:`predict_to_zarr` and find the tiles without a marker.

    Parameters and errors are :func:`predict_to_zarr`'s.

    Returns
    -------
    job : ZarrJob
        ``out`` (a path, or the URL), ``model`` (:func:`model_fingerprint`),
        ``predictor``, ``writer``, ``todo`` (an iterator of the tiles without a
        marker, made one by one: any grid size), ``n_tiles`` in all and
        ``n_done`` with a marker.
    """
    path = image if isinstance(image, (str, os.PathLike)) else None
    out = locate(out_path)
    if path is not None:
        check_outputs([(path, out_path)])
    image, ome = open_image_and_multiscale(path) if path is not None else (image, None)
    predictor = segmenter.predictor()
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
    todo = (t for t in plan.tiles if writer.marker(t) not in done)
    out_path = Path(out.path) if out.local else out.store
    return ZarrJob(out_path, job["model"], predictor, writer, todo, plan.tiles.count, len(done))


def _resumed_tile_shape(out, job: dict, tile_shape) -> tuple:
    """Tile shape of an existing output of ``job``; refuses any other output."""
    try:
        stored = dict(zarr.open(out.store, mode="r").attrs).get("gpuseg")
    except Exception:  # not Zarr at all, or unreadable
        stored = None
    if isinstance(stored, dict) and isinstance(stored.get("input"), dict) and job["input"]["content"] is not None:
        same_but_content = {**stored, "input": {**stored["input"], "content": job["input"]["content"]}}
        if {k: same_but_content.get(k) for k in job} == job and stored["input"].get("content") != job["input"]["content"]:
            raise ValueError(
                f"The input {job['input']['path']} changed since {out.store} was started (its files' sizes or times "
                "differ): resuming would mix old and new pixels. Pass overwrite=True (--overwrite) to start again."
            )
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
    try:
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
    except BaseException:
        if out.fs.exists(tmp):
            out.fs.rm(tmp, recursive=True)
        raise


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
    if isinstance(image, (str, os.PathLike)):
        check_outputs([(image, out)])
    suffix = out.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise ValueError(f"Cannot write {out}: predict_to_file writes .npy, .tif/.tiff or .png "
                         "(use predict_to_zarr for a .zarr output).")
    if suffix == ".png" and (proba or segmenter.ndim_ != 2):
        raise ValueError(f"PNG holds 2D labels only; write {out.with_suffix('.tif').name} or a .npy instead.")
    if isinstance(image, (str, os.PathLike)):
        image = open_image(image)
    _check_fits_in_memory(segmenter, image, out, proba)
    return write_image(out, segmenter.predict_proba(image) if proba else segmenter.predict(image))


def _check_fits_in_memory(segmenter, image, out: Path, proba: bool) -> None:
    """Refuse a whole-image prediction whose result alone would not fit in the available memory."""
    import psutil

    spatial = segmenter.predictor().check_image(image)
    per_pixel = 4 * len(segmenter.classes_) if proba else np.dtype(segmenter.label_dtype).itemsize
    need, available = math.prod(spatial) * per_pixel, psutil.virtual_memory().available
    if need > available:
        raise ValueError(
            f"{out} would hold {need / 2**30:.1f} GiB, and it is made in memory (only {available / 2**30:.1f} GiB "
            "are available); write a .zarr output instead, which is written tile by tile."
        )
