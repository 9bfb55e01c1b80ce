"""Which backend runs, and moving arrays between host and device.

Everything else asks this module for a backend module (``gpuseg._cpu`` or
``gpuseg._gpu``, which expose the same primitives with the same signatures,
host/device copies ``asarray`` and ``to_host`` among them) and passes that
module on; only the two backend modules import their array libraries.
"""

from __future__ import annotations

import functools
import importlib
import logging
from types import ModuleType


log = logging.getLogger("gpuseg")

GPU_INSTALL_HINT = "pip install 'gpuseg[gpu]'"
BACKENDS = ("auto", "cpu", "gpu")


@functools.lru_cache(maxsize=1)
def gpu_unavailable_reason() -> str | None:
    """Why the GPU backend cannot run here, or ``None`` when it can.

    Importing CuPy, cuCIM and cuML and asking CUDA for a device is slow and
    has side effects, so the answer is computed once per process.
    """
    for name in ("cupy", "cucim.skimage", "cuml"):
        try:
            importlib.import_module(name)
        except Exception as exc:  # ImportError, or a CUDA library that fails to load
            return f"{name} cannot be imported ({type(exc).__name__}: {exc})"
    import cupy

    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return f"CUDA reports no usable device ({exc})"
    if count == 0:
        return "CUDA sees no GPU"
    return None


def resolve_backend(backend: str = "auto", *, quiet: bool = False) -> str:
    """Return ``"cpu"`` or ``"gpu"`` for a requested backend name.

    Parameters
    ----------
    backend : {"auto", "cpu", "gpu"}
        ``"auto"`` picks the GPU when CuPy, cuCIM and cuML import and a device
        is visible, else the CPU, and logs one line saying which and why.
    quiet : bool
        Do not log the choice made by ``"auto"``.

    Raises
    ------
    ValueError
        For an unknown backend name.
    RuntimeError
        For ``"gpu"`` where the GPU backend cannot run, with the install hint.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "cpu":
        return "cpu"
    reason = gpu_unavailable_reason()
    if backend == "gpu":
        if reason is not None:
            raise RuntimeError(
                f"The GPU backend cannot run: {reason}. Install it with {GPU_INSTALL_HINT} "
                "on a machine with an NVIDIA GPU, or use backend='cpu'."
            )
        return "gpu"
    if not quiet:
        if reason is None:
            log.info("gpuseg backend: gpu (%s)", gpu_name())
        else:
            log.info("gpuseg backend: cpu (%s)", reason)
    return "gpu" if reason is None else "cpu"


def backend_module(name: str) -> ModuleType:
    """The primitives module of a resolved backend name (``"cpu"`` or ``"gpu"``)."""
    return importlib.import_module(f"gpuseg._{name}")


def is_device_array(x) -> bool:
    """True for a CuPy array, without importing CuPy when it is not loaded."""
    return type(x).__module__.split(".")[0] == "cupy"


def module_of(x) -> ModuleType:
    """The backend whose arrays ``x`` is of: ``gpuseg._gpu`` for a CuPy array, else ``gpuseg._cpu``."""
    return backend_module("gpu" if is_device_array(x) else "cpu")


def like_input(result, image):
    """Return ``result`` with the array type of ``image`` (output follows input)."""
    return module_of(image).asarray(result)


def gpu_name() -> str | None:
    """Name of the current CUDA device, or ``None`` without one."""
    if gpu_unavailable_reason() is not None:
        return None
    return backend_module("gpu").device_info()["name"]
