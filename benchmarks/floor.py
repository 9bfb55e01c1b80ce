"""How far gpuseg's CPU stages are from what this machine's cores can do (the "CPU floor").

Run ``python -m benchmarks.floor [--size 2048] [--repeats 3] [--out DIR]``. It
prints, and writes as ``floor.md`` into ``--out`` (which the standard report
then quotes), two stages:

* **Forest walk** (``predict_proba`` without the features). Work: node steps, the
  pixels times the trees' depths (for probabilities the kernel walks every tree
  its full depth; for labels, timed beside it, it stops where they are sure).
  Measured: gpuseg's kernel on 50 depth-10 trees trained on 24 features of the
  pixels, as the benchmark's forest is. Floor: the same kernel on 50 depth-10
  trees of 21 nodes each (a chain whose every node keeps one leaf), where
  every load of the walk hits the L1 cache: the rate of the dependent-load
  chain itself on these cores.
* **Features** of the whole image, per preset. Work: the separable Gaussian
  passes the features need (counted while computing them) and their taps;
  each pass reads and writes a float32 image, and the features are written
  once more (feature-major). Floor: those bytes at this machine's memory
  bandwidth, measured here as a parallel copy of a 256 MiB array on every core;
  and their multiply-adds (a symmetric kernel of ``2r + 1`` taps adds the
  pixels ``r`` apart in pairs first: ``r + 1`` multiply-adds) at the rate of
  Numba-compiled code on L1-resident data on every core (no fast-math, as the
  filter kernels are compiled: not the processor's SIMD peak), measured here
  too, in float64 for scikit-image's passes and float32 for the filters'. The
  floor is the slower.

Both floors are measured on this machine in this run, taking turns with the
stages they bound (best of ``--repeats`` rounds); nothing is quoted.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

import numba
import numpy as np

from .report import print_section

FLOOR_TREES, FLOOR_DEPTH = 50, 10


def _interleaved(tasks: dict, repeats: int) -> dict:
    """Best seconds of each callable of ``tasks``, timed in ``repeats`` rounds that run every task once.

    Each task runs once untimed first (compilation). Taking turns, the tasks
    share whatever the machine's speed does meanwhile (this VM's drifts by tens
    of per cent within minutes), so their ratios, which the report shows, hold.
    """
    for fn in tasks.values():
        fn()
    best = dict.fromkeys(tasks, float("inf"))
    for _ in range(repeats):
        for name, fn in tasks.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


@numba.njit(parallel=True, nogil=True)
def _copy(src, dst):
    for i in numba.prange(src.size):
        dst[i] = src[i]


def bandwidth_task() -> tuple:
    """A parallel copy of a 256 MiB array on every core, and the bytes it moves (read + write)."""
    src = np.ones(2**26, np.float32)
    dst = np.empty_like(src)
    return (lambda: _copy(src, dst)), 2 * src.nbytes


@numba.njit(nogil=True)
def _multiply_add_rounds(x, acc, rounds, w):
    for _ in range(rounds):
        for j in range(x.size):
            acc[j] += x[j] * w


@numba.njit(parallel=True, nogil=True)
def _multiply_adds(x, acc, rounds, w):
    for t in numba.prange(acc.shape[0]):
        _multiply_add_rounds(x, acc[t], rounds, w)


def multiply_add_task(dtype=np.float64) -> tuple:
    """Multiply-adds in ``dtype`` of Numba-compiled code on L1-resident data, every core, and their count.

    Compiled as gpuseg's filter kernels are (no fast-math, so no fused
    multiply-add): what a filter tap costs at best in such code, not the
    processor's peak.
    """
    threads = numba.get_num_threads()
    x = np.ones(512, dtype)
    # Eight rows of work per core: with one each, TBB may run two rows on one thread (measured: half the
    # rate in some runs); about 20 ms in all, long enough to time on a noisy VM.
    acc = np.zeros((8 * threads, x.size), dtype)
    rounds, w = 25_000, np.dtype(dtype).type(1.000001)
    return (lambda: _multiply_adds(x, acc, rounds, w)), acc.shape[0] * rounds * x.size


def chain_forest(n_features: int):
    """50 trees of depth 10 whose every internal node has one leaf child: 21 nodes a tree, all in L1."""
    from gpuseg.forest import Forest

    rng = np.random.default_rng(1)
    trees = []
    for _ in range(FLOOR_TREES):
        n = 2 * FLOOR_DEPTH + 1
        left, right = np.full(n, -1), np.full(n, -1)
        internal = np.arange(0, n - 1, 2)  # node 2k: left child 2k + 1 (a leaf), right child 2k + 2
        left[internal], right[internal] = internal + 1, internal + 2
        feature = np.where(left >= 0, rng.integers(0, n_features, n), -2)
        threshold = np.where(left >= 0, rng.random(n), -2.0)
        trees.append((left, right, feature, threshold, rng.random((n, 3))))
    return Forest.from_trees(trees, n_features, 3)


def trained_classifier(X: np.ndarray):
    """scikit-learn's 50 depth-10 trees on the first 200,000 rows of ``X`` (24 features), three classes
    that need many splits (``benchmarks.filters`` times the same forest against scikit-learn)."""
    from sklearn.ensemble import RandomForestClassifier

    y = (X[:, 0] + X[:, 1] > 1).astype(int) + (X[:, 2] > 0.7)
    clf = RandomForestClassifier(n_estimators=50, max_depth=10, max_samples=20_000, random_state=0, n_jobs=-1)
    return clf.fit(X[:200_000], y[:200_000])


def walk_tasks(n_pixels: int) -> dict:
    """Probabilities and labels of the trained forest and of the L1-resident chain forest for ``n_pixels``
    random pixels: ``{name: (fn, node steps)}`` (``steps`` the pixels times the trees' depths)."""
    from gpuseg import _cpu
    from gpuseg.forest import Forest

    X = np.random.default_rng(0).random((n_pixels, 24), dtype=np.float32)
    Xt = np.ascontiguousarray(X.T)
    tasks = {}
    for name, forest in (("trained", Forest.from_sklearn(trained_classifier(X))), ("floor", chain_forest(24))):
        arrays, steps = forest.arrays(_cpu), n_pixels * int(forest.depth.sum())
        tasks[name] = ((lambda a=arrays: _cpu.forest_predict_proba(a, Xt)), steps)
        tasks[name + " labels"] = ((lambda a=arrays: _cpu.forest_predict_labels(a, Xt)), steps)
    return tasks


@contextlib.contextmanager
def counted_passes(be):
    """``(radius, precision)`` of each separable Gaussian pass the backend ``be`` runs meanwhile: the
    filters' ``gaussian_1d`` passes sum in float32, ``gaussian``'s (scikit-image's features) in float64."""
    from gpuseg.filters import gaussian_radius

    passes = []
    one_d, nd = be.gaussian_1d, be.gaussian

    def gaussian_1d(image, sigma, order, axis):
        passes.append((gaussian_radius(sigma), "float32"))
        return one_d(image, sigma, order, axis)

    def gaussian(image, sigma, order=0):
        sigmas = np.broadcast_to(np.asarray(sigma, float), (image.ndim,))
        passes.extend((gaussian_radius(s), "float64") for s in sigmas)
        return nd(image, sigma, order)

    be.gaussian_1d, be.gaussian = gaussian_1d, gaussian
    try:
        yield passes
    finally:
        be.gaussian_1d, be.gaussian = one_d, nd


def feature_task(edge: int, preset: str) -> tuple:
    """A preset's features of an ``edge`` x ``edge`` image, and their passes, taps, multiply-adds and
    bytes per pixel."""
    from gpuseg import _cpu
    from gpuseg.features import PRESETS
    from gpuseg.predictor import TileFeatures

    params = PRESETS[preset]
    image = np.random.default_rng(0).random((edge, edge, 1), dtype=np.float32)
    rows = TileFeatures(params, -1, _cpu)
    crop = (slice(0, edge), slice(0, edge))
    with counted_passes(_cpu) as passes:
        rows.feature_matrix(image, crop, (edge, edge))
    n_features = params.n_features(2)
    return (lambda: rows.feature_matrix(image, crop, (edge, edge))), {
        "preset": preset, "passes": len(passes), "taps": sum(2 * r + 1 for r, _ in passes),
        "multiply_adds": {p: sum(r + 1 for r, q in passes if q == p) for p in ("float64", "float32")},
        "n_features": n_features, "bytes_per_pixel": 8 * len(passes) + 4 * n_features}


PRESETS_MEASURED = ("skimage", "compact", "ilastik")


def measure(edge: int, repeats: int) -> dict:
    """Everything :func:`report` shows, measured now, every stage and floor taking turns (see :func:`_interleaved`)."""
    copy, copied = bandwidth_task()
    adds = {p: multiply_add_task(np.dtype(p)) for p in ("float64", "float32")}
    walks = walk_tasks(edge * edge)
    features = {p: feature_task(edge, p) for p in PRESETS_MEASURED}
    seconds = _interleaved({"copy": copy, **{f"adds {p}": fn for p, (fn, _) in adds.items()},
                            **{f"walk {n}": fn for n, (fn, _) in walks.items()},
                            **{f"features {p}": fn for p, (fn, _) in features.items()}}, repeats)
    walk = {name: {"seconds": seconds[f"walk {name}"], "labels_seconds": seconds[f"walk {name} labels"],
                   "steps_per_s": walks[name][1] / seconds[f"walk {name}"]} for name in ("trained", "floor")}
    return {"edge": edge, "threads": numba.get_num_threads(), "bandwidth": copied / seconds["copy"],
            "multiply_adds": {p: n / seconds[f"adds {p}"] for p, (_, n) in adds.items()},
            "walk": walk,
            "features": [{**info, "seconds": seconds[f"features {p}"]} for p, (_, info) in features.items()]}


def report(m: dict) -> str:
    """Markdown tables of the measured rates against the floors."""
    edge, walk = m["edge"], m["walk"]
    pixels = edge * edge
    lines = [f"## CPU floor ({edge}x{edge}, {m['threads']} threads; `python -m benchmarks.floor --size {edge}`)", "",
             "| stage | work | measured | floor | measured / floor |", "|---|---|---|---|---|"]
    trained, floor = walk["trained"], walk["floor"]
    lines.append(f"| forest walk | {pixels * FLOOR_TREES * FLOOR_DEPTH / 1e9:.2f} G node steps | "
                 f"{trained['steps_per_s'] / 1e9:.2f} G steps/s ({trained['seconds']:.2f} s) | "
                 f"{floor['steps_per_s'] / 1e9:.2f} G steps/s (L1-resident trees) | "
                 f"{trained['steps_per_s'] / floor['steps_per_s']:.0%} |")
    labels_share = trained["labels_seconds"] / trained["seconds"]
    for f in m["features"]:
        memory_s = f["bytes_per_pixel"] * pixels / m["bandwidth"]
        used = [p for p, n in f["multiply_adds"].items() if n]
        taps_s = sum(f["multiply_adds"][p] * pixels / m["multiply_adds"][p] for p in used)
        floor_s = max(memory_s, taps_s)
        counts = " + ".join(f"{f['multiply_adds'][p]} {p}" for p in used)
        rates = ", ".join(f"{m['multiply_adds'][p] / 1e9:.1f} G/s {p}" for p in used)
        lines.append(f"| features `{f['preset']}` ({f['n_features']}) | {f['passes']} Gaussian passes, "
                     f"{f['taps']} taps/px ({counts} multiply-adds), {f['bytes_per_pixel']} B/px | "
                     f"{f['seconds']:.2f} s | "
                     f"{floor_s:.2f} s: multiply-adds {taps_s:.2f} s at {rates}, "
                     f"bytes {memory_s:.2f} s at {m['bandwidth'] / 1e9:.1f} GB/s | {floor_s / f['seconds']:.0%} |")
    lines += ["", "The last column is the share of the floor's rate each stage reaches (100 %: at the floor). "
              "The forest walk's floor is the same kernel with every load in L1 (the dependent-load chain "
              "alone). The features' floor is the slower of their multiply-adds (one per pair of taps) at "
              "the rate of Numba-compiled code on L1-resident data in the passes' precision (scikit-image's "
              "accumulate in float64, as SciPy's do, the filters' in float32; not the processor's SIMD peak) "
              "and their bytes at the "
              "parallel copy bandwidth; it ignores the eigenvalues and the other pointwise arithmetic.",
              "", f"Labels of the same pixels (`forest_predict_labels`, which stops walking a pixel once its "
              f"largest class is sure) took {trained['labels_seconds']:.2f} s, {labels_share:.0%} of the "
              f"probabilities' walk above; how many pixels stop early depends on the forest and the image."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, help="folder to write floor.md into")
    args = parser.parse_args(argv)
    print_section(report(measure(args.size, args.repeats)), args.out, "floor.md")


if __name__ == "__main__":
    main()
