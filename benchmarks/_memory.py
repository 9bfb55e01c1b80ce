"""Peak host and device memory over a block of code, in the benchmark worker.

Host: on Linux the kernel's high-water mark of the resident set (``VmHWM``)
is reset before the block (``/proc/self/clear_refs``) and read after it, which
is exact; elsewhere RSS is sampled by a thread. Device: used device memory
(``cudaMemGetInfo``) is sampled by a thread, after CuPy's pools give back
their cached blocks, and reported above what was in use before the block.
"""

from __future__ import annotations

import threading
from pathlib import Path

import psutil

GB = 1e9
CLEAR_REFS = Path("/proc/self/clear_refs")
SAMPLE_SECONDS = 0.002


def _can_reset_hwm() -> bool:
    try:
        CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def _hwm_bytes() -> int:
    with open("/proc/self/status") as f:
        kb = next(line.split()[1] for line in f if line.startswith("VmHWM:"))
    return int(kb) * 1024


class _Sampler(threading.Thread):
    """Calls ``read()`` every few milliseconds and keeps the largest value."""

    def __init__(self, read):
        super().__init__(daemon=True)
        self.read = read
        self.peak = read()
        self._done = threading.Event()

    def run(self):
        while not self._done.wait(SAMPLE_SECONDS):
            self.peak = max(self.peak, self.read())

    def finish(self) -> int:
        self._done.set()
        self.join()
        return max(self.peak, self.read())


def _device_used_bytes() -> int:
    import cupy

    free, total = cupy.cuda.runtime.memGetInfo()
    return total - free


class PeakMemory:
    """Context manager measuring peak memory of the block it wraps.

    Parameters
    ----------
    gpu : bool
        Also measure device memory (needs CuPy and a GPU).

    Attributes
    ----------
    host_gb : float
        Peak resident set size of the process during the block, GB (1e9 bytes).
    gpu_gb : float or None
        Peak device memory in use during the block beyond what was in use
        before it, GB; ``None`` without ``gpu``.
    """

    exact_host = _can_reset_hwm()

    def __init__(self, gpu: bool = False):
        self.gpu = gpu
        self.host_gb = None
        self.gpu_gb = None

    def __enter__(self):
        if self.gpu:
            import cupy

            cupy.get_default_memory_pool().free_all_blocks()
            cupy.get_default_pinned_memory_pool().free_all_blocks()
            self._device_base = _device_used_bytes()
            self._device = _Sampler(_device_used_bytes)
            self._device.start()
        if self.exact_host:
            CLEAR_REFS.write_text("5")
        else:
            process = psutil.Process()
            self._host = _Sampler(lambda: process.memory_info().rss)
            self._host.start()
        return self

    def __exit__(self, *exc):
        host = _hwm_bytes() if self.exact_host else self._host.finish()
        self.host_gb = host / GB
        if self.gpu:
            self.gpu_gb = max(0, self._device.finish() - self._device_base) / GB
        return False


WARM_BYTES_PER_PIXEL = 400
"""Bytes of memory touched before a run, per pixel of its largest image: about twice the largest peak
a runner reaches (the recipe's, 212 bytes per pixel at 4096x4096 in ``results/cpu-2core``)."""

PAGE = 4096


def touch_free_memory(nbytes: float) -> tuple[int, float]:
    """Write every page of ``nbytes`` (at most three quarters of the available memory) once, then free them.

    In a freshly started virtual machine the first write to a page of the
    guest's memory costs much more than later ones (2.6 ms against 0.19 ms per
    MB for a 128 MB array on the 2-core benchmark VM), and a runner would pay
    that for pages no process had touched before: a cost of the run's order,
    not of the runner. After this, the pages the runners get have been touched
    once.

    Returns
    -------
    touched : int
        Bytes written.
    seconds : float
        Time it took.
    """
    import time

    import numpy as np

    nbytes = int(min(nbytes, 0.75 * psutil.virtual_memory().available))
    chunk = 256 * 2**20
    start = time.perf_counter()
    held = []
    for offset in range(0, nbytes, chunk):
        block = np.empty(min(chunk, nbytes - offset), np.uint8)
        block[::PAGE] = 1
        held.append(block)
    seconds = time.perf_counter() - start
    del held
    return nbytes, seconds
