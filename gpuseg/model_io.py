"""Model files (``.gpuseg``): data, not code.

A model file is a ZIP archive holding ``gpuseg.json`` (format marker, format
version, library versions, feature parameters, channel count, classes, forest
parameters) and one ``.npy`` file per forest array (the optional ones, such as
``impurity_decrease``, only where the forest has them), read with
``allow_pickle=False``. Loading parses JSON and numeric arrays only and checks
every index of the forest, so nothing in a file is ever executed, and a
pickle, a foreign or a truncated file is refused with a ``ValueError``.
:func:`load` makes the :class:`~gpuseg.Segmenter` a file describes (see
:meth:`~gpuseg.Segmenter.model_meta`).
"""

from __future__ import annotations

import io
import json
import lzma
import platform
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ._file_guards import atomic_write
from ._model_checks import check_meta, read_forest_arrays, read_json_member
from .forest import Forest

FORMAT = "gpuseg-model"
FORMAT_VERSION = 1
SUFFIX = ".gpuseg"
_META = "gpuseg.json"


def json_value(v):
    """``v`` with NumPy scalars as Python numbers and dict keys as strings, for the JSON header."""
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, dict):
        return {str(k): json_value(x) for k, x in v.items()}
    return v


def save_model(path, meta: dict, forest: Forest, context: Forest | None = None) -> Path:
    """Write a model file atomically; returns its path (``.gpuseg`` appended if missing).

    ``context`` (auto-context's second stage) is stored beside the forest as
    ``context_<array>.npy``, its feature count as ``context_n_features``.
    """
    import sklearn

    from . import __version__

    path = Path(path)
    if path.suffix != SUFFIX:
        path = path.with_name(path.name + SUFFIX)
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "gpuseg_version": __version__,
        "numpy_version": np.__version__,
        "sklearn_version": sklearn.__version__,
        "python_version": platform.python_version(),
        "n_features": forest.n_features,
        **({} if context is None else {"context_n_features": context.n_features}),
        **meta,
    }

    def write(f):
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(_META, json.dumps(header, indent=1))
            for prefix, trees in (("", forest), ("context_", context)):
                for name in Forest.ARRAYS + Forest.OPTIONAL_ARRAYS if trees is not None else ():
                    if getattr(trees, name) is None:
                        continue
                    buf = io.BytesIO()
                    np.save(buf, getattr(trees, name), allow_pickle=False)
                    zf.writestr(f"{prefix}{name}.npy", buf.getvalue())

    atomic_write(path, write)
    return path


def _refuse(path, why: str):
    return ValueError(f"{path} is not a gpuseg model file: {why}")


# What a hostile or damaged archive makes zipfile and its decompressors raise.
_ARCHIVE_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, lzma.LZMAError, EOFError, OSError,
                   NotImplementedError, RuntimeError, OverflowError)


def read_model(path) -> tuple:
    """Read and check a model file, with bounded memory whatever the file holds.

    Returns
    -------
    meta : dict
        The JSON header, checked by :func:`gpuseg._model_checks.check_meta`.
    forest : Forest
    context : Forest or None
        Auto-context's second stage, where the file has one.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        A pickle, a foreign, corrupt, truncated or inconsistent file, one whose
        arrays would exceed the size limits (see :mod:`gpuseg._model_checks`),
        or an unknown format version.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No model file at {path}.")
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:1] == b"\x80":
        raise _refuse(path, "it looks like a Python pickle, which gpuseg never loads (it could run code). "
                            "Re-train and save the model with Segmenter.save().")
    if head != b"PK\x03\x04":
        raise _refuse(path, "it is not a ZIP archive. Model files are written by Segmenter.save().")
    try:
        with zipfile.ZipFile(path) as zf:
            if _META not in zf.namelist():
                raise _refuse(path, f"the archive has no {_META}.")
            meta = read_json_member(zf, _META, path)
            if meta.get("format") != FORMAT:
                raise _refuse(path, f"{_META} does not declare format {FORMAT!r}.")
            version = meta.get("format_version")
            if version != FORMAT_VERSION:
                raise ValueError(
                    f"{path} has model format version {version!r}, but this gpuseg "
                    f"reads version {FORMAT_VERSION}. Upgrade gpuseg, or re-train the model with this one."
                )
            check_meta(meta, path)
            arrays = read_forest_arrays(zf, path, len(meta["classes"]))
            context = None
            if "context_n_features" in meta:
                context = read_forest_arrays(zf, path, len(meta["classes"]), prefix="context_")
    except _ARCHIVE_ERRORS as exc:
        raise _refuse(path, f"the archive is corrupt or truncated ({type(exc).__name__}: {str(exc)[:80]}).") from None
    forest = Forest(n_features=meta["n_features"], **arrays)
    forest.validate()
    if context is not None:
        context = Forest(n_features=meta["context_n_features"], **context)
        context.validate()
    return meta, forest, context


def load(path, backend="auto"):
    """Load a model file written by :meth:`Segmenter.save`, on any backend.

    Parameters
    ----------
    path : str or path-like
    backend : {"auto", "cpu", "gpu"}

    Returns
    -------
    segmenter : Segmenter
        Trained, ready to ``predict``.

    Raises
    ------
    ValueError
        The file is not a gpuseg model (a pickle, another format, corrupt or
        truncated) or has an unknown format version. Nothing in it is executed.
    """
    from .segmenter import Segmenter

    meta, forest, context = read_model(path)
    try:
        return Segmenter.from_model_meta(meta, forest, backend, context)
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"{path} is not a usable gpuseg model file: its metadata is invalid ({exc}).") from None
