"""Predicting into storage: a resumable OME-Zarr image streamed tile by tile, or a whole file.

:func:`predict_to_zarr` classifies an image tile by tile into a chunked,
compressed OME-Zarr image whose chunks are the tiles, frame by frame along
``T``; in this process several chunks are classified at once, a block about
as large as :meth:`gpuseg.Segmenter.predict`'s tiles, so that no more halo is
computed per pixel than in memory. It is resumable: the output records which
model and input it belongs to and the tile grid, and each finished tile
leaves an empty marker file,
``0/.gpuseg-done/<frame index>.<chunk index>``, created only after its chunk
is written (a block's chunks are written one after the other, each followed by
its marker). A run killed at any moment and started again with the same
arguments classifies only the blocks holding tiles without a marker and
writes only those tiles, rewriting whatever half-written chunk they may
have, and ends with the output of an
uninterrupted run; when all tiles are done the markers are removed and the
output marked complete (:func:`finish_zarr`). The labels' pyramid is written
with the tiles of a new output classified in this process; a resumed output's,
or a cluster's, is filled from level ``0`` once all tiles are done. Every tile is
classified and written by :meth:`gpuseg.tile_writer.TileWriter.write`, in this
process or on the workers of a Dask cluster (:mod:`gpuseg.cluster`); outputs
may be fsspec URLs.
"""

from __future__ import annotations

import hashlib
import itertools
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
from .axes import Frames
from .axes import predict as predict_axes
from .image_io import OUTPUT_SUFFIXES, locate, open_image, write_image
from .ome_zarr import add_to_labels_group, create, fill_pyramid, ome_order
from .segmenter import PREDICTS_WITH
from .source import Source, open_source
from .tile_writer import DONE_DIR, TileWriter
from .tiling import blocks, chunks_per_block

__all__ = ["finish_zarr", "model_fingerprint", "open_image", "open_source", "predict_to_file", "predict_to_zarr",
           "prepare_zarr", "run_jobs"]

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
                    axes=None, client=None):
    """Classify an image tile by tile into an OME-Zarr 0.5 image; resumable after a crash or a kill.

    Parameters
    ----------
    segmenter : gpuseg.Segmenter
        Trained.
    image : str, path-like or array
        A path or URL :func:`open_image` reads, or an array supporting slicing.
    out_path : str or path-like
        Output directory (conventionally ``*.zarr``), a local path or a URL
        (``file://``, ``s3://``, ``gs://``, ``memory://``; see
        :func:`gpuseg.image_io.locate`): an OME-Zarr 0.5 group
        (:mod:`gpuseg.ome_zarr`) with the input's axes in OME order less ``C``,
        and its pixel sizes. Labels (dtype ``segmenter.label_dtype``) are a
        labels image with a nearest-neighbour pyramid (levels ``0``, ``1``,
        ...); float32 probabilities one level with the classes on ``c``.
        Level ``0`` is chunked by tiles (one frame deep along ``T``).
    proba : bool
        Write probabilities instead of labels.
    tile_shape : tuple of int, optional
        Tile and chunk size, the unit of resuming; default the input's chunks
        (a Zarr or tiled TIFF input) when within the memory budget's tile, else
        that tile. On resume the output's tiles are kept. In this process
        (``client=None``) tiles are classified in blocks of several, as large
        as the memory budget's tile allows; the result does not depend on it.
    overwrite : bool
        Replace an existing output made with another model, input or output
        kind (otherwise refused). An output of this very job is resumed.
    progress : bool
        Show a progress bar with the time left.
    axes : str, optional
        The input's axes (OME letters, see :func:`open_source`): ``T`` frame
        by frame, ``C`` the channels, ``Z`` 3D.
    client : distributed.Client, optional
        Classify on this Dask cluster: its workers compute tiles and write
        their chunks and markers into the output themselves (see
        :mod:`gpuseg.cluster`), so the output and a path input must be where
        the workers can reach them; this process then finishes the output.
        Default: the active Dask client, if there is one, else this process.

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
    An input is recognised on resume by its path, shape, dtype, axes and
    content identity (size and modification time of each of its files, see
    :func:`gpuseg._file_guards.content_identity`; an array passed directly, or
    a URL other than ``file://``: by path, shape, dtype and axes), and the
    model by :func:`model_fingerprint`. Before anything is created, an output
    that is, holds or lies inside the input (but for the ``labels`` group of an
    OME-Zarr input) is refused and ``tile_shape`` is checked. A ``memory://``
    output lives in one process: use it without a cluster of worker processes.
    """
    from . import cluster

    job = prepare_zarr(segmenter, image, out_path, proba=proba, tile_shape=tile_shape, overwrite=overwrite, axes=axes)
    run_jobs([job], cluster.active_client(client), progress=progress)
    return job.out


def run_jobs(jobs, client=None, *, progress=True) -> None:
    """Classify and write the tiles left of prepared jobs, in this process or on ``client``'s cluster; finish each.

    Parameters
    ----------
    jobs : list of ZarrJob
        From :func:`prepare_zarr`.
    client : distributed.Client, optional
        See :func:`gpuseg.cluster.write_tiles`; ``None``: this process.
    progress : bool
        One progress bar over all the jobs' tiles.
    """
    from . import cluster

    # In this process a new labels output gets its pyramid with its tiles; a resumed one (whose chunks of the
    # levels a killed run may have left half-written) and a cluster's (many writers) get it filled at the end.
    with_tiles = [client is None and j.pyramid and j.created for j in jobs]
    if client is None:
        finished = itertools.chain.from_iterable(j.writer.write(j.predictor, j.blocks, pyramid=p)
                                                 for j, p in zip(jobs, with_tiles))
    else:
        finished = cluster.write_tiles(client, jobs)
    for _ in tqdm(finished, total=sum(j.n_tiles for j in jobs), initial=sum(j.n_done for j in jobs),
                  desc="gpuseg predict", unit="tile", disable=not progress):
        pass
    for job, pyramid_written in zip(jobs, with_tiles):
        finish_zarr(job, pyramid_written=pyramid_written)


class ZarrJob(NamedTuple):
    """A prediction output created or resumed, and what is left to do: see :func:`prepare_zarr`."""

    out: object
    model: str
    predictor: object
    writer: TileWriter
    todo: object
    blocks: object
    n_tiles: int
    n_done: int
    store: str
    pyramid: bool
    complete: bool
    created: bool


def prepare_zarr(segmenter, image, out_path, *, proba=False, tile_shape=None, overwrite=False, axes=None) -> ZarrJob:
    """Create (or check, to resume) the output of :func:`predict_to_zarr` and find the tiles without a marker.

    Parameters and errors are :func:`predict_to_zarr`'s.

    Returns
    -------
    job : ZarrJob
        ``out`` (a path, or the URL), ``model`` (:func:`model_fingerprint`),
        ``predictor``, ``writer``, ``todo`` (an iterator of the ``(frame index,
        tile)`` pairs without a marker, made one by one: any grid size; a
        cluster's tasks), ``blocks`` (the same tiles as ``(frame index,
        Block)`` pairs, grouped by :func:`gpuseg.tiling.blocks` into blocks
        no larger than the memory budget's tile: this process's work),
        ``n_tiles`` in all and ``n_done`` with a marker; ``store`` (the output
        group's path or URL), ``pyramid`` (labels: a pyramid to write),
        ``complete`` (nothing left to do) and ``created`` (a new output, not
        one resumed).
    """
    path = image if isinstance(image, (str, os.PathLike)) else None
    out = locate(out_path)
    if path is not None:
        check_outputs([(path, out_path)])
    source = open_source(segmenter, image, axes)
    frames = source.frames
    predictor = segmenter.predictor()
    job = {**_job(segmenter, source.array, path, proba), "axes": frames.axes}
    resume = out.fs.exists(out.path) and not overwrite
    complete = False
    if resume:
        tile_shape, complete = _resumed_tile_shape(out, job, tile_shape)
    first = next(iter(frames))[1]
    plan = predictor.plan(first, tile_shape or _input_chunks(source, predictor, first))
    axes_out = ome_order(frames.out_axes(proba))
    if not resume:
        if out.fs.exists(out.path):
            out.fs.rm(out.path, recursive=True)
        _create(out, {**job, "tile_shape": list(plan.tile_shape)}, segmenter, source, plan, axes_out, proba)
    writer = TileWriter(source.array if path is None else os.fspath(path), frames.axes, segmenter.ndim_,
                        segmenter.channel_axis, out.join("0"), axes_out, "proba" if proba else "labels",
                        plan.tile_shape, opened=frames)
    n_tiles = len(frames) * plan.tiles.count
    done = set() if complete else writer.done_markers()
    todo = iter(()) if complete else (
        (index, t) for index in frames.indices() for t in plan.tiles if writer.marker(index, t) not in done)
    per_block = chunks_per_block(plan.tiles.counts, plan.tile_shape,
                                 predictor.default_tile_shape(plan.spatial, predictor.n_features))
    todo_blocks = iter(()) if complete else (
        (index, b) for index in frames.indices()
        for b in blocks(plan.tiles, per_block, keep=lambda t, index=index: writer.marker(index, t) not in done))
    out_path = Path(out.path) if out.local else out.store
    return ZarrJob(out_path, job["model"], predictor, writer, todo, todo_blocks, n_tiles,
                   n_tiles if complete else len(done), out.store, not proba, complete, not resume)


def finish_zarr(job: ZarrJob, *, pyramid_written=False) -> None:
    """After a job's last tile: fill the labels' pyramid, remove the done-markers, mark the output ``complete``.

    ``pyramid_written``: the pyramid was written with the tiles
    (:meth:`TileWriter.write`'s ``pyramid``), and is not filled again from level ``0``.
    """
    if job.complete:
        return
    group = zarr.open_group(job.store, mode="r+")
    if job.pyramid and not pyramid_written:
        fill_pyramid(group, "".join(a["name"].upper() for a in group.attrs["ome"]["multiscales"][0]["axes"]))
    if job.writer.fs.exists(job.writer.done):
        job.writer.fs.rm(job.writer.done, recursive=True)
    group.attrs["gpuseg"] = {**group.attrs["gpuseg"], "complete": True}


def _input_chunks(source: Source, predictor, frame):
    """The input's chunks on the model's spatial axes when no longer than the default tile; else the default."""
    default = predictor.default_tile_shape(predictor.check_image(frame), predictor.n_features)
    chunks = getattr(source.array, "chunks", None)
    if not isinstance(chunks, tuple) or not all(isinstance(c, int) for c in chunks):
        return default
    size = dict(zip(source.frames.axes, chunks))
    chunked = tuple(size[a] for a in source.frames.spatial)
    return chunked if all(c <= d for c, d in zip(chunked, default)) else default


def _resumed_tile_shape(out, job: dict, tile_shape) -> tuple:
    """Tile shape of an existing output of ``job``, and whether it is complete; refuses any other output."""
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
    return tuple(stored["tile_shape"]), bool(stored.get("complete"))


def _create(out, attrs: dict, segmenter, source: Source, plan, axes_out: str, proba: bool) -> None:
    """Create the empty output beside ``out`` and move it into place.

    On a local filesystem the move is a rename, so the output exists whole or
    not at all; on an object store it is a copy of a few small files.
    """
    tmp, tmp_store = (_beside(p, ".{}.partial") for p in (out.path, out.store))
    if out.fs.exists(tmp):
        out.fs.rm(tmp, recursive=True)
    size = {**dict(zip(source.frames.loop, source.frames.loop_shape)), **dict(zip(source.frames.spatial, plan.spatial))}
    chunk = dict(zip(source.frames.spatial, plan.tile_shape))
    n_classes = len(segmenter.classes_)
    shape = tuple(n_classes if a == "C" else size[a] for a in axes_out)
    chunks = tuple(n_classes if a == "C" else chunk.get(a, 1) for a in axes_out)
    labelled = None if proba else _labels_source(source, out)
    try:
        create(tmp_store, axes_out, shape, chunks, np.float32 if proba else segmenter.label_dtype,
               sizes=source.metadata.sizes, unit=source.metadata.unit, attrs=attrs,
               classes=None if proba else segmenter.classes_, source=labelled)
        out.fs.makedirs(f"{tmp}/0/{DONE_DIR}", exist_ok=True)
        if out.local:
            os.rename(tmp, out.path)
        else:
            out.fs.mv(tmp, out.path, recursive=True)
    except BaseException:
        if out.fs.exists(tmp):
            out.fs.rm(tmp, recursive=True)
        raise
    if labelled is not None:
        add_to_labels_group(source.path, posixpath.basename(out.path.rstrip("/")))


def _beside(path: str, pattern: str) -> str:
    """The sibling of ``path`` (a path or URL) named ``pattern.format(its name)``."""
    parent, name = posixpath.split(path.rstrip("/"))
    return posixpath.join(parent, pattern.format(name))


def _labels_source(source: Source, out) -> str | None:
    """``"../../"`` when ``out`` is in the ``labels`` group of the OME-Zarr input, else ``None``."""
    if source.ome is None or source.path is None:
        return None
    where = locate(source.path)
    if out.local and where.local:
        inside = Path(out.path).resolve().parent == (Path(where.path) / "labels").resolve()
    else:
        inside = posixpath.dirname(out.store.rstrip("/")) == f"{where.store.rstrip('/')}/labels"
    return "../../" if inside else None


# -- whole files -------------------------------------------------------------------
def predict_to_file(segmenter, image, out_path, *, proba=False, axes=None, tile_shape=None, progress=None):
    """Classify a whole image in memory, frame by frame, and write it atomically.

    Parameters
    ----------
    segmenter : gpuseg.Segmenter
        Trained.
    image : str, path-like or array
        As in :func:`predict_to_zarr`.
    out_path : str or path-like
        ``.tif``/``.tiff`` (an ImageJ hyperstack), ``.ome.tif``/``.ome.tiff``
        (OME-TIFF), both calibrated like the input; ``.npy``; ``.png`` (2D
        labels, 8 or 16 bit).
    proba : bool
        Write float32 probabilities (the classes on a ``C`` axis) instead of labels.
    axes : str, optional
        As in :func:`predict_to_zarr`.
    tile_shape : tuple of int, optional
        Tile size of the computation; the result does not depend on it.
    progress : bool, optional
        Show a progress bar per frame (default: when it has more than 4 tiles).

    Returns
    -------
    out_path : pathlib.Path

    Raises
    ------
    ValueError
        An unsupported output suffix, or probabilities / 3D labels / frames to PNG.
    """
    out = Path(out_path)
    if isinstance(image, (str, os.PathLike)):
        check_outputs([(image, out)])
    suffix = out.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise ValueError(f"Cannot write {out}: predict_to_file writes .npy, .tif/.tiff (.ome.tif) or .png "
                         "(use predict_to_zarr for a .zarr output).")
    source = open_source(segmenter, image, axes)
    out_axes = source.frames.out_axes(proba)
    if suffix == ".png" and out_axes != "YX":
        raise ValueError(f"PNG holds 2D labels only (this result has axes {out_axes}); write "
                         f"{out.with_suffix('.tif').name} or a .npy instead.")
    _check_fits_in_memory(segmenter, source.frames, out, proba)
    result = predict_axes(segmenter, source.array, source.frames.axes, proba=proba, tile_shape=tile_shape,
                          progress=progress)
    return write_image(out, result, out_axes, sizes=source.metadata.sizes, unit=source.metadata.unit)


def _check_fits_in_memory(segmenter, frames: Frames, out: Path, proba: bool) -> None:
    """Refuse a whole-image prediction whose result alone would not fit in the available memory."""
    import psutil

    spatial = segmenter.predictor().check_image(next(iter(frames))[1])
    per_pixel = 4 * len(segmenter.classes_) if proba else np.dtype(segmenter.label_dtype).itemsize
    need, available = math.prod(frames.loop_shape + spatial) * per_pixel, psutil.virtual_memory().available
    if need > available:
        raise ValueError(
            f"{out} would hold {need / 2**30:.1f} GiB, and it is made in memory (only {available / 2**30:.1f} GiB "
            "are available); write a .zarr output instead, which is written tile by tile."
        )
