"""The ``accuracy`` scenario: accuracy and mean IoU on the validation set, and the defaults' end-to-end time.

For every case of :mod:`benchmarks.validation` and every scribble density, it
trains and predicts with scikit-image's recipe (``multiscale_basic_features``
+ ``fit_segmenter`` with :data:`benchmarks.runners.USER_FOREST`) and with
gpuseg's :class:`~gpuseg.Segmenter` for each feature preset, with and without
auto-context (the defaults are :data:`gpuseg.features.DEFAULT_PRESET`'s
features without auto-context); gpuseg gets the case's ``spacing`` as a
file's metadata would give it (the recipe cannot use it). Then, on the
standard benchmark's 4096x4096 image, it times end to end (features, fit,
predict) the defaults before this feature set (:data:`PREVIOUS_DEFAULTS`)
against today's, alternating them in one process. Writes ``results.jsonl``
and ``report.md``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from gpuseg.features import DEFAULT_PRESET

from . import data, validation
from .runners import USER_FOREST

PREVIOUS_DEFAULTS = {"preset": "skimage"}
"""The Segmenter arguments that give the defaults before presets existed (their forest is today's)."""


def configs() -> dict:
    """Name -> Segmenter arguments (``None``: scikit-image's recipe)."""
    from gpuseg.features import PRESETS

    out = {"recipe": None}
    for preset in PRESETS:
        out[preset] = {"preset": preset}
        out[f"{preset}+ac"] = {"preset": preset, "auto_context": True}
    return out


def scores(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Pixel accuracy and mean intersection over union over the classes of ``truth``."""
    ious = []
    for k in np.unique(truth):
        p, t = pred == k, truth == k
        ious.append(np.count_nonzero(p & t) / np.count_nonzero(p | t))
    return float(np.mean(pred == truth)), float(np.mean(ious))


def _recipe(image, scribbles):
    from skimage.feature import multiscale_basic_features
    from skimage.future import fit_segmenter, predict_segmenter
    from sklearn.ensemble import RandomForestClassifier

    t0 = time.perf_counter()
    features = multiscale_basic_features(image)
    clf = fit_segmenter(scribbles, features, RandomForestClassifier(n_jobs=-1, **USER_FOREST))
    t1 = time.perf_counter()
    return predict_segmenter(features, clf), t1 - t0, time.perf_counter() - t1


def _gpuseg(kwargs, image, scribbles, spacing):
    import gpuseg

    t0 = time.perf_counter()
    seg = gpuseg.Segmenter(backend="cpu", random_state=0, spacing=spacing, **kwargs).fit(image, scribbles)
    t1 = time.perf_counter()
    return seg.predict(image), t1 - t0, time.perf_counter() - t1


def run_accuracy(small: bool, only: list | None = None) -> list[dict]:
    """One row per case, density and configuration (``only``: those configurations)."""
    rows = []
    chosen = {k: v for k, v in configs().items() if only is None or k in only}
    for case in validation.cases(small):
        for density in validation.DENSITIES:
            scribbles = case.scribbles(density)
            for name, kwargs in chosen.items():
                if kwargs is None:
                    pred, fit_s, predict_s = _recipe(case.image, scribbles)
                else:
                    pred, fit_s, predict_s = _gpuseg(kwargs, case.image, scribbles, case.spacing)
                acc, miou = scores(pred, case.truth)
                rows.append({"case": case.name, "density": density, "config": name, "accuracy": acc, "miou": miou,
                             "fit_s": fit_s, "predict_s": predict_s, "shape": list(case.image.shape),
                             "labelled": int(np.count_nonzero(scribbles))})
                print(f"{case.name:13s} {density:6s} {name:12s} acc {acc:.4f} mIoU {miou:.4f} "
                      f"fit {fit_s:6.2f} s predict {predict_s:6.2f} s", flush=True)
    return rows


def run_timing(edge: int, repeats: int) -> list[dict]:
    """End-to-end seconds on the standard ``edge`` x ``edge`` image: previous defaults vs today's, alternated."""
    import gpuseg

    image, _, scribbles = data.make_image((edge, edge))
    rows = []
    for r in range(repeats):
        for name, kwargs in (("previous-defaults", PREVIOUS_DEFAULTS), ("defaults", {})):
            t0 = time.perf_counter()
            gpuseg.Segmenter(backend="cpu", random_state=0, **kwargs).fit_predict(image, scribbles)
            seconds = time.perf_counter() - t0
            rows.append({"timing": name, "edge": edge, "repeat": r, "seconds": seconds})
            print(f"{edge}x{edge} {name:18s} end to end {seconds:7.2f} s", flush=True)
    return rows


def report(rows: list[dict], meta: dict) -> str:
    """Markdown: per case and density, mIoU (accuracy) of every configuration and its gain over the recipe."""
    acc_rows = [r for r in rows if "case" in r]
    names = list(dict.fromkeys(r["config"] for r in acc_rows))
    lines = [f"# Accuracy on the validation set ({meta['machine']})", "",
             f"Command: `{meta['command']}`; commit {meta['commit']}; {meta['started']}.", "",
             "mIoU (pixel accuracy in brackets); Δ = mIoU minus the recipe's. Seconds: fit + predict. "
             f"recipe: scikit-image's features and fit_segmenter with {USER_FOREST}; the presets: gpuseg's "
             f"Segmenter with its default forest, `+ac` with auto-context; gpuseg's defaults: `{DEFAULT_PRESET}`.",
             "",
             "| case | density | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    by = {(r["case"], r["density"], r["config"]): r for r in acc_rows}
    for case, density in dict.fromkeys((r["case"], r["density"]) for r in acc_rows):
        base = by.get((case, density, "recipe"))
        cells = []
        for name in names:
            r = by[(case, density, name)]
            delta = "" if base is None or name == "recipe" else f", Δ {r['miou'] - base['miou']:+.3f}"
            cells.append(f"{r['miou']:.3f} ({r['accuracy']:.3f}){delta}; {r['fit_s'] + r['predict_s']:.1f} s")
        lines.append(f"| {case} | {density} | " + " | ".join(cells) + " |")
    timing = [r for r in rows if "timing" in r]
    if timing:
        med = {n: float(np.median([r["seconds"] for r in timing if r["timing"] == n]))
               for n in dict.fromkeys(r["timing"] for r in timing)}
        edge = timing[0]["edge"]
        lines += ["", f"## End to end at {edge}x{edge} (features + fit + predict, median of "
                  f"{len(timing) // len(med)}, alternated in one process)", "",
                  "| defaults | seconds | ratio to previous |", "|---|---|---|"]
        for n, s in med.items():
            lines.append(f"| {n} | {s:.2f} | {s / med['previous-defaults']:.2f}x |")
        lines += ["", "The machine is shared and noisy: quote the ratio, not the seconds."]
    return "\n".join(lines) + "\n"


def main(out: Path, small: bool, timing_edge: int | None, repeats: int, command: str, commit: str,
         machine: str, only: list | None = None) -> Path:
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    rows = run_accuracy(small, only)
    if timing_edge:
        rows += run_timing(timing_edge, repeats)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    meta = {"command": command, "commit": commit, "started": started, "machine": machine}
    (out / "report.md").write_text(report(rows, meta))
    return out / "report.md"
