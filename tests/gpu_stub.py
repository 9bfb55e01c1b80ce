"""A stand-in for CuPy and cuCIM on a machine without a GPU, to run ``gpuseg._gpu``'s own code on the CPU.

Arrays are NumPy arrays; cuCIM's functions are scikit-image's (cuCIM mirrors their
signatures). ``RawModule`` takes CuPy 14's keyword-only signature and compiles the
*real* CUDA source of the predict kernel as host C++ with g++ (``__global__`` a
plain function, the grid a loop), then checks every launch argument against the
kernel's C parameter types, as a wrong scalar width or array dtype would corrupt
memory on a device. What this cannot show: timing, and anything of the CUDA
runtime itself; those are the GPU tests' job.
"""

from __future__ import annotations

import ctypes
import hashlib
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np

_SHIM = r"""
#include <cstddef>
struct gpuseg_dim3 { unsigned x, y, z; };
static gpuseg_dim3 blockDim, blockIdx, threadIdx;
#define __global__
"""
_C_TYPES = {"const float*": np.float32, "float*": np.float32, "const int*": np.int32, "int*": np.int32,
            "long long": np.int64, "int": np.int32}


def have_compiler() -> bool:
    return shutil.which("g++") is not None


def kernel_parameter_types(code: str, name: str) -> list:
    """C types of a kernel's parameters, e.g. ``["const float*", "long long", ...]``."""
    params = re.search(r"__global__ void " + name + r"\((.*?)\)\s*\{", code, re.S).group(1)
    # "const float* __restrict__ X" -> "const float*"
    return [" ".join(p.replace("__restrict__", " ").replace("*", "* ").split()[:-1]) for p in params.split(",")]


class _HostKernel:
    """A template kernel instantiated for one ``K`` and compiled for the host."""

    def __init__(self, code: str, name: str, build: Path):
        base, k = re.fullmatch(r"(\w+)<(\d+)>", name).groups()
        self.types = kernel_parameter_types(code, base)
        formals = ", ".join(f"{t} a{i}" for i, t in enumerate(self.types))
        actuals = ", ".join(f"a{i}" for i in range(len(self.types)))
        source = (_SHIM + code + f"""
extern "C" void launch(unsigned grid, unsigned block, {formals}) {{
    blockDim.x = block;
    for (unsigned b = 0; b < grid; ++b) for (unsigned t = 0; t < block; ++t) {{
        blockIdx.x = b; threadIdx.x = t; {base}<{k}>({actuals});
    }}
}}
""")
        digest = hashlib.sha1(source.encode()).hexdigest()[:16]
        lib = build / f"kernel-{digest}.so"
        if not lib.exists():
            src = build / f"kernel-{digest}.cpp"
            src.write_text(source)
            subprocess.run(["g++", "-O1", "-shared", "-fPIC", "-w", "-o", str(lib), str(src)], check=True)
        self.fn = ctypes.CDLL(str(lib)).launch

    def __call__(self, grid, block, args):
        assert len(grid) == 1 and len(block) == 1, "the kernel is launched on a 1D grid"
        assert grid[0] > 0 and block[0] > 0, "a launch with an empty grid is an error on a device"
        assert len(args) == len(self.types), f"{len(args)} arguments for {len(self.types)} parameters"
        c_args = []
        for i, (arg, ctype) in enumerate(zip(args, self.types)):
            want = np.dtype(_C_TYPES[ctype])
            if ctype.endswith("*"):
                assert isinstance(arg, np.ndarray) and arg.dtype == want and arg.flags.c_contiguous, (
                    f"argument {i} must be a C-contiguous {want} array for {ctype}")
                c_args.append(ctypes.c_void_p(arg.ctypes.data))
            else:
                assert isinstance(arg, np.generic) and arg.dtype == want, (
                    f"argument {i} must be a NumPy {want} scalar for {ctype}, got {type(arg).__name__}")
                c_args.append(np.ctypeslib.as_ctypes_type(want)(arg.item()))
        self.fn(ctypes.c_uint(grid[0]), ctypes.c_uint(block[0]), *c_args)


def fake_cupy(build: Path, allocator_log: list) -> types.ModuleType:
    """A ``cupy`` module of NumPy arrays with the few CUDA calls gpuseg makes."""
    cp = types.ModuleType("cupy")
    for name in ("asarray", "ascontiguousarray", "empty", "float32", "int32", "gradient", "isfinite",
                 "concatenate", "zeros", "moveaxis", "sqrt"):
        setattr(cp, name, getattr(np, name))
    cp.asnumpy = np.asarray
    cp.ndarray = np.ndarray

    def raw_module(*, code=None, path=None, options=(), backend="nvrtc", translate_cucomplex=False,
                   enable_cooperative_groups=False, name_expressions=None, jitify=False):
        # CuPy 14's RawModule signature (cupy/_core/raw.pyx), keyword-only.
        module = types.SimpleNamespace()
        module.get_function = lambda name: _HostKernel(code, name, build)
        assert name_expressions, "a template kernel needs its name expressions"
        return module

    cp.RawModule = raw_module
    cp.get_default_memory_pool = lambda: types.SimpleNamespace(free_bytes=lambda: 0, used_bytes=lambda: 0,
                                                               total_bytes=lambda: 0, free_all_blocks=lambda: None)
    cuda = types.ModuleType("cupy.cuda")
    memory = types.ModuleType("cupy.cuda.memory")
    state = {"allocator": "cupy-pool"}
    memory.get_allocator = lambda: state["allocator"]

    def set_allocator(allocator=None):
        allocator_log.append(allocator)
        state["allocator"] = allocator

    cuda.memory = memory
    cuda.set_allocator = set_allocator
    cuda.runtime = types.SimpleNamespace(getDeviceCount=lambda: 1, memGetInfo=lambda: (8 << 30, 16 << 30),
                                         getDeviceProperties=lambda i: {"name": b"Stub GPU"})
    cuda.Device = lambda *a: types.SimpleNamespace(id=0, synchronize=lambda: None)
    cp.cuda = cuda
    cp._state = state
    return cp


def fake_cupyx() -> dict:
    """``cupyx.scipy.ndimage`` backed by SciPy's, which it mirrors."""
    from scipy import ndimage

    root = types.ModuleType("cupyx")
    scipy = types.ModuleType("cupyx.scipy")
    scipy.ndimage = ndimage
    root.scipy = scipy
    return {"cupyx": root, "cupyx.scipy": scipy, "cupyx.scipy.ndimage": ndimage}


def fake_cucim() -> dict:
    """``cucim.skimage`` modules backed by scikit-image, which cuCIM mirrors."""
    import skimage.feature
    import skimage.filters
    import skimage.util

    root = types.ModuleType("cucim")
    sk = types.ModuleType("cucim.skimage")
    sk.filters = skimage.filters
    sk.feature = skimage.feature
    sk.util = skimage.util
    root.skimage = sk
    return {"cucim": root, "cucim.skimage": sk, "cucim.skimage.filters": skimage.filters,
            "cucim.skimage.feature": skimage.feature, "cucim.skimage.util": skimage.util}


def install(monkeypatch, build: Path, cuml=None) -> types.ModuleType:
    """Put the stand-ins in ``sys.modules`` (and ``cuml`` if given, else make it unimportable)."""
    log: list = []
    cp = fake_cupy(build, log)
    monkeypatch.setitem(sys.modules, "cupy", cp)
    monkeypatch.setitem(sys.modules, "cupy.cuda", cp.cuda)
    monkeypatch.setitem(sys.modules, "cupy.cuda.memory", cp.cuda.memory)
    for name, module in {**fake_cupyx(), **fake_cucim()}.items():
        monkeypatch.setitem(sys.modules, name, module)
    if cuml is None:
        monkeypatch.setitem(sys.modules, "cuml", None)  # import cuml raises ImportError
    else:
        for name, module in cuml.items():
            monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.delitem(sys.modules, "gpuseg._gpu", raising=False)
    clear_caches()
    cp.allocator_log = log
    return cp


def clear_caches() -> None:
    """Forget what ``gpuseg._backend`` found out about the GPU stack (call after the stand-ins leave too)."""
    from gpuseg import _backend

    _backend.gpu_unavailable_reason.cache_clear()
    _backend.gpu_trainer.cache_clear()
