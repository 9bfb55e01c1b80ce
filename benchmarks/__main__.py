"""Command line of the benchmark suite: ``python -m benchmarks [options]``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import report, suite
from .runners import RUNNERS, cpu_model


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def _names(text: str) -> list[str]:
    names = [x for x in text.split(",") if x]
    unknown = sorted(set(names) - set(RUNNERS))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown runner(s) {unknown}; choose from {sorted(RUNNERS)}")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Time and measure scikit-image's recipe, gpuseg (CPU, GPU) and stock cuCIM + cuML "
        "on the same images, and write results.jsonl, report.md and plots.",
    )
    parser.add_argument("--out", help="output folder (default benchmarks/results/<machine>/)")
    parser.add_argument(
        "--scenario",
        choices=sorted([*suite.SCENARIOS, "accuracy"]),
        default="standard",
        help="standard: every runner, every stage; large: tiled prediction of a Zarr-backed image "
        "(gpuseg-cpu-zarr); scale: the same on a Dask LocalCluster of 1 and 2 worker processes (tiles per second, "
        "scaling efficiency, and a plan on paper for 100 workers); app: the app's stroke-to-overlay time; "
        "accuracy: accuracy and mIoU of the recipe and of each feature preset on the validation set "
        "(benchmarks/validation.py), and the defaults' end-to-end time at --sizes (default 4096; 0 for none) "
        "against the previous defaults'",
    )
    parser.add_argument("--sizes", type=_ints, help="image edge lengths, e.g. 512,1024 (default: the scenario's)")
    parser.add_argument("--3d", dest="three_d", action="store_true", help="3D images (cubes of --sizes)")
    parser.add_argument("--runners", type=_names, help=f"comma-separated, from {', '.join(RUNNERS)}")
    parser.add_argument("--repeats", type=int, help="timed repeats per stage; the median is quoted (default 3)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke test: sizes {suite.QUICK['sizes']}, CPU runners, {suite.QUICK['repeats']} repeats "
        "(explicit options win)",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite report.md and the plots from results.jsonl and run.json in --out, measuring nothing",
    )
    return parser


BENCH_EXTRA = ("matplotlib",)
"""The modules of the ``bench`` extra (pyproject.toml) a run needs: the plots."""


def missing_extras() -> list:
    """The modules of :data:`BENCH_EXTRA` that do not import."""
    import importlib.util

    return [m for m in BENCH_EXTRA if importlib.util.find_spec(m) is None]


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.report_only:
        out = Path(args.out or suite.REPO / "benchmarks" / "results" / suite.machine_name())
        meta = json.loads((out / "run.json").read_text())
        print(f"report in {report.write_report(report.load_rows(out / 'results.jsonl'), meta, out)}")
        return
    missing = missing_extras()
    if missing:
        raise SystemExit(f"python -m benchmarks needs the bench extra before it measures (missing: {', '.join(missing)}): "
                         "pip install -e '.[bench]'")
    if args.scenario == "accuracy":
        from . import accuracy

        out = Path(args.out or suite.REPO / "benchmarks" / "results" / f"{suite.machine_name()}-accuracy")
        edge = (args.sizes or [0 if args.quick else 4096])[0]
        path = accuracy.main(out, args.quick, edge, args.repeats or (1 if args.quick else 2),
                             "python -m benchmarks " + " ".join(argv if argv is not None else sys.argv[1:]),
                             suite.git_state(), cpu_model())
        print(f"report in {path}")
        return
    quick = suite.QUICK if args.quick else {}
    plan = suite.make_plan(
        args.scenario,
        args.runners or quick.get("runners"),
        args.sizes or quick.get("sizes"),
        args.three_d,
        args.repeats or quick.get("repeats", 3),
        args.out,
    )
    for line in plan.skipped:
        print(line)
    rows, meta = suite.run(plan)
    path = report.write_report(rows, meta, plan.out)
    print(f"{len(rows)} rows in {plan.out / 'results.jsonl'}; report in {path}")


if __name__ == "__main__":
    main()
