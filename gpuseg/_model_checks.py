"""Bounded reading of a model archive's members, and checks of its metadata.

A model file may be hostile: a small archive can inflate to gigabytes, a
``.npy`` header can declare billions of elements, JSON can nest without end.
Here every size is checked before anything is inflated or allocated: a
member's ``.npy`` header (a few bytes) is parsed first, its dtype and shape
checked against the other arrays and the metadata, the total against
:data:`MAX_FOREST_BYTES`, the archive's recorded size against the header's;
only then are exactly that many bytes read. Whatever is wrong raises
:class:`ModelFileError` (a ``ValueError``) naming the problem.
"""

from __future__ import annotations

import json
import math
import zipfile

import numpy as np

from ._validation import MAX_CLASS

MAX_META_BYTES = 1 << 20
MAX_FOREST_BYTES = 1 << 30  # 50 trees of depth 10 take about 10 MB; deep forests of 1000 trees a few hundred
MAX_FEATURES = 1 << 16
_NPY_HEADER_BYTES = 10_000  # NumPy's own limit on a header it parses by default
# Each forest array: its dtype kind and item size, and its shape in terms of (n_nodes, n_classes, n_trees).
_ARRAYS = {
    "child": ("i", 4, ("nodes",)), "feature": ("i", 4, ("nodes",)), "threshold": ("f", 4, ("nodes",)),
    "value": ("f", 4, ("nodes", "classes")), "roots": ("i", 4, ("trees",)), "depth": ("i", 4, ("trees",)),
    "impurity_decrease": ("f", 8, ("nodes",)),
}
_OPTIONAL = {"impurity_decrease"}  # absent from files written before gpuseg stored it


class ModelFileError(ValueError):
    """A file that is not a usable gpuseg model; the message names the file and the problem."""

    def __init__(self, path, why: str):
        super().__init__(f"{path} is not a usable gpuseg model file: {why}")


def read_json_member(zf: zipfile.ZipFile, name: str, path) -> dict:
    """The JSON object stored as ``name``, at most :data:`MAX_META_BYTES` inflated."""
    info = zf.getinfo(name)
    if info.file_size > MAX_META_BYTES:
        raise ModelFileError(path, f"{name} declares {info.file_size} bytes, implausibly large for metadata.")
    with zf.open(info) as f:
        data = f.read(MAX_META_BYTES + 1)
    if len(data) > MAX_META_BYTES:
        raise ModelFileError(path, f"{name} inflates to more than {MAX_META_BYTES} bytes.")
    try:
        meta = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ModelFileError(path, f"{name} is not valid JSON ({type(exc).__name__}: {str(exc)[:80]}).") from None
    if not isinstance(meta, dict):
        raise ModelFileError(path, f"{name} holds a {type(meta).__name__}, not an object.")
    return meta


def check_meta(meta: dict, path) -> None:
    """Refuse metadata that :func:`gpuseg.load` could not turn into a sound segmenter.

    Checked: ``classes`` (at least two distinct positive integers up to
    :data:`MAX_CLASS`, increasing), ``ndim`` (2 or 3), ``n_channels`` and
    ``n_features`` (positive, at most :data:`MAX_FEATURES` features),
    ``features`` and ``forest_params`` (objects), ``channel_axis`` (null or
    an integer in [-4, 3]). Feature parameters are checked by ``FeatureParams`` on loading.
    """
    classes = meta.get("classes")
    if not isinstance(classes, list) or len(classes) < 2 or not all(_is_int(c) for c in classes):
        raise ModelFileError(path, "'classes' must list at least two integer class values.")
    if not all(1 <= c <= MAX_CLASS for c in classes) or any(a >= b for a, b in zip(classes, classes[1:])):
        raise ModelFileError(path, f"'classes' must be increasing values in [1, 2**63 - 1], got {classes[:8]}.")
    checks = [
        (meta.get("ndim") in (2, 3) and _is_int(meta.get("ndim")), "'ndim' must be 2 or 3"),
        (_is_int(meta.get("n_channels")) and 1 <= meta["n_channels"] <= MAX_FEATURES, "'n_channels' is out of range"),
        (_is_int(meta.get("n_features")) and 1 <= meta["n_features"] <= MAX_FEATURES,
         f"'n_features' must lie in [1, {MAX_FEATURES}]"),
        ("context_n_features" not in meta or _is_int(meta["context_n_features"])
         and 1 <= meta["context_n_features"] <= MAX_FEATURES, f"'context_n_features' must lie in [1, {MAX_FEATURES}]"),
        (isinstance(meta.get("features"), dict), "'features' must be an object"),
        (isinstance(meta.get("forest_params"), dict), "'forest_params' must be an object"),
        (meta.get("channel_axis") is None or _is_int(meta.get("channel_axis")) and -4 <= meta["channel_axis"] < 4,
         "'channel_axis' must be null or an axis of a 2D or 3D image with channels, in [-4, 3]"),
    ]
    for ok, why in checks:
        if not ok:
            raise ModelFileError(path, f"{why}.")


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def read_forest_arrays(zf: zipfile.ZipFile, path, n_classes: int, prefix: str = "") -> dict:
    """The forest's arrays, each read only after its header, shape and size are found consistent.

    Parameters
    ----------
    zf : zipfile.ZipFile
    path : path-like
        For messages.
    n_classes : int
        Columns ``value`` must have (the metadata's class count).
    prefix : str
        Of the members' names: ``"context_"`` for auto-context's second forest.

    Returns
    -------
    arrays : dict of ndarray
        Native int32 / float32 (float64 ``impurity_decrease``), keyed by the names of
        :attr:`Forest.ARRAYS` and of the :attr:`Forest.OPTIONAL_ARRAYS` the file holds.
    """
    present = set(zf.namelist())
    headers = {name: _npy_header(zf, f"{prefix}{name}.npy", path) for name in _ARRAYS
               if name not in _OPTIONAL or f"{prefix}{name}.npy" in present}
    sizes = {"classes": n_classes}
    for name, (kind, itemsize, dims) in _ARRAYS.items():
        if name not in headers:
            continue
        dtype, shape, _ = headers[name]
        if dtype.kind != kind or dtype.itemsize != itemsize or len(shape) != len(dims):
            raise ModelFileError(path, f"{name}.npy holds {dtype} of shape {shape}; expected {kind}{itemsize} "
                                       f"of {len(dims)} dimension(s).")
        for dim, n in zip(dims, shape):
            if sizes.setdefault(dim, n) != n:
                raise ModelFileError(path, f"{name}.npy has shape {shape}, inconsistent with the other arrays "
                                           f"and the {n_classes} classes of the metadata.")
    total = sum(math.prod(shape) * dtype.itemsize for dtype, shape, _ in headers.values())
    if total > MAX_FOREST_BYTES:
        raise ModelFileError(path, f"its forest declares {total} bytes of arrays, over the limit of "
                                   f"{MAX_FOREST_BYTES} (a decompression bomb, or a forest far larger than any "
                                   "gpuseg trains).")
    return {name: _npy_data(zf, f"{prefix}{name}.npy", path, *header) for name, header in headers.items()}


def _npy_header(zf: zipfile.ZipFile, member: str, path) -> tuple:
    """``(dtype, shape, header_bytes)`` of a ``.npy`` member, inflating only its header."""
    try:
        zf.getinfo(member)
    except KeyError:
        raise ModelFileError(path, f"the forest array {member} is missing.") from None
    with zf.open(member) as f:
        try:
            version = np.lib.format.read_magic(f)
            read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in read:
                raise ValueError(f"unsupported .npy version {version}")
            shape, fortran, dtype = read[version](f, max_header_size=_NPY_HEADER_BYTES)
        except Exception as exc:  # NumPy parses the header's text with ast and tokenize, which raise many kinds
            raise ModelFileError(path, f"{member} is not a valid .npy array ({type(exc).__name__}: "
                                       f"{str(exc)[:80]}).") from None
        offset = f.tell()
    if dtype.hasobject or fortran or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise ModelFileError(path, f"{member} is not a plain numeric C-order array (object arrays, which "
                                   "need pickle, are never loaded).")
    return dtype, tuple(shape), offset


def _npy_data(zf: zipfile.ZipFile, member: str, path, dtype, shape, offset) -> np.ndarray:
    nbytes = math.prod(shape) * dtype.itemsize
    if zf.getinfo(member).file_size != offset + nbytes:
        raise ModelFileError(path, f"{member} is {zf.getinfo(member).file_size} bytes, but its header "
                                   f"declares {offset + nbytes}.")
    with zf.open(member) as f:
        f.read(offset)
        data = f.read(nbytes)
    if len(data) != nbytes:
        raise ModelFileError(path, f"{member} is truncated.")
    native = np.dtype(f"{dtype.kind}{dtype.itemsize}")
    return np.frombuffer(data, dtype).reshape(shape).astype(native)
