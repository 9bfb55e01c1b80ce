"""What keeps gpuseg's writes from losing data.

* An output is never an input, inside one, or around one (:func:`check_outputs`),
  and no two inputs are written to one output path.
* Whole files are written to a temporary file beside the target and renamed
  over it (:func:`atomic_write`): the temporary follows the umask, takes the
  mode of the file it replaces, and one left by a killed run is removed by the
  next write to that target (its name holds the writer's process id).
* A resumed Zarr output is of the same input content (:func:`content_identity`).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from pathlib import Path

_TEMP_TAG = ".gpuseg-"


def _relation(out: Path, src: Path) -> str | None:
    if out == src:
        return "the same path as"
    if src in out.parents:
        return None if _in_labels_group(out, src) else "inside"
    if out in src.parents:
        return "a folder holding"
    return None


def _in_labels_group(out: Path, src: Path) -> bool:
    """``out`` is an image of the ``labels`` group of the Zarr ``src``: where OME-NGFF keeps an image's labels."""
    return src.suffix == ".zarr" and out.parent == src / "labels"


def check_outputs(targets) -> None:
    """Refuse outputs that would overwrite, enclose or sit inside an input, and outputs shared by inputs.

    A labels image in the ``labels`` group of a Zarr input (``in.ome.zarr/labels/<name>``) is allowed.

    Parameters
    ----------
    targets : iterable of (input path, output path)
        Paths or URLs; ``file://`` URLs are checked as paths, pairs with a URL of
        another filesystem on either side are left out.

    Raises
    ------
    ValueError
        Naming the output, the input and the fix.
    """
    from .image_io import locate  # image_io writes through this module

    pairs = [(src, dst, locate(src), locate(dst)) for src, dst in targets]
    targets = [(src, dst, Path(where.path)) for src, dst, here, where in pairs if here.local and where.local]
    inputs = [Path(here.path).resolve() for _, _, here, _ in pairs if here.local]
    seen = {}
    for src, dst, local_dst in targets:
        out = local_dst.resolve()
        for inp in inputs:
            relation = _relation(out, inp)
            if relation:
                raise ValueError(f"The output {dst} is {relation} the input {inp}; writing it would destroy the "
                                 "input. Choose an output path outside the inputs.")
        if out in seen:
            raise ValueError(f"The inputs {seen[out]} and {src} would both be written to {dst}. Predict them into "
                             "separate output folders, or rename one of them.")
        seen[out] = src


def content_identity(path) -> dict:
    """Cheap identity of a file's or a directory's content: the size and modification time of every file.

    A rewritten chunk of a Zarr input changes its file's size or time, so a
    resume can tell that the input changed without reading it. The ``labels``
    group of a Zarr input, where labels of it are written, is not counted.

    Returns
    -------
    identity : dict
        ``{"files": n, "bytes": total size, "digest": sha256 hex}`` (JSON-able).
    """
    path = Path(path)
    labels = path / "labels" if path.suffix == ".zarr" else None
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file() and labels not in p.parents)
    h, total = hashlib.sha256(), 0
    for f in files:
        st = f.stat()
        total += st.st_size
        h.update(f"{f.relative_to(path) if f != path else ''}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return {"files": len(files), "bytes": total, "digest": h.hexdigest()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # someone else's process, or a platform that cannot tell
        return True
    return True


def remove_stale_temporaries(path) -> list:
    """Remove temporaries of ``path`` left by gpuseg writers that are no longer running; returns them."""
    path = Path(path)
    removed = []
    prefix = f".{path.name}{_TEMP_TAG}"
    try:
        siblings = list((path.parent or Path(".")).iterdir())
    except OSError:
        return removed
    for p in siblings:
        if not (p.name.startswith(prefix) and p.name.endswith(".tmp")):
            continue
        pid = p.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass
    return removed


def atomic_write(path, write) -> None:
    """Call ``write(file_object)`` on a temporary file beside ``path``, then rename it over ``path``.

    A crash leaves either the old file or the new one, never a half-written
    one. The new file's mode is the replaced file's, or else what the umask
    gives (``0o666 & ~umask``), as for any file a program creates.
    """
    path = Path(path)
    remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}{_TEMP_TAG}{os.getpid()}-{secrets.token_hex(4)}.tmp")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # mode 0o666 less the umask
    try:
        with open(tmp, "wb") as f:  # by name: writers such as tifffile look at f.name
            write(f)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
        except FileNotFoundError:
            pass
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
