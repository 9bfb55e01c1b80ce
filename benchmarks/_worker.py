"""Run one runner on one image in a fresh process: ``python -m benchmarks._worker``.

A fresh process per runner and image keeps one runner's caches, thread pools
and memory high-water mark out of another's measurements. The worker warms
the runner up on a small image of the same kind, then times each of its stages
``--repeats`` times, measuring peak memory around every repeat, and appends
one JSON row per stage and repeat to ``--rows``.
"""

from __future__ import annotations

import argparse
import gc
import json
from pathlib import Path

import numpy as np

from ._memory import PeakMemory
from .data import make_image
from .runners import REFERENCE, RUNNERS, USER_FOREST

WARM_UP_EDGE = {2: 128, 3: 48}
REFERENCE_LABELS = "reference-labels.npy"


def warm_up(runner, ndim: int) -> int:
    """Run every stage once on a small image like the benchmarked ones; return the number of features."""
    small, _, small_scribbles = make_image((WARM_UP_EDGE[ndim],) * ndim, seed=1)
    runner.setup(small, small_scribbles)
    n_features = int(runner.features(small).shape[-1])
    for stage in runner.stages:
        runner.run_stage(stage, small, small_scribbles)
    runner.reset()
    return n_features


def score(labels, case: Path, is_reference: bool) -> tuple[float | None, float | None]:
    """Fraction of pixels whose label equals the reference's, and the ground truth's.

    The reference runner's first labels of a case become that case's reference.
    """
    if labels is None:
        return None, None
    reference = case / REFERENCE_LABELS
    if is_reference and not reference.exists():
        np.save(reference, labels)
    agreement = float(np.mean(labels == np.load(reference))) if reference.exists() else None
    return agreement, float(np.mean(labels == np.load(case / "truth.npy")))


def measure(runner_name: str, case: Path, repeats: int) -> list[dict]:
    """Rows of ``results.jsonl`` for one runner on the case in directory ``case``."""
    runner = RUNNERS[runner_name](USER_FOREST)
    image = runner.load_image(case)
    scribbles = np.load(case / "scribbles.npy")
    common = {
        "runner": runner.name,
        "shape": list(image.shape),
        "device": runner.device(),
        "n_features": warm_up(runner, image.ndim),
        "labelled_pixels": int(np.count_nonzero(scribbles)),
    }
    runner.setup(image, scribbles)
    rows = []
    for stage in runner.stages:
        for repeat in range(repeats):
            gc.collect()
            with PeakMemory(gpu=runner.gpu) as mem:
                seconds, labels = runner.run_stage(stage, image, scribbles)
            agreement, accuracy = score(labels, case, runner.name == REFERENCE)
            del labels
            rows.append(
                {
                    **common,
                    "stage": stage,
                    "repeat": repeat,
                    "seconds": seconds,
                    "peak_rss_GB": mem.host_gb,
                    "peak_gpu_GB": mem.gpu_gb,
                    "agreement": agreement,
                    "accuracy": accuracy,
                    **({"details": dict(runner.details)} if runner.details else {}),
                }
            )
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks._worker", description=__doc__.split("\n")[0])
    parser.add_argument("--runner", required=True, choices=sorted(RUNNERS))
    parser.add_argument("--case", required=True, type=Path, help="directory written by benchmarks.data.write_case")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", required=True, type=Path, help="JSON-lines file the rows are appended to")
    args = parser.parse_args(argv)
    rows = measure(args.runner, args.case, args.repeats)
    with open(args.rows, "a") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
