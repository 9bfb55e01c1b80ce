"""What ``gpuseg info`` prints: versions, backends, GPU."""

from __future__ import annotations

import importlib.metadata as md
import platform

from . import __version__
from ._backend import backend_module, gpu_trainer, gpu_unavailable_reason

PACKAGES = ("numpy", "scipy", "scikit-image", "scikit-learn", "numba", "opencv-python-headless",
            "tifffile", "zarr", "dask", "treelite", "cupy-cuda13x", "cupy-cuda12x", "cucim-cu13", "cucim-cu12",
            "cuml-cu13", "cuml-cu12", "dash")


def describe() -> str:
    """Multi-line report of versions, available backends and the GPU's name and memory."""
    lines = [f"gpuseg {__version__} (Python {platform.python_version()}, {platform.machine()})"]
    for name in PACKAGES:
        try:
            lines.append(f"  {name:24s} {md.version(name)}")
        except md.PackageNotFoundError:
            pass
    reason = gpu_unavailable_reason()
    lines.append("backends: cpu" + (", gpu" if reason is None else ""))
    if reason is None:
        gpu = backend_module("gpu").device_info()
        lines.append(f"GPU: {gpu['name']}, {gpu['total_bytes'] / 2**30:.1f} GiB "
                     f"({gpu['free_bytes'] / 2**30:.1f} GiB free)")
        trainer, detail, _ = gpu_trainer()
        lines.append(f"GPU forests trained by: {detail if trainer == 'cuml' else 'scikit-learn on the host (' + detail + ')'}")
    else:
        lines.append(f"GPU: not available ({reason}); install with pip install 'gpuseg[gpu]'")
    return "\n".join(lines)
