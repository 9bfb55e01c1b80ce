"""Predicting in forked, spawned and forkserver children and in concurrent threads, on every threading layer.

Each case runs in a fresh interpreter with a time limit: a layer that aborts a
child makes ``multiprocessing.Pool`` wait forever, which the limit turns into
a failure instead of a hung test run.
"""

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import multiprocessing as mp, sys, threading
    import numpy as np
    import gpuseg
    from gpuseg import _threading

    rng = np.random.default_rng(0)
    image = rng.random((48, 48), dtype=np.float32)
    labels = np.zeros((48, 48), np.uint8)
    labels[5:10, 5:40], labels[30:35, 5:40] = 1, 2
    seg = gpuseg.Segmenter(backend="cpu", sigma_max=2, n_estimators=4, random_state=0).fit(image, labels)
    expected = seg.predict(image)

    def work(_):
        return seg.predict(image)

    if __name__ == "__main__":
        print("layer", _threading.active_layer(), flush=True)
        for method in sys.argv[1].split(","):
            if method == "executor":  # concurrent.futures with fork: BrokenProcessPool when a child aborts
                from concurrent.futures import ProcessPoolExecutor
                with ProcessPoolExecutor(2, mp_context=mp.get_context("fork")) as pool:
                    results = list(pool.map(work, range(2)))
            elif method == "threads":
                results = [None] * 4
                def run(i):
                    results[i] = work(i)
                threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
                [t.start() for t in threads]
                [t.join() for t in threads]
            else:
                n = 2 if method == "fork" else 1  # a spawned worker imports gpuseg: one is enough
                with mp.get_context(method).Pool(n) as pool:
                    results = pool.map(work, range(2))
            assert all(np.array_equal(r, expected) for r in results), method
            print("ok", method, flush=True)
""")


def _run(tmp_path, methods, layer=None, timeout=120):
    script = tmp_path / "predict_in_children.py"  # a file: spawned children import the main module
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    if layer:
        env["NUMBA_THREADING_LAYER"] = layer
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
                                        + [p for p in [env.get("PYTHONPATH")] if p])
    try:
        done = subprocess.run([sys.executable, str(script), methods], env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"predicting with {methods} on layer {layer or 'default'} hung; output: {exc.stdout!r}")
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_default_layer_is_thread_and_fork_safe(tmp_path):
    """fork, spawn, forkserver and threads after a prediction in the parent, on the layer gpuseg chooses."""
    out = _run(tmp_path, "fork,executor,spawn,forkserver,threads")
    assert "ok threads" in out and "ok forkserver" in out and "ok executor" in out
    if sys.platform == "linux" and os.uname().machine == "x86_64":
        assert "layer tbb" in out  # the tbb dependency is installed here and is loaded


@pytest.mark.parametrize("layer", ["omp", "workqueue"])
def test_layers_without_tbb_still_predict_in_forks_and_threads(tmp_path, layer):
    """GNU OpenMP aborts a forked child's parallel loop: its serial kernels run; workqueue takes turns."""
    out = _run(tmp_path, "fork,executor,threads", layer)
    assert f"layer {layer}" in out and "ok fork" in out and "ok executor" in out and "ok threads" in out


@pytest.mark.parametrize("platform, machine, wanted", [
    ("linux", "x86_64", True), ("win32", "AMD64", True), ("darwin", "arm64", False), ("linux", "aarch64", False),
    ("darwin", "x86_64", False),
])
def test_tbb_is_a_dependency_only_where_wheels_exist(platform, machine, wanted):
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    from packaging.requirements import Requirement

    with open(os.path.join(os.path.dirname(__file__), "..", "pyproject.toml"), "rb") as f:
        deps = [Requirement(d) for d in tomllib.load(f)["project"]["dependencies"]]
    (tbb,) = [d for d in deps if d.name == "tbb"]
    assert tbb.marker.evaluate({"sys_platform": platform, "platform_machine": machine}) is wanted
