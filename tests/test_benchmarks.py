import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import report
from benchmarks.data import TEXTURES, make_image
from benchmarks.runners import REFERENCE, RUNNERS, STAGES, cpu_model, setup_notes
from benchmarks.scale_plan import scale_section

REPO = Path(__file__).resolve().parent.parent
FIELDS = {"runner", "shape", "stage", "repeat", "seconds", "peak_rss_GB", "peak_gpu_GB", "device", "n_features",
          "labelled_pixels", "agreement", "accuracy"}


@pytest.mark.parametrize("shape", [(256, 256), (300, 200), (48, 64, 64)])
def test_make_image_scribbles_inside_their_regions(shape):
    image, truth, scribbles = make_image(shape, seed=3)
    assert image.shape == truth.shape == scribbles.shape == shape
    assert image.dtype == np.float32 and np.isfinite(image).all()
    labelled = scribbles > 0
    np.testing.assert_array_equal(scribbles[labelled], truth[labelled])
    assert set(np.unique(scribbles[labelled])) == set(range(1, len(TEXTURES) + 1))
    assert 0.002 < labelled.mean() < 0.05


def test_make_image_is_seeded():
    a, b = make_image((128, 128), seed=1), make_image((128, 128), seed=1)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def _row(runner, stage, seconds, rss, agreement, repeat=0, shape=report.TARGET_SHAPE):
    return {"runner": runner, "shape": list(shape), "stage": stage, "repeat": repeat, "seconds": seconds,
            "peak_rss_GB": rss, "peak_gpu_GB": None, "device": "cpu", "n_features": 24, "labelled_pixels": 10,
            "agreement": agreement, "accuracy": 0.9}


@pytest.mark.parametrize(
    "ours, expected",
    [((8.0, 1.0, 0.995), True), ((10.0, 1.0, 0.995), False), ((8.0, 2.0, 0.995), False),
     ((8.0, 1.0, 0.98), False)],
)
def test_targets_are_computed_from_the_rows(ours, expected):
    seconds, rss, agreement = ours
    rows = [_row(REFERENCE, "end_to_end", s, 3.5, 1.0, repeat=i) for i, s in enumerate([40.0, 45.0, 90.0])]
    rows += [_row("gpuseg-cpu", "end_to_end", seconds, rss, agreement)]
    lines, met = report.targets(report.summarise(rows))
    assert met is expected
    assert any(f"{45.0 / seconds:.2f}x" in line for line in lines)  # the median, not the mean


@pytest.mark.parametrize("defaults_seconds, expected", [((1.0, 30.0), True), ((3.0, 30.0), False)])
def test_targets_include_the_defaults_slowest_size(defaults_seconds, expected):
    rows = [_row(REFERENCE, "end_to_end", 45.0, 3.5, 1.0), _row("gpuseg-cpu", "end_to_end", 8.0, 1.0, 0.995),
            _row(REFERENCE, "end_to_end", 2.0, 0.5, 1.0, shape=(256, 256))]
    rows += [_row("gpuseg-cpu-defaults", "end_to_end", s, 1.0, 0.9, shape=shape)
             for s, shape in zip(defaults_seconds, [(256, 256), report.TARGET_SHAPE])]
    lines, met = report.targets(report.summarise(rows))
    assert met is expected
    worst = min(2.0 / defaults_seconds[0], 45.0 / defaults_seconds[1])
    assert any(f"{worst:.2f}x at" in line for line in lines)


def test_targets_not_evaluated_without_the_target_size():
    rows = [_row(REFERENCE, "end_to_end", 1.0, 1.0, 1.0, shape=(512, 512))]
    assert report.targets(report.summarise(rows))[1] is None


def test_scale_section_from_the_rows():
    def row(workers, seconds):
        details = {"workers": workers, "tile_edge": 512, "halo": 66, "n_tiles": 16, "input_chunk_bytes": 9e5,
                   "output_chunk_bytes": 3e4}
        return {**_row(f"gpuseg-cluster-{workers}", "predict", seconds, 0.5, None, shape=(2048, 2048)),
                "details": details}

    meta = {"load_before": 1.0, "load_after": 1.5, "cpu": "a CPU (2 cores)"}
    lines = scale_section(report.summarise([row(1, 16.0), row(2, 10.0)]), meta)
    text = "\n".join(lines)
    assert "| 2048x2048 | 2 | 16 | 10 | 1.6 | 1.25 | 80% |" in text  # 1.6 tiles/s against 2 x 1.0
    assert "a plan on paper, not a measurement" in text
    assert "100 tasks/s" in text  # 100 workers / 1 s per tile
    assert "9 input chunks" in text and "8.1 MB" in text  # 3x3 chunks of 0.9 MB read per tile


def test_quick_run_writes_measured_rows_report_and_plots(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--out", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = report.load_rows(tmp_path / "results.jsonl")
    assert rows and all(FIELDS <= set(row) for row in rows)
    runners = {row["runner"] for row in rows}
    assert {REFERENCE, "gpuseg-cpu", "gpuseg-cpu-defaults"} <= runners
    for runner in runners:
        assert {row["stage"] for row in rows if row["runner"] == runner} == set(STAGES)
    for row in rows:
        assert row["seconds"] > 0 and row["peak_rss_GB"] > 0 and row["peak_gpu_GB"] is None
        assert row["n_features"] > 0 and row["labelled_pixels"] > 0 and row["device"]
        if row["stage"] in ("predict", "end_to_end"):
            assert 0 <= row["accuracy"] <= 1 and 0.5 <= row["agreement"] <= 1
    # Same features and forest parameters: mostly the same labels (the 99 % target is the report's, at 4096x4096).
    assert min(row["agreement"] for row in rows if row["runner"] == "gpuseg-cpu" and row["agreement"] is not None) >= 0.9
    text = (tmp_path / "report.md").read_text()
    for png in ("time_2d.png", "memory_2d.png"):
        assert f"]({png})" in text
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
    assert "| 512x512 | gpuseg-cpu |" in text


def test_gpu_check_dry_run_says_what_it_would_run_and_writes_nothing(tmp_path):
    out = tmp_path / "gpu"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--dry-run", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for step in ("pytest", "benchmark", "agreement", "memory", "profile"):
        assert f"would run: {step}:" in proc.stdout
    assert "-m gpu" in proc.stdout and "32768x32768" in proc.stdout and "stock-gpu" in proc.stdout
    assert not out.exists()


def test_gpu_check_refuses_without_a_gpu(tmp_path):
    from gpuseg._backend import gpu_unavailable_reason

    if gpu_unavailable_reason() is None:
        pytest.skip("a GPU is visible: the check would run for real (benchmarks.gpu_check --out DIR)")
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--out", str(tmp_path / "gpu")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "needs a GPU" in proc.stderr
    assert not (tmp_path / "gpu").exists()


def test_validation_set_is_offline_and_scribbled_inside_the_truth():
    from benchmarks import validation

    cases = validation.cases(small=True)
    assert len(cases) >= 5 and {c.image.ndim for c in cases} == {2, 3}
    for case in cases:
        assert case.image.dtype == np.float32 and case.truth.shape == case.image.shape
        for density in validation.DENSITIES:
            s = case.scribbles(density)
            assert np.array_equal(s[s > 0], case.truth[s > 0])
            assert set(np.unique(s[s > 0])) == set(np.unique(case.truth))


def test_accuracy_scores_and_report():
    from benchmarks import accuracy

    truth = np.array([1, 1, 2, 2])
    assert accuracy.scores(np.array([1, 2, 2, 2]), truth) == (0.75, (1 / 2 + 2 / 3) / 2)
    rows = [{"case": "c", "density": "sparse", "config": name, "accuracy": 0.9, "miou": m, "fit_s": 1, "predict_s": 1}
            for name, m in (("recipe", 0.5), ("compact", 0.6))]
    rows += [{"timing": name, "edge": 64, "repeat": 0, "seconds": s} for name, s in
             (("previous-defaults", 2.0), ("defaults", 3.0))]
    text = accuracy.report(rows, {"machine": "m", "command": "x", "commit": "abc", "started": "now"})
    assert "Δ +0.100" in text and "| defaults | 3.00 | 1.50x |" in text


def test_cpu_floor_counts_the_passes_and_writes_its_table(tmp_path):
    """benchmarks.floor: the passes counted for the skimage preset are its 6 sigmas x 2 axes; the table has
    a row per stage."""
    from benchmarks import floor

    m = floor.measure(64, repeats=1)
    skimage = next(f for f in m["features"] if f["preset"] == "skimage")
    assert skimage["passes"] == 12 and skimage["n_features"] == 24
    radii = [int(4 * s + 0.5) for s in (0.5, 1, 2, 4, 8, 16)]
    assert skimage["taps"] == 2 * sum(2 * r + 1 for r in radii)
    assert skimage["multiply_adds"] == {"float64": 2 * sum(r + 1 for r in radii), "float32": 0}
    compact = next(f for f in m["features"] if f["preset"] == "compact")
    assert compact["multiply_adds"]["float64"] == 0 and compact["multiply_adds"]["float32"] > 0
    assert m["walk"]["trained"]["steps_per_s"] > 0 and m["walk"]["floor"]["steps_per_s"] > 0
    text = floor.report(m)
    assert text.count("| features `") == 3 and "| forest walk |" in text and "forest_predict_labels" in text
    floor.main(["--size", "64", "--repeats", "1", "--out", str(tmp_path)])
    assert (tmp_path / "floor.md").read_text().startswith("## CPU floor (64x64")


def _apoc_reason():
    return RUNNERS["apoc-cpu"].unavailable()


def test_apoc_runner_is_registered_with_scikit_image_sigmas_and_a_setup_note():
    from benchmarks.runners import APOC_FEATURES, APOC_FILTERS, APOC_SIGMAS

    runner = RUNNERS["apoc-cpu"]
    assert not runner.gpu and set(runner.stages) == set(STAGES)
    assert np.allclose(APOC_SIGMAS, 2.0 ** np.arange(np.log2(0.5), np.log2(16) + 1))  # multiscale_basic_features'
    spec = APOC_FEATURES.split()
    assert len(spec) == len(set(spec)) == len(APOC_SIGMAS) * len(APOC_FILTERS)
    notes = setup_notes([REFERENCE, "apoc-cpu", "gpuseg-cpu"])
    assert len(notes) == 1 and notes[0].startswith(f"- {runner.setup_note}")
    if _apoc_reason() is None:
        assert "pyclesperanto-prototype" in notes[0] and "OpenCL:" in notes[0]
    assert "apoc-cpu" in runner.setup_note and "eigenvalue" in runner.setup_note


def test_apoc_features_follow_scikit_image_features_away_from_the_borders():
    """Each APOC feature against scikit-image's at the same sigma (its eigenvalues largest first)."""
    if _apoc_reason() is not None:
        pytest.skip(_apoc_reason())
    from skimage.feature import multiscale_basic_features

    from benchmarks.runners import APOC_FILTERS, APOC_SIGMAS, ApocCPU, _cle

    image = make_image((160, 160), seed=2)[0]
    ours = [np.asarray(_cle().pull(f)) for f in ApocCPU({})._stack(image)]
    ref = multiscale_basic_features(image)
    inner = (slice(32, -32),) * 2  # borders are handled differently
    skimage_order = (0, 1, 3, 2)  # intensity, edges, larger eigenvalue, smaller eigenvalue
    for k, sigma in enumerate(APOC_SIGMAS):
        for i, j in enumerate(skimage_order):
            a, b = ours[4 * k + i][inner].ravel(), ref[inner + (4 * k + j,)].ravel()
            hessian = "hessian" in APOC_FILTERS[i]
            # finite differences of a barely blurred image: the finest Hessians differ most
            assert abs(np.corrcoef(a, b)[0, 1]) > (0.75 if hessian and sigma < 2 else 0.99), (APOC_FILTERS[i], sigma)


def test_apoc_runner_is_skipped_with_its_reason_where_apoc_does_not_import(monkeypatch, tmp_path):
    from benchmarks import suite

    monkeypatch.setitem(sys.modules, "apoc", None)  # `import apoc` raises ImportError
    reason = _apoc_reason()
    assert reason.startswith("apoc does not import (ModuleNotFoundError")
    assert "gpuseg[apoc]" in reason and "pocl-opencl-icd" in reason
    plan = suite.make_plan("standard", ["apoc-cpu", REFERENCE], [64], False, 1, tmp_path)
    assert plan.runners == [REFERENCE] and plan.skipped == [f"apoc-cpu: not run ({reason})"]


def test_apoc_runner_is_skipped_without_an_opencl_cpu_device(monkeypatch):
    if _apoc_reason() is not None:
        pytest.skip(_apoc_reason())
    import pyopencl

    monkeypatch.setattr(pyopencl, "get_platforms", lambda: [])
    assert _apoc_reason().startswith("no OpenCL CPU device: pip install 'gpuseg[apoc]'")


@pytest.mark.filterwarnings("ignore:Non-empty compiler output")  # pyopencl's note that pocl said something
def test_apoc_runner_labels_a_two_class_image_and_writes_its_kernels_elsewhere(tmp_path, monkeypatch):
    """Fine against coarse noise, same mean and spread: only the texture features tell them apart."""
    if _apoc_reason() is not None:
        pytest.skip(_apoc_reason())
    from scipy import ndimage as ndi

    rng = np.random.default_rng(0)
    fine, coarse = rng.standard_normal((2, 64, 64)).astype(np.float32)
    coarse = ndi.gaussian_filter(coarse, 2)
    coarse *= fine.std() / coarse.std()
    truth = np.where(np.arange(64) < 32, 1, 2).astype(np.uint8)[None, :].repeat(64, axis=0)
    image = np.where(truth == 1, fine, coarse) + 0.5
    scribbles = np.zeros_like(truth)
    scribbles[8:60:6, 4:26] = 1
    scribbles[8:60:6, 38:60] = 2
    monkeypatch.chdir(tmp_path)  # APOC's default .cl file would land in the working directory
    runner = RUNNERS["apoc-cpu"]({"n_estimators": 5, "max_depth": 4, "max_samples": 0.05, "random_state": 0})
    _, labels = runner.run_stage("end_to_end", image, scribbles)
    assert labels.shape == image.shape and set(np.unique(labels)) <= {1, 2}
    assert np.mean(labels == truth) > 0.8  # chance is 0.5
    assert runner.features(image).shape == image.shape + (24,)
    for stage in ("features", "fit"):
        runner.run_stage(stage, image, scribbles)
        assert runner.details == {}
    _, again = runner.run_stage("predict", image, scribbles)
    np.testing.assert_array_equal(again, labels)  # APOC trains with random_state=0: the same forest
    assert runner.details["repeat_predict_s"] > 0  # a second prediction, with the compiled kernel
    assert not list(tmp_path.iterdir()) and len(list(Path(runner._folder.name).glob("*.cl"))) == 2


def test_zarr_vs_memory_times_both_paths_on_one_model(tmp_path):
    """benchmarks.zarr_vs_memory: both paths run on the same model and give the same labels (it raises
    otherwise); the table quotes the ratio of the medians and the median of the pairs' ratios."""
    from benchmarks import zarr_vs_memory

    m = zarr_vs_memory.measure(128, 64, repeats=2)
    assert len(m["memory"]) == len(m["zarr"]) == 2 and min(m["memory"] + m["zarr"]) > 0
    text = zarr_vs_memory.report(m)
    ratio = np.median(m["zarr"]) / np.median(m["memory"])
    pairs = [z / t for z, t in zip(m["zarr"], m["memory"])]
    assert f"{ratio:.3f}x the in-memory time" in text
    assert f"median of the pairs' ratios {np.median(pairs):.3f}x (each pair: {pairs[0]:.3f}, {pairs[1]:.3f})" in text


def test_a_runners_size_and_repeat_limits_skip_with_their_reason(tmp_path, monkeypatch):
    """apoc-cpu is not given images over its max_pixels (the report says why) and gets at most max_repeats."""
    from benchmarks import suite
    from benchmarks.runners import setup_notes

    runner = RUNNERS["apoc-cpu"]
    assert suite.runner_repeats(runner, 3) == runner.max_repeats == 1
    assert suite.runner_repeats(RUNNERS[REFERENCE], 3) == 3
    monkeypatch.setattr(runner, "max_pixels", 32 * 32)
    plan = suite.Plan("standard", ["apoc-cpu"], [(48, 48)], 2, tmp_path)
    rows, meta = suite.run(plan)
    assert rows == [] and meta["skipped"] == [f"apoc-cpu on 48x48: not run: larger than its 1024 pixels "
                                              f"({runner.limit_note})"]
    note = setup_notes(["apoc-cpu"])[0]
    assert "Limits: at most 1024 pixels, 1 repeat(s) per stage: pocl compiles" in note


def test_the_suite_touches_memory_for_its_largest_image_before_the_runners(tmp_path):
    """Each page of WARM_BYTES_PER_PIXEL bytes per pixel of the largest image is written once, and the report says so."""
    from benchmarks import suite
    from benchmarks._memory import WARM_BYTES_PER_PIXEL, touch_free_memory
    from benchmarks.report import write_report

    touched, seconds = touch_free_memory(3 * 2**20 + 5)
    assert touched == 3 * 2**20 + 5 and seconds > 0
    plan = suite.Plan("standard", [], [(32, 32), (48, 48)], 1, tmp_path)
    rows, meta = suite.run(plan)
    assert meta["memory_warmed_GB"] == WARM_BYTES_PER_PIXEL * 48 * 48 / 1e9
    text = write_report(rows, meta, tmp_path).read_text()
    assert f"wrote once to {meta['memory_warmed_GB']:.1f} GB of free memory" in text


def test_cpu_model_names_the_generation_a_virtual_machine_hides(tmp_path):
    info = tmp_path / "cpuinfo"
    block = "processor\t: {}\nmodel name\t: AMD EPYC\ncpu family\t: 25\nmodel\t\t: 17\nflags\t\t: fpu avx2 {}\n\n"
    info.write_text(block.format(0, "avx512f") + block.format(1, ""))
    assert cpu_model(str(info)).startswith("AMD EPYC, family 25 model 17, AVX-512 (")
    info.write_text(block.format(0, "").replace("cpu family\t: 25\n", ""))
    assert cpu_model(str(info)).startswith("AMD EPYC, AVX2 (")
    assert cpu_model(str(tmp_path / "missing")).endswith(" cores)")
