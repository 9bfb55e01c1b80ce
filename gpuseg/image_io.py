"""Image files: reading them without loading large ones, writing whole ones atomically.

Reading: ``.npy`` (memory-mapped), TIFF (small untiled ones whole, tiled ones
and pyramids through Zarr), PNG/JPEG, Zarr and OME-Zarr. Writing: ``.npy``,
TIFF and PNG, through :func:`atomic_write`. Streaming predictions into a Zarr
array is :mod:`gpuseg.stream`'s. Paths may be URLs (:func:`locate`): Zarr
inputs are read from any fsspec filesystem, the other formats from local ones.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import numpy as np

from ._backend import module_of
from ._file_guards import atomic_write

TIFF_IN_MEMORY_BYTES = 256 * 2**20  # untiled TIFFs up to this size are read whole
TIFF_STRIP_BYTES = 16 * 2**20  # larger untiled ones are read by strips of at most this size, or refused
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg")
"""Read whole, with imageio."""
INPUT_SUFFIXES = (".tif", ".tiff", ".npy", ".zarr") + PICTURE_SUFFIXES
"""What :func:`open_image` reads (``.zarr``: any Zarr directory is read too)."""
OUTPUT_SUFFIXES = (".npy", ".tif", ".tiff", ".png")
"""What :func:`write_image` writes (``.ome.tif``/``.ome.tiff`` included)."""
ZARR_SUFFIX = ".zarr"
"""What :func:`gpuseg.stream.predict_to_zarr` writes."""


# -- where things are ----------------------------------------------------------
class Location(NamedTuple):
    """A local path or a URL, resolved by fsspec.

    ``fs`` is the fsspec filesystem and ``path`` the path on it; ``store`` is what
    Zarr is given (the local path, or the URL); ``local`` says whether ``path``
    is a path of this machine's file system.
    """

    fs: object
    path: str
    store: str
    local: bool

    def join(self, name: str) -> str:
        """``store`` with ``/name`` appended."""
        return f"{self.store.rstrip('/')}/{name}"


def is_url(path) -> bool:
    """Whether ``path`` is a URL (``s3://...``, ``file://...``) rather than a local path."""
    return isinstance(path, str) and "://" in path


def locate(path) -> Location:
    """Resolve a local path or an fsspec URL (``file://``, ``memory://``, ``s3://``, ``gs://``, ...).

    Credentials come from the filesystem's usual environment (``AWS_*`` variables,
    ``~/.aws``, ``GOOGLE_APPLICATION_CREDENTIALS``, ...), never from the URL.

    Raises
    ------
    ValueError
        A URL with a user name or password in it.
    ImportError
        The URL's filesystem is not installed (``s3fs``, ``gcsfs``, ...); fsspec names the package.
    """
    import fsspec

    if not is_url(path):
        local = os.path.abspath(os.fspath(path))
        return Location(fsspec.filesystem("file"), local, local, True)
    if "@" in urlsplit(path).netloc:
        raise ValueError("Give storage credentials through the environment (e.g. AWS_ACCESS_KEY_ID, "
                         "GOOGLE_APPLICATION_CREDENTIALS), not in the URL: gpuseg records URLs in its outputs.")
    fs, on_fs = fsspec.core.url_to_fs(path)
    local = "file" in protocols(fs)
    return Location(fs, on_fs, on_fs if local else path, local)


def protocols(fs) -> tuple:
    """The protocol names of an fsspec filesystem, e.g. ``("file", "local")``."""
    return fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)


# -- reading -----------------------------------------------------------------
def open_image(path):
    """Open an image file as an array, without reading large ones into memory.

    Parameters
    ----------
    path : str or path-like
        ``.npy`` (memory-mapped); ``.tif``/``.tiff`` (read whole when small and
        untiled, else through Zarr, level 0 of a pyramid); a Zarr v2/v3 array,
        a group holding one array, or an OME-Zarr image (level 0 of its
        ``multiscales``); ``.png``/``.jpg``/``.jpeg`` (read whole). A URL
        (:func:`locate`) of a Zarr or OME-Zarr image on any filesystem, or of
        any of these files on a local one (``file://``).

    Returns
    -------
    image : array-like
        NumPy array, ``numpy.memmap`` or ``zarr.Array``; supports ``shape``,
        ``dtype`` and slicing.

    Raises
    ------
    FileNotFoundError
        No such file or directory.
    ValueError
        An unsupported format, or a Zarr group without a single image in it.
    """
    return open_image_and_multiscale(path)[0]


def open_image_and_multiscale(path) -> tuple:
    """The image at ``path`` (as :func:`open_image` opens it) and its OME ``multiscales`` entry.

    Returns
    -------
    image : array-like
    multiscale : dict or None
        The first entry of an OME-Zarr image's ``multiscales``; ``None`` for any other input.
    """
    where = locate(path)
    if not where.fs.exists(where.path):
        raise FileNotFoundError(f"No image at {path}.")
    if not where.local:
        return _open_zarr(where.store)
    path = Path(where.path)
    try:
        return _open_by_suffix(path)
    except Exception as exc:  # a reader's failure on a damaged, hostile or unreadable file becomes one message
        if isinstance(exc, ValueError) and str(path) in str(exc):
            raise  # gpuseg's own message about this file
        raise ValueError(f"Cannot read {path} as an image ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}). "
                         "Check that it is complete, readable and of the format its suffix says.") from None


def _open_by_suffix(path: Path) -> tuple:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return np.load(path, mmap_mode="r"), None
    if suffix in (".tif", ".tiff"):
        return _open_tiff(path), None
    if suffix in PICTURE_SUFFIXES:
        import imageio.v3 as iio

        return iio.imread(path), None
    if path.is_dir():
        return _open_zarr(path)
    raise ValueError(
        f"Cannot read {path}: gpuseg reads .npy, .tif/.tiff, .png/.jpg and Zarr / OME-Zarr directories."
    )


def _open_tiff(path: Path):
    import tifffile
    import zarr

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        if not series.is_pyramidal and not series.keyframe.is_tiled:
            if series.nbytes <= TIFF_IN_MEMORY_BYTES:
                return series.asarray()
            _check_strips(path, series)
    node = zarr.open(tifffile.imread(path, aszarr=True), mode="r")
    return node if isinstance(node, zarr.Array) else node[_multiscale_paths(node.attrs)[0] or "0"]


def _check_strips(path: Path, series) -> None:
    """Refuse a large untiled TIFF whose strips are so big that reading it tile by tile would decode them over and over."""
    page = series.keyframe
    rows = min(int(page.rowsperstrip or page.imagelength), int(page.imagelength))
    strip = rows * int(page.imagewidth) * int(page.samplesperpixel) * np.dtype(page.dtype).itemsize
    if strip > TIFF_STRIP_BYTES:
        raise ValueError(
            f"{path} is an untiled TIFF of {series.nbytes / 2**20:.0f} MiB stored in strips of {strip / 2**20:.0f} "
            f"MiB: too large to read whole (over {TIFF_IN_MEMORY_BYTES // 2**20} MiB), and every tile would decode "
            "a whole strip again. Re-save it tiled (tifffile.imwrite(path, image, tile=(512, 512))) or as Zarr."
        )


def _open_zarr(path) -> tuple:
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except FileNotFoundError:  # zarr's "no array or group here"
        raise ValueError(f"{path} is a directory but not a Zarr array or group.") from None
    if isinstance(node, zarr.Array):
        return node, None
    found = multiscales(node.attrs)
    if found:
        return node[found[0]["datasets"][0]["path"]], found[0]
    arrays = sorted(name for name, _ in node.arrays())
    if len(arrays) != 1:
        raise ValueError(
            f"{path} is a Zarr group holding {len(arrays)} arrays ({arrays}) and no OME multiscales; "
            "give the path of the array to segment, e.g. {path}/<name>."
        )
    return node[arrays[0]], None


def multiscales(attrs) -> list:
    """The ``multiscales`` list of OME-Zarr attributes (0.5 nests it under ``ome``), or ``[]``."""
    attrs = dict(attrs)
    return attrs.get("ome", {}).get("multiscales") or attrs.get("multiscales") or []


def _multiscale_paths(attrs) -> list:
    """Dataset paths of the first multiscale of ``attrs``, finest first; ``[None]`` without one."""
    found = multiscales(attrs)
    return [d["path"] for d in found[0]["datasets"]] if found else [None]


# -- writing -----------------------------------------------------------------
def write_image(path, array, axes=None, *, sizes=None, unit=None) -> Path:
    """Write an array (copied to the host) atomically as ``.npy``, TIFF (zlib) or ``.png`` (8 or 16 bit, 2D).

    Parameters
    ----------
    path : str or path-like
        ``.ome.tif``/``.ome.tiff``: an OME-TIFF; other ``.tif``/``.tiff``: an
        ImageJ hyperstack (labels as 8 or 16 bit, probabilities as 32-bit
        float), both with their axes reordered to ``TZCYX`` as these formats
        want; ``.npy`` and ``.png``: the array as it is.
    array : array
    axes : str, optional
        OME letters of ``array``'s axes (``C``: channels or classes); default
        ``"YX"``/``"ZYX"`` by its dimensionality.
    sizes : dict, optional
        Physical pixel size per spatial letter, written as the TIFF's calibration.
    unit : str, optional
        Their unit (``"um"``, ...).

    Returns
    -------
    path : pathlib.Path

    Raises
    ------
    ValueError
        Another suffix, or labels beyond 65535 for an ImageJ TIFF.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise ValueError(f"Cannot write {path}: gpuseg writes {', '.join(OUTPUT_SUFFIXES)} files.")
    host = module_of(array).to_host(array)
    axes = axes or "ZYX"[-host.ndim:]
    if suffix == ".npy":
        atomic_write(path, lambda f: np.save(f, host, allow_pickle=False))
    elif suffix == ".png":
        import imageio.v3 as iio

        atomic_write(path, lambda f: f.write(iio.imwrite("<bytes>", host, extension=".png")))
    else:
        ome = path.name.lower().endswith((".ome.tif", ".ome.tiff"))
        data, kwargs = _tiff_arguments(host, axes, sizes or {}, unit, ome, path)
        atomic_write(path, lambda f: _tifffile_write(f, data, **kwargs))
    return path


def _tifffile_write(f, data, **kwargs) -> None:
    import tifffile

    tifffile.imwrite(f, data, compression="zlib", bigtiff=data.nbytes > 2**31, **kwargs)


def _tiff_arguments(host: np.ndarray, axes: str, sizes: dict, unit, ome: bool, path) -> tuple:
    """The array reordered to ``TZCYX`` and tifffile's arguments for an OME-TIFF or an ImageJ hyperstack."""
    order = "".join(a for a in "TZCYX" if a in axes)
    data = np.transpose(host, [axes.index(a) for a in order])
    if ome:
        meta = {"axes": order, **{f"PhysicalSize{a}": float(sizes[a]) for a in "ZYX" if a in sizes and a in order}}
        if unit and any(k.startswith("PhysicalSize") for k in meta):
            meta.update({f"PhysicalSize{a}Unit": "µm" if unit == "um" else unit for a in "ZYX" if a in order})
        return data, {"ome": True, "photometric": "minisblack", "metadata": meta}
    if data.dtype.kind in "biu":
        if data.size and (data.min() < 0 or data.max() > 65535):
            raise ValueError(f"Cannot write {path} as an ImageJ TIFF: labels beyond 0..65535; "
                             "write an .ome.tif or a .npy instead.")
        data = data.astype(np.uint8 if not data.size or data.max() < 256 else np.uint16)
    elif data.dtype != np.float32:
        data = data.astype(np.float32)
    meta = {"axes": order}
    if "Z" in sizes and "Z" in order:
        meta["spacing"] = float(sizes["Z"])
    if unit:
        meta["unit"] = "um" if unit in ("um", "micrometer") else unit
    kwargs = {"imagej": True, "metadata": meta}
    if "X" in sizes and "Y" in sizes:
        kwargs["resolution"] = (1.0 / float(sizes["X"]), 1.0 / float(sizes["Y"]))
    return data, kwargs
