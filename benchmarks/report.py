"""``report.md`` and its plots, computed from the rows of ``results.jsonl``.

Times are medians over repeats; peak memory is the largest over repeats;
agreement with the reference is the smallest over repeats. Every ratio and
every target verdict is computed here from those rows.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from .runners import REFERENCE, STAGES, STOCK, setup_notes
from .scale_plan import scale_section

TARGET_SHAPE = (4096, 4096)
TARGET_RUNNER = "gpuseg-cpu"
TARGET_SPEEDUP = 5.0
DEFAULTS_RUNNER = "gpuseg-cpu-defaults"
TARGET_MEMORY_RATIO = 1 / 3
TARGET_AGREEMENT = 0.99


def load_rows(path: Path) -> list[dict]:
    """The rows of a ``results.jsonl``."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def summarise(rows: list[dict]) -> dict:
    """Aggregate repeats: ``{(runner, shape, stage): {...}}`` with shape a tuple.

    Each value holds ``seconds`` (median), ``peak_rss_GB`` and ``peak_gpu_GB``
    (largest), ``agreement`` (smallest), ``accuracy`` (median), ``repeats``,
    and the first row's ``device``, ``n_features``, ``labelled_pixels`` and ``details`` (or ``None``).
    """
    groups = defaultdict(list)
    for row in rows:
        groups[(row["runner"], tuple(row["shape"]), row["stage"])].append(row)
    summary = {}
    for key, group in groups.items():

        def values(name):
            return [r[name] for r in group if r.get(name) is not None]

        gpu, agreement, accuracy = values("peak_gpu_GB"), values("agreement"), values("accuracy")
        summary[key] = {
            "seconds": float(np.median(values("seconds"))),
            "peak_rss_GB": max(values("peak_rss_GB")),
            "peak_gpu_GB": max(gpu) if gpu else None,
            "agreement": min(agreement) if agreement else None,
            "accuracy": float(np.median(accuracy)) if accuracy else None,
            "repeats": len(group),
            **{k: group[0][k] for k in ("device", "n_features", "labelled_pixels")},
            "details": group[0].get("details"),
        }
    return summary


def _runners(summary) -> list[str]:
    return sorted({k[0] for k in summary}, key=lambda n: (n != REFERENCE, n))


def _shapes(summary, ndim) -> list[tuple]:
    return sorted({k[1] for k in summary if len(k[1]) == ndim}, key=lambda s: int(np.prod(s)))


def _stages(summary) -> list[str]:
    present = {k[2] for k in summary}
    return [s for s in STAGES if s in present] + sorted(present - set(STAGES))


def _main_stage(summary) -> str:
    stages = _stages(summary)
    return "end_to_end" if "end_to_end" in stages else stages[0]


def _label(shape) -> str:
    return "x".join(map(str, shape))


def _fmt(x, spec=".3g", suffix="") -> str:
    return "–" if x is None else f"{x:{spec}}{suffix}"


def _ratio(num, den) -> float | None:
    return None if num is None or den is None or den == 0 else num / den


def targets(summary) -> tuple[list[str], bool | None]:
    """The CPU target table at 4096x4096, from the measured rows.

    Returns
    -------
    lines : list of str
        Markdown lines.
    met : bool or None
        Whether every target is met; ``None`` when the rows cannot tell.
    """
    ref = summary.get((REFERENCE, TARGET_SHAPE, "end_to_end"))
    ours = summary.get((TARGET_RUNNER, TARGET_SHAPE, "end_to_end"))
    title = f"{TARGET_RUNNER} against {REFERENCE}, end to end on {_label(TARGET_SHAPE)} float32"
    if ref is None or ours is None:
        return [f"Not evaluated: this run has no end-to-end rows of both runners at {_label(TARGET_SHAPE)}."], None
    speedup = ref["seconds"] / ours["seconds"]
    memory = ours["peak_rss_GB"] / ref["peak_rss_GB"]
    agreement = ours["agreement"]
    checks = [
        ("speed-up", f">= {TARGET_SPEEDUP:g}x", f"{speedup:.2f}x", speedup >= TARGET_SPEEDUP),
        (
            "peak host memory, ratio",
            f"<= {TARGET_MEMORY_RATIO:.3f}",
            f"{memory:.3f} ({ours['peak_rss_GB']:.2f} / {ref['peak_rss_GB']:.2f} GB)",
            memory <= TARGET_MEMORY_RATIO,
        ),
        (
            "pixels with the reference's label",
            f">= {TARGET_AGREEMENT:.0%}",
            _fmt(agreement, ".2%"),
            agreement is not None and agreement >= TARGET_AGREEMENT,
        ),
    ]
    slowest = _slowest_defaults(summary)
    if slowest is not None:
        ratio, shape = slowest
        checks.append((f"{DEFAULTS_RUNNER} end to end, slowest size against {REFERENCE}", ">= 1.00x",
                       f"{ratio:.2f}x at {_label(shape)}", ratio >= 1.0))
    lines = [title + ":", "", "| target | required | measured | met |", "|---|---|---|---|"]
    lines += [f"| {name} | {req} | {got} | {'yes' if ok else '**no**'} |" for name, req, got, ok in checks]
    n_met = sum(ok for *_, ok in checks)
    met = n_met == len(checks)
    lines += ["", f"**CPU targets: {'all met' if met else f'{n_met} of {len(checks)} met'}.**"]
    return lines, met


def _slowest_defaults(summary) -> tuple | None:
    """``(speed-up, shape)`` of gpuseg's defaults against the reference, end to end, at the size where it is
    least; ``None`` without both runners' rows at any size."""
    ratios = [(ref["seconds"] / ours["seconds"], shape) for (runner, shape, stage), ref in summary.items()
              if runner == REFERENCE and stage == "end_to_end"
              and (ours := summary.get((DEFAULTS_RUNNER, shape, "end_to_end"))) is not None]
    return min(ratios) if ratios else None


def _main_table(summary, ndim) -> list[str]:
    stage = _main_stage(summary)
    has_gpu = any(v["peak_gpu_GB"] is not None for v in summary.values())
    has_ref = REFERENCE in _runners(summary)
    head = ["image", "runner", "seconds", "Mvox/s" if ndim == 3 else "Mpx/s", "peak RSS GB"]
    head += [f"speed-up vs {REFERENCE}", f"RSS vs {REFERENCE}"] if has_ref else []
    head += ["peak GPU GB", f"speed-up vs {STOCK}"] if has_gpu else []
    head += ["agreement", "accuracy"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for shape in _shapes(summary, ndim):
        ref = summary.get((REFERENCE, shape, stage))
        stock = summary.get((STOCK, shape, stage))
        for runner in _runners(summary):
            s = summary.get((runner, shape, stage))
            if s is None:
                continue
            cells = [
                _label(shape),
                runner,
                _fmt(s["seconds"]),
                _fmt(np.prod(shape) / s["seconds"] / 1e6),
                _fmt(s["peak_rss_GB"], ".2f"),
            ]
            if has_ref:
                cells += [
                    _fmt(_ratio(ref and ref["seconds"], s["seconds"]), ".2f", "x"),
                    _fmt(_ratio(s["peak_rss_GB"], ref and ref["peak_rss_GB"]), ".2f"),
                ]
            if has_gpu:
                on_gpu = s["peak_gpu_GB"] is not None
                cells += [
                    _fmt(s["peak_gpu_GB"], ".2f"),
                    _fmt(_ratio(stock and stock["seconds"], s["seconds"]) if on_gpu else None, ".2f", "x"),
                ]
            cells += [_fmt(s["agreement"], ".2%"), _fmt(s["accuracy"], ".1%")]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def _stage_table(summary, ndim) -> list[str]:
    stages = _stages(summary)
    head = ["image", "runner"] + [f"{s} s" for s in stages] + [f"{s} vs ref" for s in stages]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for shape in _shapes(summary, ndim):
        for runner in _runners(summary):
            got = [summary.get((runner, shape, st)) for st in stages]
            if not any(got):
                continue
            refs = [summary.get((REFERENCE, shape, st)) for st in stages]
            times = [_fmt(g and g["seconds"]) for g in got]
            ratios = [_fmt(_ratio(r and r["seconds"], g and g["seconds"]), ".2f", "x") for r, g in zip(refs, got)]
            lines.append("| " + " | ".join([_label(shape), runner] + times + ratios) + " |")
    return lines


def plot(summary, ndim, out: Path) -> list[str]:
    """Write the log-log plots for ``ndim``-D images; return their file names.

    ``time_<ndim>d.png``: seconds against pixels, one panel per stage.
    ``memory_<ndim>d.png``: peak host memory, throughput and (with GPU rows)
    peak GPU memory of the main stage against pixels. One line per runner.
    None where matplotlib is not installed (the ``bench`` extra); the report says so.
    """
    try:
        import matplotlib
    except ImportError:
        return []

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shapes = _shapes(summary, ndim)
    stage = _main_stage(summary)
    unit, rate = ("voxels", "Mvox/s") if ndim == 3 else ("pixels", "Mpx/s")

    def series(runner, st, value):
        points = [(np.prod(s), value(s, summary[(runner, s, st)])) for s in shapes if (runner, s, st) in summary]
        return [x for x, y in points if y is not None], [y for x, y in points if y is not None]

    panels = {
        "time": [(st, f"{st}: seconds", lambda s, v: v["seconds"]) for st in _stages(summary)],
        "memory": [
            (stage, f"{stage}: peak host RSS (GB)", lambda s, v: v["peak_rss_GB"]),
            (stage, f"{stage}: throughput ({rate})", lambda s, v: np.prod(s) / v["seconds"] / 1e6),
        ],
    }
    if any(v["peak_gpu_GB"] for v in summary.values()):
        panels["memory"].append((stage, f"{stage}: peak GPU memory (GB)", lambda s, v: v["peak_gpu_GB"]))
    names = []
    for kind, specs in panels.items():
        fig, axes = plt.subplots(1, len(specs), figsize=(4.5 * len(specs), 4), squeeze=False)
        for ax, (st, title, value) in zip(axes[0], specs):
            for i, runner in enumerate(_runners(summary)):
                x, y = series(runner, st, value)
                if x:
                    ax.plot(x, y, marker="o", color=f"C{i}", label=runner)
            ax.set(xscale="log", yscale="log", xlabel=unit, title=title)
            ax.grid(True, which="both", alpha=0.3)
        axes[0][0].legend(fontsize="small")
        fig.tight_layout()
        name = f"{kind}_{ndim}d.png"
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        names.append(name)
    return names


def _setup(meta) -> list[str]:
    forest = ", ".join(f"{k}={v}" for k, v in meta["forest"].items())
    defaults = ", ".join(f"{k}={v}" for k, v in meta["gpuseg_forest_defaults"].items())
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    return [
        f"- Command: `{meta['command']}` (scenario `{meta['scenario']}`), started {meta['started']}.",
        f"- Machine: {meta['cpu']}, {meta['memory_GB']:.0f} GB RAM; GPU: {meta['gpu']}. Load average (1 min) "
        f"{meta['load_before']:.2f} before the run and {meta['load_after']:.2f} after it (other work on the "
        "machine slows every runner).",
        f"- Software: gpuseg at commit {meta['commit']}; Python {meta['python']}, {versions}; {meta['platform']}.",
        f"- Images: float32 mosaics of scikit-image's {', '.join(meta['textures'])} textures in smooth random "
        f"regions with noise, one class per texture; strokes scribbled inside the regions label about "
        f"{meta['labelled_fraction']:.0%} of the pixels. `accuracy` compares labels with the regions' ground truth, "
        f"`agreement` with {REFERENCE}'s labels.",
        "- Features: scikit-image's defaults for every runner (intensity, edges, texture; sigmas 0.5 to 16, one "
        "per octave).",
        f"- Random forest, every runner but gpuseg-cpu-defaults: {forest} (scikit-learn with n_jobs=-1). "
        f"gpuseg-cpu-defaults uses gpuseg's defaults: {defaults}.",
        "- Stages: `features` = the feature stack of the whole image; `fit` = training on the scribbles (the "
        "reference and stock runners reuse the stack of `features`; gpuseg's `fit` computes features of the "
        "scribbled tiles itself and is reported as is); `predict` = labels of every pixel back on the host "
        "(gpuseg's forest kernel stops walking a pixel's trees once its label is sure: the same labels); "
        "`end_to_end` = features + fit + predict from a host image to host labels (gpuseg: `Segmenter.fit_predict` "
        "on a fresh Segmenter, which computes the scribbled tiles' features once where they fit in a quarter of "
        "the tile memory budget, and the last scribbled tile's in any case, and never holds the whole feature "
        "stack of a larger image).",
        f"- Timing: each runner and image in a fresh process; one warm-up on a small image of the same kind, then "
        f"{meta['repeats']} repeats per stage, median quoted; GPU work synchronised before the clock stops. "
        "Peak RSS: the worker process's high-water mark during the stage (largest over repeats), including "
        "the interpreter, libraries and the input image. Peak GPU: device memory in use above the stage's start."
        + _warm_note(meta),
    ]


def _warm_note(meta) -> str:
    """What the run did about a virtual machine's costly first touch of its memory (older runs: nothing)."""
    if "memory_warmed_GB" not in meta:
        return ""
    return (f" Before the first runner the suite wrote once to {meta['memory_warmed_GB']:.1f} GB of free memory "
            f"({meta['memory_warm_seconds']:.1f} s), so that no runner pays a fresh virtual machine's first touch of "
            "its pages.")


def print_section(text: str, out: Path | None, name: str) -> None:
    """Print a measured Markdown section and, with ``out``, write it there as ``name`` (which the
    report of that folder may quote)."""
    print(text)
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)


def write_report(rows: list[dict], meta: dict, out: Path) -> Path:
    """Write ``report.md`` and its plots into ``out``; return the report's path."""
    out = Path(out)
    summary = summarise(rows)
    lines = ["# gpuseg benchmarks", "", "## Setup", ""] + _setup(meta) + setup_notes(_runners(summary))
    if meta["scenario"] == "standard":
        target_lines, _ = targets(summary)
        lines += ["", f"## CPU targets ({_label(TARGET_SHAPE)})", ""] + target_lines
    for ndim in (2, 3):
        if not _shapes(summary, ndim):
            continue
        stage = _main_stage(summary)
        lines += ["", f"## {ndim}D: {stage}", ""] + _main_table(summary, ndim)
        if len(_stages(summary)) > 1 and REFERENCE in _runners(summary):
            lines += ["", f"## {ndim}D: stages (median seconds, and speed-up against {REFERENCE})", ""]
            lines += _stage_table(summary, ndim)
        plots = plot(summary, ndim, out)
        lines += [""] + ([f"![{name}]({name})" for name in plots] or
                         ["(No plots: matplotlib is not installed; `pip install '.[bench]'`.)"])
    if meta["scenario"] == "scale":
        lines += ["", "## Scaling over worker processes", ""] + scale_section(summary, meta)
    floor = out / "floor.md"
    if meta["scenario"] == "standard" and floor.exists():  # written by python -m benchmarks.floor --out
        lines += ["", floor.read_text().rstrip()]
    if meta["skipped"]:
        lines += ["", "## Not run", ""] + [f"- {s}" for s in meta["skipped"]]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
