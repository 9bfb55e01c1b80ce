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

    The GPU backend needs CuPy, cuCIM and a visible device; cuML is optional
    (see :func:`gpu_trainer`). Importing them and asking CUDA for a device is
    slow and has side effects, so the answer is computed once per process.
    """
    for name in ("cupy", "cucim.skimage"):
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


def import_cuml():
    """Import cuML without letting it change the process's CuPy allocator.

    ``import cuml`` sets CuPy's allocator to RMM's, which (without an RMM pool)
    calls ``cudaMalloc``/``cudaFree`` for every array and serialises the
    filters' temporaries. gpuseg keeps the allocator the process had before —
    CuPy's caching pool unless the user chose another — for CuPy and cuML's
    Python side alike (cuML's C++ temporaries during ``fit`` go through RMM's
    current resource, as cuML decides). The stock-GPU benchmark imports cuML
    through here too, so both runners use the same allocator.

    Returns
    -------
    cuml : module
    """
    import cupy

    allocator = cupy.cuda.memory.get_allocator()
    cuml = importlib.import_module("cuml")
    cupy.cuda.set_allocator(allocator)
    return cuml


def _version_tuple(text: str) -> tuple:
    parts = []
    for piece in text.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


@functools.lru_cache(maxsize=1)
def gpu_trainer() -> tuple:
    """Which library trains the forests of the GPU backend, and why.

    Returns
    -------
    trainer : {"cuml", "scikit-learn"}
        cuML on the device where it imports; else scikit-learn on the host
        (scribbled pixels are few: training is a small part of the work,
        features and prediction stay on the device).
    detail : str
        cuML's version, or why cuML is not used.
    version : tuple of int
        cuML's ``(major, minor)``; ``()`` without it.
    """
    try:
        cuml = import_cuml()
    except Exception as exc:
        return "scikit-learn", f"cuml cannot be imported ({type(exc).__name__}: {exc})", ()
    version = str(getattr(cuml, "__version__", "0"))
    return "cuml", f"cuML {version}", _version_tuple(version)


def describe_gpu_backend() -> str:
    """One line: the device and who trains, e.g. ``NVIDIA H200; forests trained by cuML 26.10.00``."""
    trainer, detail, _ = gpu_trainer()
    if trainer == "cuml":
        return f"{gpu_name()}; forests trained by {detail}"
    return f"{gpu_name()}; forests trained by scikit-learn on the host: {detail}"


def resolve_backend(backend: str = "auto", *, quiet: bool = False) -> str:
    """Return ``"cpu"`` or ``"gpu"`` for a requested backend name.

    Parameters
    ----------
    backend : {"auto", "cpu", "gpu"}
        ``"auto"`` picks the GPU when CuPy and cuCIM import and a device is
        visible, else the CPU, and logs one line saying which, why, and (on
        the GPU) which library trains the forests.
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
            log.info("gpuseg backend: gpu (%s)", describe_gpu_backend())
        else:
            log.info("gpuseg backend: cpu (%s)", reason)
    return "gpu" if reason is None else "cpu"


def backend_module(name: str) -> ModuleType:
    """The primitives module of a resolved backend name (``"cpu"`` or ``"gpu"``)."""
    return importlib.import_module(f"gpuseg._{name}")


def is_device_array(x) -> bool:
    """True for a CuPy array, without importing CuPy when it is not loaded."""
    return type(x).__module__.split(".")[0] == "cupy"


def is_dask_array(x) -> bool:
    """True for a Dask array, without importing Dask."""
    return type(x).__module__.split(".")[0] == "dask"


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
