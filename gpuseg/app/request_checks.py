"""What a request to the app's server may carry, checked: a request can send anything, not only what the page's
controls send, and every value is checked before the session sees it (a bad one gets a message or a default).
"""

from __future__ import annotations

import base64
import math
import re
from pathlib import Path

from .layout import SIGMA_LOG2
from .strokes import parse_path

_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")


def request_color(value) -> str | None:
    """A ``#rrggbb`` colour from a request's value, or None."""
    return value if isinstance(value, str) and _COLOR.match(value) else None

def decode_upload(pending) -> tuple:
    """Bytes and file name of an upload (``{"contents": data URI, "filename": str}``).

    Raises
    ------
    ValueError
        A request that is not a base64 data URI (no comma, not a string, bad base64).
    """
    contents = pending.get("contents") if isinstance(pending, dict) else None
    if not isinstance(contents, str) or "," not in contents:
        raise ValueError("The upload did not arrive as a file (a base64 data URI); upload the file again.")
    try:
        data = base64.b64decode(contents.split(",", 1)[1], validate=True)
    except ValueError:  # binascii.Error
        raise ValueError("The upload's data is not valid base64; upload the file again.") from None
    name = pending.get("filename")
    return data, name if isinstance(name, str) and name else "upload"


def request_int(value, default: int = 0) -> int:
    """An integer from a request's value, ``default`` for anything else (a request can send anything)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return default
    return int(value)


def request_index(value, n: int) -> int:
    """An index in ``range(n)`` from a request's value: brought into range, 0 for anything but a number."""
    return min(max(request_int(value), 0), n - 1)


def request_number(value, default: float, lo: float, hi: float) -> float:
    """A number in ``[lo, hi]`` from a request's value, ``default`` for anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return default
    return min(max(float(value), lo), hi)


def figure_edits(relayout) -> dict:
    """A figure's relayout event with only what the session reads in the form it reads it.

    ``shapes`` a list of dicts with a ``name`` string (or none) and a drawn ``path`` (or none, for
    shapes that are not strokes); ``shapes[i].path`` edits drawn paths.
    """
    if not isinstance(relayout, dict):
        return {}
    edits = {k: v for k, v in relayout.items() if isinstance(k, str) and k != "shapes" and _drawn(v)}
    if isinstance(relayout.get("shapes"), list):
        edits["shapes"] = [shape for shape in relayout["shapes"] if isinstance(shape, dict)
                           and (not shape.get("path") or _drawn(shape["path"]))
                           and isinstance(shape.get("name") or "", str) and isinstance(shape.get("type", "path"), str)]
    return edits


def _drawn(path) -> bool:
    try:
        parse_path(path)
    except (ValueError, TypeError):
        return False
    return True


def download_stem(name) -> str:
    """A safe file-name stem for downloads from an image's name: letters, digits, ``._-``; ``"image"`` if none."""
    stem = re.sub(r"[^\w.-]+", "_", Path(str(name)).stem, flags=re.ASCII)[:64].strip("._")
    return stem or "image"


def sigma_range(sigma) -> tuple:
    """Sigmas ``(min, max)`` in pixels from the slider's log2 values, checked (a request can send anything).

    Raises
    ------
    ValueError
        Not two numbers, or outside the slider's range.
    """
    lo, hi = SIGMA_LOG2
    numbers = isinstance(sigma, (list, tuple)) and len(sigma) == 2 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in sigma)
    if not numbers or not lo <= sigma[0] <= sigma[1] <= hi:
        raise ValueError(f"The sigma range must be two values of the slider, from {2.0 ** lo:g} to {2.0 ** hi:g} "
                         f"pixels (log2 {lo} to {hi}); got {str(sigma)[:40]}.")
    return 2.0 ** sigma[0], 2.0 ** sigma[1]
