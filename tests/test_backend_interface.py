"""The two backend modules expose the same names with the same signatures (``_gpu.py`` read as text: no CuPy)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gpuseg"


def _interface(module: str) -> tuple:
    """``__all__`` of a backend module and the signature (arguments, defaults, as source) of each function in it."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    exported, signatures, assigned = None, {}, set()
    for node in tree.body:
        if isinstance(node, ast.Assign):
            names = {t.id for t in node.targets if isinstance(t, ast.Name)}
            assigned |= names
            if "__all__" in names:
                exported = ast.literal_eval(node.value)
        elif isinstance(node, ast.FunctionDef):
            args = node.args
            signatures[node.name] = (
                [a.arg for a in args.posonlyargs + args.args], [ast.unparse(d) for d in args.defaults],
                [a.arg for a in args.kwonlyargs], [None if d is None else ast.unparse(d) for d in args.kw_defaults],
                args.vararg is not None, args.kwarg is not None,
            )
    assert exported is not None, f"{module} has no __all__"
    return exported, signatures, assigned


def test_cpu_and_gpu_export_the_same_names_with_the_same_signatures():
    cpu_names, cpu_sigs, cpu_assigned = _interface("_cpu")
    gpu_names, gpu_sigs, gpu_assigned = _interface("_gpu")
    assert sorted(cpu_names) == sorted(gpu_names)
    for name in cpu_names:
        if name in cpu_sigs or name in gpu_sigs:
            assert name in cpu_sigs and name in gpu_sigs, f"{name} is a function in one backend only"
            assert cpu_sigs[name] == gpu_sigs[name], f"{name} has other arguments on the GPU"
        else:
            assert name in cpu_assigned and name in gpu_assigned, f"{name} is not defined in both backends"


@pytest.mark.parametrize("name", ["asarray", "to_host", "device_id", "memory_budget", "device_info"])
def test_host_device_copies_and_device_queries_live_in_the_backends(name):
    for module in ("_cpu", "_gpu"):
        assert name in _interface(module)[0]


def test_the_cpu_backend_interface_works():
    import numpy as np

    from gpuseg import _cpu

    x = np.arange(6).reshape(2, 3)
    assert _cpu.asarray(x) is x and _cpu.to_host(x) is x
    assert _cpu.device_id() == "cpu" and 0 < _cpu.memory_budget() <= 2**30
    info = _cpu.device_info()
    assert info["name"] and 0 < info["free_bytes"] <= info["total_bytes"]
