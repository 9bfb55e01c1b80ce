"""Predicting into storage: a resumable Zarr array streamed tile by tile, or a whole file.

:func:`predict_to_zarr` classifies an image tile by tile into a chunked,
compressed OME-Zarr image whose chunks are the tiles, frame by frame along
``T``. It is resumable: the output records which model and input it belongs to
and the tile grid, and each finished tile leaves an empty marker file,
``0/.gpuseg-done/<frame index>.<chunk index>``, created only after its chunk
is written. A run killed at any moment and started again with the same
arguments computes only the tiles without a marker, rewriting whatever
half-written chunk they may have, and ends with the output of an
uninterrupted run; the markers go when it is complete.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from pathlib import Path
from typing import NamedTuple

import numpy as np
import zarr
from tqdm.auto import tqdm

from ._file_guards import check_outputs, content_identity
from .axes import Frames, frames_of, model_layout
from .axes import predict as predict_axes
from .guards import warn_if_unlike_training
from .image_io import OUTPUT_SUFFIXES, open_image, open_image_and_multiscale, write_image
from .metadata import NOTHING, Metadata, read_metadata
from .ome_zarr import add_to_labels_group, create, fill_pyramid, ome_order
from .segmenter import PREDICTS_WITH

__all__ = ["model_fingerprint", "open_image", "open_source", "predict_to_file", "predict_to_zarr"]

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
            "path": None if path is None else str(Path(path).resolve()),
            "shape": [int(s) for s in image.shape],
            "dtype": str(np.dtype(image.dtype)),
            "content": None if path is None else content_identity(path),
        },
        "output": "probabilities" if proba else "labels",
    }


# -- axes of inputs -----------------------------------------------------------------
class Source(NamedTuple):
    """An input opened for prediction: its array, its frames for the model, and the file's calibration."""

    path: object
    array: object
    frames: Frames
    metadata: Metadata
    ome: object


def open_source(segmenter, image, axes=None) -> Source:
    """Open ``image`` (a path or an array) and cut it into the model's frames.

    The axes are ``axes`` when given, else what the file declares
    (:func:`gpuseg.metadata.read_metadata`), else the model's own layout
    (e.g. ``YXC``) when the image has as many axes.

    Raises
    ------
    ValueError
        Axes that are not given, not in the file and not guessable, or an image
        the model cannot read (see :class:`gpuseg.axes.Frames`).
    """
    path = image if isinstance(image, (str, os.PathLike)) else None
    array, ome = open_image_and_multiscale(path) if path is not None else (image, None)
    meta = read_metadata(path, array.shape) if path is not None else NOTHING
    layout = model_layout(segmenter.ndim_, segmenter.channel_axis)
    if axes is None:
        axes = meta.axes or (layout if len(layout) == len(array.shape) else None)
    if axes is None:
        raise ValueError(f"{path if path is not None else 'The image'} (shape {tuple(array.shape)}) does not say "
                         f"its axes, and the model reads {layout} images; give them with --axes (axes=), e.g. "
                         f"T{layout} for a time series.")
    frames = frames_of(segmenter, array, axes)
    warn_if_unlike_training(segmenter, next(iter(frames))[1], path if path is not None else "the image")
    return Source(path, array, frames, meta, ome)


# -- streaming to Zarr -----------------------------------------------------------
def predict_to_zarr(segmenter, image, out_path, *, proba=False, tile_shape=None, overwrite=False, progress=True,
                    axes=None):
    """Classify an image tile by tile into an OME-Zarr 0.5 image; resumable after a crash or a kill.

    Parameters
    ----------
    segmenter : gpuseg.Segmenter
        Trained.
    image : str, path-like or array
        A path :func:`open_image` reads, or an array supporting slicing.
    out_path : str or path-like
        Output directory (conventionally ``*.zarr``): an OME-Zarr 0.5 group
        (:mod:`gpuseg.ome_zarr`) with the input's axes in OME order less ``C``,
        and its pixel sizes. Labels (dtype ``segmenter.label_dtype``) are a
        labels image with a nearest-neighbour pyramid (levels ``0``, ``1``,
        ...); float32 probabilities one level with the classes on ``c``.
        Level ``0`` is chunked by tiles (one frame deep along ``T``).
    proba : bool
        Write probabilities instead of labels.
    tile_shape : tuple of int, optional
        Tile and chunk size; default the input's chunks (a Zarr or tiled
        TIFF input) when within the memory budget's tile, else that tile. On
        resume the output's tiles are kept.
    overwrite : bool
        Replace an existing output made with another model, input or output
        kind (otherwise refused). An output of this very job is resumed.
    progress : bool
        Show a progress bar with the time left.
    axes : str, optional
        The input's axes (OME letters, see :func:`open_source`): ``T`` frame
        by frame, ``C`` the channels, ``Z`` 3D.

    Returns
    -------
    out_path : pathlib.Path

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
    Each finished tile leaves a marker; when all are done the pyramid is
    written, the markers removed and the output marked complete. An input is
    recognised on resume by its path, shape, dtype, axes and content identity
    (size and modification time of each of its files, see
    :func:`gpuseg._file_guards.content_identity`; an array passed directly: by
    shape, dtype and axes), and the model by :func:`model_fingerprint`. Before
    anything is created, an output that is, holds or lies inside the input
    (but for the ``labels`` group of an OME-Zarr input) is refused and
    ``tile_shape`` is checked.
    """
    out = Path(out_path)
    if isinstance(image, (str, os.PathLike)):
        check_outputs([(image, out)])
    source = open_source(segmenter, image, axes)
    frames = source.frames
    predictor = segmenter.predictor()
    job = {**_job(segmenter, source.array, source.path, proba), "axes": frames.axes}
    resume = out.exists() and not overwrite
    if resume:
        tile_shape = _resumed_tile_shape(out, job, tile_shape)
        if zarr.open_group(str(out), mode="r").attrs["gpuseg"].get("complete"):
            return out
    first = next(iter(frames))[1]
    plan = predictor.plan(first, tile_shape or _input_chunks(source, predictor, first))
    axes_out = ome_order(frames.out_axes(proba))
    if not resume:
        if out.exists():
            _remove(out)
        _create(out, {**job, "tile_shape": list(plan.tile_shape)}, segmenter, source, plan, axes_out, proba)
    group = zarr.open_group(str(out), mode="r+")
    array, done = group["0"], out / "0" / DONE_DIR
    finished = set(os.listdir(done))
    bar = tqdm(total=len(frames) * plan.tiles.count, initial=len(finished), desc="gpuseg predict", unit="tile",
               disable=not progress)
    for index, frame in frames:
        tiles = (t for t in plan.tiles if _marker(index, t, plan.tile_shape) not in finished)  # lazily: any grid size
        for tile, result in predictor.classify_tiles(frame, tiles, "proba" if proba else "labels"):
            array[_zarr_index(axes_out, frames, index, tile.write)] = np.moveaxis(result, -1, 0) if proba else result
            (done / _marker(index, tile, plan.tile_shape)).touch()
            bar.update()
    bar.close()
    if not proba:
        fill_pyramid(group, axes_out)
    shutil.rmtree(done)
    group.attrs["gpuseg"] = {**group.attrs["gpuseg"], "complete": True}
    return out


def _input_chunks(source: Source, predictor, frame):
    """The input's chunks on the model's spatial axes when no longer than the default tile; else the default."""
    default = predictor.default_tile_shape(predictor.check_image(frame), predictor.n_features)
    chunks = getattr(source.array, "chunks", None)
    if not isinstance(chunks, tuple) or not all(isinstance(c, int) for c in chunks):
        return default
    size = dict(zip(source.frames.axes, chunks))
    chunked = tuple(size[a] for a in source.frames.spatial)
    return chunked if all(c <= d for c, d in zip(chunked, default)) else default


def _zarr_index(axes_out: str, frames: Frames, index: tuple, write: tuple) -> tuple:
    """Where a tile of a frame goes in the output: the frame's index on the loop axes, the tile on the spatial ones."""
    at = dict(zip(frames.loop, index))
    at.update(zip(frames.spatial, write))
    return tuple(at.get(a, slice(None)) for a in axes_out)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()


def _resumed_tile_shape(out: Path, job: dict, tile_shape) -> tuple:
    """Tile shape of an existing output of ``job``; refuses any other output."""
    try:
        stored = dict(zarr.open(str(out), mode="r").attrs).get("gpuseg")
    except Exception:  # not Zarr at all, or unreadable
        stored = None
    if isinstance(stored, dict) and isinstance(stored.get("input"), dict) and job["input"]["content"] is not None:
        same_but_content = {**stored, "input": {**stored["input"], "content": job["input"]["content"]}}
        if {k: same_but_content.get(k) for k in job} == job and stored["input"].get("content") != job["input"]["content"]:
            raise ValueError(
                f"The input {job['input']['path']} changed since {out} was started (its files' sizes or times "
                "differ): resuming would mix old and new pixels. Pass overwrite=True (--overwrite) to start again."
            )
    if not isinstance(stored, dict) or {k: stored.get(k) for k in job} != job:
        raise ValueError(
            f"{out} already exists and is not the output of this model on this input "
            f"({job['output']}); pass overwrite=True (--overwrite) to replace it, or choose another output path."
        )
    if tile_shape is not None and [int(t) for t in tile_shape] != stored["tile_shape"]:
        raise ValueError(
            f"{out} is being written with tiles of {tuple(stored['tile_shape'])}; resume it without tile_shape, "
            "or pass overwrite=True (--overwrite) to start again."
        )
    return tuple(stored["tile_shape"])


def _create(out: Path, attrs: dict, segmenter, source: Source, plan, axes_out: str, proba: bool) -> None:
    """Create the empty output beside ``out`` and rename it into place, so it exists whole or not at all."""
    tmp = out.with_name(f".{out.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    size = {**dict(zip(source.frames.loop, source.frames.loop_shape)), **dict(zip(source.frames.spatial, plan.spatial))}
    chunk = dict(zip(source.frames.spatial, plan.tile_shape))
    n_classes = len(segmenter.classes_)
    shape = tuple(n_classes if a == "C" else size[a] for a in axes_out)
    chunks = tuple(n_classes if a == "C" else chunk.get(a, 1) for a in axes_out)
    labelled = None if proba else _labels_source(source, out)
    try:
        create(str(tmp), axes_out, shape, chunks, np.float32 if proba else segmenter.label_dtype,
               sizes=source.metadata.sizes, unit=source.metadata.unit, attrs=attrs,
               classes=None if proba else segmenter.classes_, source=labelled)
        (tmp / "0" / DONE_DIR).mkdir()
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if labelled is not None:
        add_to_labels_group(source.path, out.name)


def _labels_source(source: Source, out: Path):
    """``"../../"`` when ``out`` is in the ``labels`` group of the OME-Zarr input, else ``None``."""
    if source.ome is None or source.path is None:
        return None
    return "../../" if out.resolve().parent == (Path(source.path) / "labels").resolve() else None


def _marker(index: tuple, tile, tile_shape: tuple) -> str:
    """Marker file name of a tile of a frame: the frame's index and the tile's chunk index, e.g. ``"2.0.3"``."""
    return ".".join([str(i) for i in index] + [str(s.start // t) for s, t in zip(tile.write, tile_shape)])


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
