"""Plan a benchmark run, generate its images, and run every runner on every image in a fresh process."""

from __future__ import annotations

import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil
from tqdm.auto import tqdm

from . import data
from ._memory import WARM_BYTES_PER_PIXEL, touch_free_memory
from .report import load_rows
from .runners import REFERENCE, RUNNERS, USER_FOREST, cpu_model

REPO = Path(__file__).resolve().parent.parent

SCENARIOS = {
    # scenario: (runners, 2D edges, 3D edges)
    "standard": (
        ("reference-cpu", "gpuseg-cpu", "gpuseg-cpu-defaults", "apoc-cpu", "gpuseg-gpu", "stock-gpu"),
        (512, 1024, 2048, 4096, 8192, 16384),
        (64, 128, 256, 512),
    ),
    "large": (("gpuseg-cpu-zarr",), (2048, 4096, 8192, 16384), (128, 256, 512)),
    "scale": (("gpuseg-cluster-1", "gpuseg-cluster-2"), (2048, 4096), ()),
    "app": (("app-cpu",), (512, 1024, 2048), ()),
}
QUICK = {"runners": ("reference-cpu", "gpuseg-cpu", "gpuseg-cpu-defaults"), "sizes": (256, 512), "repeats": 1}
ZARR_CHUNKS = {"large": 1024, "scale": 512}
"""Chunk edge of the Zarr input of the scenarios that read one."""
FEATURE_STACK_COPIES = 2.5
"""scikit-image's recipe holds about this many feature stacks at its peak (the list of
features, their stack, and the classifier's work), which decides whether it fits in memory."""


@dataclass
class Plan:
    """What one run measures.

    Attributes
    ----------
    scenario : str
        A key of :data:`SCENARIOS`.
    runners : list of str
        Runner names, the reference first where it runs.
    shapes : list of tuple of int
        Image shapes, smallest first.
    repeats : int
        Timed repeats of every stage (after one warm-up).
    out : Path
        Output folder.
    skipped : list of str
        Runners or runner x shape pairs that will not run, and why.
    """

    scenario: str
    runners: list
    shapes: list
    repeats: int
    out: Path
    skipped: list = field(default_factory=list)


def machine_name() -> str:
    """Default results folder name: ``cpu-<cores>core`` or ``<gpu>-<cores>core``."""
    from gpuseg._backend import gpu_name

    gpu = gpu_name()
    prefix = re.sub(r"[^a-z0-9]+", "-", gpu.lower()).strip("-") if gpu else "cpu"
    return f"{prefix}-{os.cpu_count()}core"


def make_plan(scenario, runners, sizes, three_d, repeats, out) -> Plan:
    """Resolve defaults and drop runners that cannot run here, saying why."""
    default_runners, sizes_2d, sizes_3d = SCENARIOS[scenario]
    sizes = sizes or (sizes_3d if three_d else sizes_2d)
    shapes = [(n,) * (3 if three_d else 2) for n in sorted(sizes)]
    if not shapes:
        raise SystemExit(f"Scenario {scenario!r} has no {'3D' if three_d else '2D'} images.")
    plan = Plan(scenario, [], shapes, repeats, Path(out) if out else REPO / "benchmarks" / "results" / machine_name())
    for name in runners or default_runners:
        reason = RUNNERS[name].unavailable()
        if reason is None:
            plan.runners.append(name)
        else:
            plan.skipped.append(f"{name}: not run ({reason})")
    plan.runners.sort(key=lambda name: name != REFERENCE)
    return plan


def runner_repeats(runner, repeats: int) -> int:
    """The repeats per stage ``runner`` gets: the plan's, or fewer where the runner sets ``max_repeats``."""
    return repeats if runner.max_repeats is None else min(repeats, runner.max_repeats)


def _reference_fits(shape) -> bool:
    """Whether scikit-image's recipe should fit in the free host memory for ``shape``."""
    n_features = 6 * (2 + len(shape))  # default sigmas 0.5..16: 6 scales x (intensity, edges, ndim eigenvalues)
    need = FEATURE_STACK_COPIES * 4 * n_features * int(np.prod(shape))
    return need < psutil.virtual_memory().available


def _run_worker(name: str, case: Path, repeats: int, rows: Path) -> str | None:
    """Run one worker; ``None`` on success, else why it failed."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-m", "benchmarks._worker", "--runner", name, "--case", str(case)]
    proc = subprocess.run(
        cmd + ["--repeats", str(repeats), "--rows", str(rows)], env=env, cwd=REPO, capture_output=True, text=True
    )
    if proc.returncode == 0:
        return None
    if proc.returncode < 0:
        return f"worker killed by signal {-proc.returncode} (out of memory?)"
    lines = proc.stderr.strip().splitlines()
    return lines[-1] if lines else f"worker exited with status {proc.returncode}"


def run(plan: Plan) -> tuple[list[dict], dict]:
    """Run the plan; write ``results.jsonl`` row by row as workers finish, then ``run.json``.

    Returns
    -------
    rows : list of dict
        Every row written.
    meta : dict
        What the report states about the run: machine, versions, parameters.
    """
    plan.out.mkdir(parents=True, exist_ok=True)
    results = plan.out / "results.jsonl"
    results.write_text("")
    rows = []
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    load_before = os.getloadavg()[0]
    warmed, warm_seconds = touch_free_memory(WARM_BYTES_PER_PIXEL * max(math.prod(s) for s in plan.shapes))
    tasks = [(shape, name) for shape in plan.shapes for name in plan.runners]
    with tempfile.TemporaryDirectory(prefix="gpuseg-bench-") as tmp, tqdm(total=len(tasks), unit="run") as bar:
        for shape in plan.shapes:
            label = "x".join(map(str, shape))
            bar.set_description(f"{label}: generating image")
            case = Path(tmp) / label
            data.write_case(case, shape, zarr_chunks=ZARR_CHUNKS.get(plan.scenario))
            for name in plan.runners:
                bar.set_description(f"{label}: {name}")
                runner = RUNNERS[name]
                if name == REFERENCE and not _reference_fits(shape):
                    why = "not run: its feature stack would not fit in the free host memory"
                elif runner.max_pixels is not None and math.prod(shape) > runner.max_pixels:
                    why = f"not run: larger than its {runner.max_pixels} pixels ({runner.limit_note})"
                else:
                    worker_rows = case / f"{name}.jsonl"
                    why = _run_worker(name, case, runner_repeats(runner, plan.repeats), worker_rows)
                    if why is None:
                        new = load_rows(worker_rows)
                        rows += new
                        with open(results, "a") as f:
                            f.writelines(json.dumps(row) + "\n" for row in new)
                if why is not None:
                    plan.skipped.append(f"{name} on {label}: {why}")
                    tqdm.write(f"{name} on {label}: {why}")
                bar.update()
            shutil.rmtree(case)
    meta = {**_meta(plan), "started": started, "load_before": load_before, "load_after": os.getloadavg()[0],
            "memory_warmed_GB": warmed / 1e9, "memory_warm_seconds": warm_seconds}
    (plan.out / "run.json").write_text(json.dumps(meta, indent=1) + "\n")
    return rows, meta


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("gpuseg", "numpy", "scipy", "scikit-image", "scikit-learn", "numba", "opencv-python-headless",
                    "zarr", "cupy-cuda13x", "cucim-cu13", "cuml-cu13"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found


def git_state() -> str:
    """The commit measured, and whether gpuseg/ had uncommitted changes."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + (" with uncommitted changes to gpuseg/" if git("status", "--porcelain", "gpuseg") else "")


def _meta(plan: Plan) -> dict:
    import gpuseg
    from gpuseg._backend import gpu_name, gpu_unavailable_reason

    return {
        "command": "python -m benchmarks " + " ".join(sys.argv[1:]),
        "scenario": plan.scenario,
        "cpu": cpu_model(),
        "memory_GB": psutil.virtual_memory().total / 1e9,
        "gpu": gpu_name() or f"none ({gpu_unavailable_reason()})",
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": _versions(),
        "commit": git_state(),
        "repeats": plan.repeats,
        "forest": USER_FOREST,
        "gpuseg_forest_defaults": gpuseg.Segmenter().forest_params,
        "labelled_fraction": data.LABELLED_FRACTION,
        "textures": data.TEXTURES,
        "skipped": plan.skipped,
    }
