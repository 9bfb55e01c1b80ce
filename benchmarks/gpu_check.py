"""The one prepared GPU check: ``python -m benchmarks.gpu_check --out DIR``.

GPU time is short, so everything the GPU issue needs is measured by one command, in
order, each step capped in time and none stopping the others:

1. ``pytest -m gpu`` (log: ``pytest-gpu.log``);
2. the suite's 8192x8192 run of ``gpuseg-gpu`` against ``stock-gpu``, end to end and by
   stage (``results.jsonl``, ``run.json``, ``report.md`` and its two plots, where
   matplotlib is installed);
3. labels of a model saved on the GPU and loaded on the CPU, against the GPU's;
4. peak device memory of ``Segmenter.predict`` on host images of 16384², 32768² and 512³;
5. a per-stage profile of fit and predict at 8192² (``profile.txt``).

Steps 3-4 go to ``checks.json``: at most 8 files in DIR. With the light GPU stage (cuCIM,
no cuML) gpuseg trains with scikit-learn and the stock runner and the cuML tests are
skipped with that reason. ``--dry-run`` says what would run and exits 0 (no GPU needed).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
import pstats
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from . import data, report
from ._memory import PeakMemory
from .runners import USER_FOREST

REPO = Path(__file__).resolve().parent.parent
BENCH_SIZE = 8192
MEMORY_SHAPES = ((16384, 16384), (32768, 32768), (512, 512, 512))
AGREEMENT_SIZE = 2048
STEP_SECONDS = {"pytest": 200, "benchmark": 200}
DEADLINE_SECONDS = 450
"""The check stops starting new steps after this long, leaving room under an 8-minute call."""


def plan(out: Path) -> list[tuple[str, str]]:
    """The steps, as ``(name, what it does)``."""
    shapes = ", ".join("x".join(map(str, s)) for s in MEMORY_SHAPES)
    return [
        ("pytest", f"python -m pytest -m gpu tests -> {out / 'pytest-gpu.log'} (at most {STEP_SECONDS['pytest']} s)"),
        ("benchmark", f"python -m benchmarks --sizes {BENCH_SIZE} --runners gpuseg-gpu,stock-gpu --repeats 2 "
                      f"--out {out} (at most {STEP_SECONDS['benchmark']} s)"),
        ("agreement", f"{AGREEMENT_SIZE}² labels: trained on the GPU, saved, loaded on the CPU -> checks.json"),
        ("memory", f"peak device memory of Segmenter.predict, host image in, host labels out: {shapes} -> checks.json"),
        ("profile", f"cProfile of fit + predict at {BENCH_SIZE}² -> {out / 'profile.txt'}"),
    ]


def _pytest(out: Path) -> dict:
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rs", "-p", "no:cacheprovider", "tests"]
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=STEP_SECONDS["pytest"])
        log, code = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        log, code = f"{exc.stdout or ''}{exc.stderr or ''}\nTIMEOUT after {exc.timeout} s", "timeout"
    (out / "pytest-gpu.log").write_text(log)
    return {"exit_code": code, "summary": (log.strip().splitlines() or [""])[-1]}


def _benchmark(out: Path) -> dict:
    cmd = [sys.executable, "-m", "benchmarks", "--sizes", str(BENCH_SIZE), "--runners", "gpuseg-gpu,stock-gpu",
           "--repeats", "2", "--out", str(out)]
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=STEP_SECONDS["benchmark"])
    except subprocess.TimeoutExpired as exc:
        return {"error": f"timeout after {exc.timeout} s"}
    rows = report.load_rows(out / "results.jsonl") if (out / "results.jsonl").exists() else []
    ends = {name: float(np.median([r["seconds"] for r in rows if r["runner"] == name and r["stage"] == "end_to_end"]))
            for name in {r["runner"] for r in rows}}
    ratio = ends["stock-gpu"] / ends["gpuseg-gpu"] if len(ends) == 2 else None
    return {"exit_code": proc.returncode, "end_to_end_seconds": ends, "speedup_vs_stock": ratio,
            "output_tail": proc.stdout[-1500:] + proc.stderr[-1500:]}


def _model(shape, backend="gpu"):
    import gpuseg

    train_shape = tuple(min(s, 1024 if len(shape) == 2 else 128) for s in shape)
    image, _, scribbles = data.make_image(train_shape, seed=1)
    return gpuseg.Segmenter(backend=backend, preset="skimage", **USER_FOREST).fit(image, scribbles)


def _agreement(out: Path) -> dict:
    import tempfile

    import gpuseg

    image, truth, _ = data.make_image((AGREEMENT_SIZE, AGREEMENT_SIZE), seed=2)
    seg = _model(image.shape)
    on_gpu = seg.predict(image)
    with tempfile.TemporaryDirectory() as tmp:
        on_cpu = gpuseg.load(seg.save(Path(tmp) / "m.gpuseg"), backend="cpu").predict(image)
    return {"labels_equal_gpu_vs_cpu": float(np.mean(on_gpu == on_cpu)), "accuracy_gpu": float(np.mean(on_gpu == truth))}


def _memory(out: Path) -> dict:
    import cupy

    results = {}
    for shape in MEMORY_SHAPES:
        seg = _model(shape)
        base, _, _ = data.make_image((2048, 2048) if len(shape) == 2 else (128, 128, 128), seed=3)
        image = np.tile(base, [s // b for s, b in zip(shape, base.shape)])
        cupy.cuda.Device().synchronize()
        t0 = time.perf_counter()
        with PeakMemory(gpu=True) as mem:
            labels = seg.predict(image, progress=False)
            cupy.cuda.Device().synchronize()
        seconds = time.perf_counter() - t0
        tile = tuple(int(s) for s in base.shape)
        # The image repeats its base tile, so away from the halo (4 sigma_max + 3) so do its labels.
        m = 4 * 16 + 16
        same = bool(np.array_equal(labels[tuple(slice(m, t - m) for t in tile)],
                                   labels[tuple(slice(t + m, 2 * t - m) for t in tile)]))
        results["x".join(map(str, shape))] = {"peak_gpu_GB": mem.gpu_gb, "seconds": seconds,
                                              "Mpx_per_s": image.size / seconds / 1e6, "periodic_labels": same}
        del image, labels
    return results


def _profile(out: Path) -> dict:
    import cupy

    import gpuseg

    image, _, scribbles = data.make_image((BENCH_SIZE, BENCH_SIZE))
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logging.getLogger("gpuseg").addHandler(handler)
    logging.getLogger("gpuseg").setLevel(logging.INFO)
    profiler = cProfile.Profile()
    times = {}
    try:
        seg = gpuseg.Segmenter(backend="gpu", preset="skimage", **USER_FOREST)
        profiler.enable()
        for stage, run in (("fit", lambda: seg.fit(image, scribbles)), ("predict", lambda: seg.predict(image))):
            t0 = time.perf_counter()
            run()
            cupy.cuda.Device().synchronize()
            times[stage] = time.perf_counter() - t0
        profiler.disable()
    finally:
        logging.getLogger("gpuseg").removeHandler(handler)
    table = io.StringIO()
    pstats.Stats(profiler, stream=table).sort_stats("cumulative").print_stats(40)
    (out / "profile.txt").write_text(f"stage seconds: {json.dumps(times)}\n\ngpuseg log:\n{stream.getvalue()}\n"
                                     f"{table.getvalue()}")
    return times


STEPS = {"pytest": _pytest, "benchmark": _benchmark, "agreement": _agreement, "memory": _memory, "profile": _profile}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "_gpu_check")
    parser.add_argument("--dry-run", action="store_true", help="say what would run, run nothing, exit 0")
    parser.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated subset of {','.join(STEPS)}")
    args = parser.parse_args(argv)
    chosen = [s for s in args.steps.split(",") if s]
    unknown = sorted(set(chosen) - set(STEPS))
    if unknown:
        parser.error(f"unknown step(s) {unknown}; choose from {sorted(STEPS)}")
    from gpuseg._backend import describe_gpu_backend, gpu_unavailable_reason

    reason = gpu_unavailable_reason()
    print(f"GPU: {describe_gpu_backend() if reason is None else 'none (' + reason + ')'}")
    for name, what in plan(args.out):
        if name in chosen:
            print(f"{'would run' if args.dry_run else 'runs'}: {name}: {what}")
    if args.dry_run:
        return 0
    if reason is not None:
        print(f"gpu_check needs a GPU: {reason}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    checks = {}
    for name in chosen:
        elapsed = time.perf_counter() - started
        if elapsed > DEADLINE_SECONDS:
            checks[name] = {"skipped": f"deadline: {elapsed:.0f} s spent"}
            continue
        t0 = time.perf_counter()
        try:
            checks[name] = STEPS[name](args.out)
        except Exception:
            checks[name] = {"error": traceback.format_exc(limit=6)}
        checks[name] = {**checks[name], "step_seconds": time.perf_counter() - t0}
        print(f"{name}: {json.dumps(checks[name], default=str)[:600]}", flush=True)
        (args.out / "checks.json").write_text(json.dumps(checks, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
