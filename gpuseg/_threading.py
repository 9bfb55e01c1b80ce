"""Numba's threading layer, chosen so that threads and forked processes can predict.

Numba runs ``prange`` loops on one of three layers, with different safety
(Numba's "threading layers" documentation):

========== =========== =====================================================
layer      thread-safe fork-safe
========== =========== =====================================================
tbb        yes         yes
omp        yes         no with GNU OpenMP: a forked child aborts at its first
                       parallel loop ("fork() called from a process already
                       using GNU OpenMP")
workqueue  no          yes; two threads in parallel loops abort the process
========== =========== =====================================================

gpuseg asks for ``tbb`` where the ``tbb`` wheel is installed (a dependency on
Linux x86-64 and Windows; pip puts its library off the loader's path, so it is
loaded here first), else ``omp``, else ``workqueue``; a layer named in
``NUMBA_THREADING_LAYER`` is kept. What the chosen layer lacks, the kernels
make up for: each :func:`parallel_kernel` also has a serial build, used in a
process forked after a parallel loop ran on a layer that is not fork-safe, and
calls on a layer that is not thread-safe take turns.
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading
import types

import numba

_LAYERS = ("tbb", "omp", "workqueue")
_TBB_LIBRARIES = ("libtbb.so.12", "tbb12.dll")
_FORK_SAFE = {"tbb", "workqueue"}
_THREAD_SAFE = {"tbb", "omp"}


def _tbb_usable() -> bool:
    """Whether Numba's TBB layer loads, after loading the ``tbb`` wheel's library if one is installed."""
    from importlib import metadata

    try:
        files = metadata.files("tbb") or ()
    except metadata.PackageNotFoundError:
        files = ()
    for f in files:
        if f.name in _TBB_LIBRARIES:
            path = f.locate()
            try:
                if os.name == "nt":
                    os.add_dll_directory(str(path.parent))
                ctypes.CDLL(str(path), mode=getattr(ctypes, "RTLD_GLOBAL", 0))
            except OSError:
                pass
    try:
        from numba.np.ufunc import parallel, tbbpool  # noqa: F401

        parallel._check_tbb_version_compatible()
    except Exception:  # a missing or too old libtbb, or a Numba without these internals
        return False
    return True


def _layer_available(name: str) -> bool:
    if name == "tbb":
        return _tbb_usable()
    try:
        __import__(f"numba.np.ufunc.{'omppool' if name == 'omp' else 'workqueue'}")
    except ImportError:
        return False
    return True


def choose_layer() -> str:
    """Set ``numba.config.THREADING_LAYER`` to a concrete layer and return its name.

    A concrete layer already set (``NUMBA_THREADING_LAYER=omp``, say) is kept;
    otherwise the first available of tbb, omp and workqueue.
    """
    requested = str(numba.config.THREADING_LAYER)
    if requested in _LAYERS:
        if requested == "tbb":
            _tbb_usable()
        return requested
    layer = next((name for name in _LAYERS if _layer_available(name)), "workqueue")
    numba.config.THREADING_LAYER = layer
    return layer


def _parallel_has_run() -> bool:
    try:
        numba.threading_layer()
    except ValueError:  # "Threading layer is not initialized."
        return False
    return True


_LAYER = choose_layer()
_TURNS = threading.Lock()
_forked_after_parallel = False


def _after_fork_in_child() -> None:
    global _forked_after_parallel, _TURNS
    _forked_after_parallel = _forked_after_parallel or _parallel_has_run()
    _TURNS = threading.Lock()  # a lock held by another thread at the fork would never be released here


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def active_layer() -> str:
    """The layer parallel loops run on: Numba's once one has run, else the one gpuseg chose."""
    try:
        return numba.threading_layer()
    except ValueError:
        return _LAYER


def runs_serially() -> bool:
    """Whether kernels run their serial builds: in a fork, after parallel loops, of a fork-unsafe layer."""
    return _forked_after_parallel and active_layer() not in _FORK_SAFE


def _renamed(func, suffix: str):
    """A copy of ``func`` with another qualified name: Numba's cache tells builds apart by name, not by flags."""
    copy = types.FunctionType(func.__code__, func.__globals__, func.__name__ + suffix, func.__defaults__,
                              func.__closure__)
    copy.__qualname__ = func.__qualname__ + suffix
    return copy


def parallel_kernel(func=None, **options):
    """``numba.njit(parallel=True, **options)`` with a serial twin and turns where the layer needs them.

    Use as ``@parallel_kernel(cache=True, nogil=True)``. The kernel is called
    from Python only (not from other Numba functions).
    """
    if func is None:
        return functools.partial(parallel_kernel, **options)
    parallel = numba.njit(parallel=True, **options)(func)
    serial = numba.njit(parallel=False, **options)(_renamed(func, "_serial"))

    @functools.wraps(func)
    def kernel(*args):
        if runs_serially():
            return serial(*args)
        if active_layer() in _THREAD_SAFE:
            return parallel(*args)
        with _TURNS:
            return parallel(*args)

    kernel.parallel, kernel.serial = parallel, serial
    return kernel
