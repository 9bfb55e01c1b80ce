"""What each benchmarked runner does in each stage.

A runner times four stages on one image with its scribbles:

``features``
    the feature stack of the whole image;
``fit``
    training on the scribbles (gpuseg computes features of the scribbled
    tiles inside ``fit``; the reference and stock runners reuse the stack of
    the ``features`` stage, as their users do);
``predict``
    labels of every pixel, back on the host;
``end_to_end``
    what a user runs, from a host image to host labels, on a fresh model.

The runners of the ``large``, ``scale`` and ``app`` scenarios time one stage
each: ``predict`` of a Zarr-backed image into a Zarr output (in one process,
or on a Dask ``LocalCluster`` of 1 or 2 worker processes), and the app's
``stroke_to_overlay``.

Every runner shares :class:`Runner`'s timing; subclasses say only what a
stage does. GPU runners synchronise the device before the clock stops.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

STAGES = ("features", "fit", "predict", "end_to_end")
REFERENCE = "reference-cpu"
STOCK = "stock-gpu"

USER_FOREST = {"n_estimators": 50, "max_depth": 10, "max_samples": 0.05, "random_state": 0}
"""Random-forest parameters as a user would set them, given to every runner but ``gpuseg-cpu-defaults``."""


class Runner:
    """One way of segmenting an image; subclasses implement the stages.

    Parameters
    ----------
    forest_params : dict
        Random-forest parameters, scikit-learn names.

    Attributes
    ----------
    name : str
        Name in ``results.jsonl`` and the report.
    stages : tuple of str
        Stages timed, in the order they run (``end_to_end`` first, before
        any stage leaves a feature stack or model in memory).
    gpu : bool
        Whether the runner needs a GPU (and its memory is measured).
    max_pixels : int or None
        Largest image (pixels) the runner is given; larger ones are skipped with :attr:`limit_note`.
    max_repeats : int or None
        Most repeats per stage the runner can time fairly in one process; fewer are run, with
        :attr:`limit_note`.
    """

    name = ""
    stages = ("end_to_end", "features", "fit", "predict")
    gpu = False
    max_pixels: int | None = None
    max_repeats: int | None = None
    limit_note = ""
    """Why :attr:`max_pixels` or :attr:`max_repeats` is set (the report's skip lines quote it)."""
    details: dict = {}
    """What a runner reports of its last stage beyond the time, recorded in each row as ``details``."""
    setup_note = ""
    """How the runner differs from the report's common setup (its features, forest or stages), or ``""``."""

    @classmethod
    def note(cls) -> str:
        """:attr:`setup_note`, with what only this machine can say (versions of packages outside gpuseg's)."""
        return cls.setup_note

    def __init__(self, forest_params: dict):
        self.forest_params = dict(forest_params)

    @classmethod
    def unavailable(cls) -> str | None:
        """Why this runner cannot run here, or ``None`` when it can."""
        return None

    def device(self) -> str:
        """The CPU model (GPU runners: the GPU name)."""
        return cpu_model()

    def load_image(self, directory: Path):
        """The image of a case written by :func:`benchmarks.data.write_case`."""
        return np.load(directory / "image.npy")

    def setup(self, image, scribbles):
        """Untimed preparation before the stages (nothing by default)."""

    def reset(self):
        """Drop any feature stack or model kept between stages."""

    def sync(self):
        """Wait for queued device work (nothing to wait for on the CPU)."""

    def run_stage(self, stage: str, image: np.ndarray, scribbles: np.ndarray) -> tuple[float, np.ndarray | None]:
        """Run ``stage`` once and time it.

        Returns
        -------
        seconds : float
            Wall-clock time, the device synchronised before the clock stops.
        labels : ndarray of shape ``image.shape`` or None
            Host labels for ``predict`` and ``end_to_end``, else ``None``.
        """
        method = getattr(self, stage)
        args = (image, scribbles) if stage in ("fit", "end_to_end") else (image,)
        start = time.perf_counter()
        out = method(*args)
        self.sync()
        seconds = time.perf_counter() - start
        return seconds, (out if stage in ("predict", "end_to_end") else None)

    def features(self, image):
        """Feature stack of ``image``: ``image.shape + (n_features,)``."""
        raise NotImplementedError

    def fit(self, image, scribbles):
        """Train a model on ``scribbles`` and keep it for :meth:`predict`."""
        raise NotImplementedError

    def predict(self, image) -> np.ndarray:
        """Host labels of every pixel with the model of the last :meth:`fit`."""
        raise NotImplementedError

    def end_to_end(self, image, scribbles) -> np.ndarray:
        """Host labels of every pixel from a fresh model trained on ``scribbles``."""
        raise NotImplementedError


class ReferenceCPU(Runner):
    """scikit-image's recipe: ``multiscale_basic_features`` + ``fit_segmenter`` / ``predict_segmenter``."""

    name = REFERENCE

    def reset(self):
        self._features = self._clf = None

    def _classifier(self):
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(n_jobs=-1, **self.forest_params)

    def features(self, image):
        from skimage.feature import multiscale_basic_features

        self._features = None  # free the previous stack before computing the next
        self._features = multiscale_basic_features(image)
        return self._features

    def fit(self, image, scribbles):
        from skimage.future import fit_segmenter

        self._clf = fit_segmenter(scribbles, self._features, self._classifier())

    def predict(self, image):
        from skimage.future import predict_segmenter

        return predict_segmenter(self._features, self._clf)

    def end_to_end(self, image, scribbles):
        from skimage.feature import multiscale_basic_features
        from skimage.future import fit_segmenter, predict_segmenter

        features = multiscale_basic_features(image)
        return predict_segmenter(features, fit_segmenter(scribbles, features, self._classifier()))


class GpusegCPU(Runner):
    """gpuseg's public API on the CPU backend."""

    name = "gpuseg-cpu"
    backend = "cpu"
    feature_args = {"preset": "skimage"}
    """scikit-image's features, so that the labels can equal the reference's."""

    def reset(self):
        self._model = None

    def _segmenter(self):
        import gpuseg

        return gpuseg.Segmenter(backend=self.backend, **self.feature_args, **self.forest_params)

    def features(self, image):
        import gpuseg

        return gpuseg.multiscale_features(image, backend=self.backend, **self._segmenter().feature_params.to_dict())

    def fit(self, image, scribbles):
        self._model = self._segmenter().fit(image, scribbles)

    def predict(self, image):
        return self._model.predict(image, progress=False)

    def end_to_end(self, image, scribbles):
        return self._segmenter().fit_predict(image, scribbles, progress=False)


class GpusegCPUDefaults(GpusegCPU):
    """gpuseg on the CPU with its own default forest parameters."""

    name = "gpuseg-cpu-defaults"
    feature_args = {}

    def __init__(self, forest_params: dict):
        super().__init__({})


class _GPUMixin:
    """Device name, synchronisation and the skip reason shared by GPU runners."""

    gpu = True

    @classmethod
    def unavailable(cls):
        from gpuseg._backend import gpu_unavailable_reason

        return gpu_unavailable_reason()

    def device(self):
        from gpuseg._backend import gpu_name

        return gpu_name()

    def sync(self):
        import cupy

        cupy.cuda.Device().synchronize()


class GpusegGPU(_GPUMixin, GpusegCPU):
    """gpuseg's public API on the GPU backend: host image in, host labels out.

    The ``features`` stage leaves the stack on the device, as a GPU user would.
    """

    name = "gpuseg-gpu"
    backend = "gpu"


class _StackRunner(Runner):
    """A runner written as three steps: ``_stack(image)``, ``_fit(stack, scribbles)``, ``_predict(stack, model)``.

    ``features`` keeps the stack and ``fit`` the model for the next stage, as
    the library's users would; ``end_to_end`` chains the three steps afresh.
    """

    def reset(self):
        self._features = self._clf = None

    def features(self, image):
        self._features = None
        self._features = self._stack(image)
        return self._features

    def fit(self, image, scribbles):
        self._clf = self._fit(self._features, scribbles)

    def predict(self, image):
        return self._predict(self._features, self._clf)

    def end_to_end(self, image, scribbles):
        features = self._stack(image)
        return self._predict(features, self._fit(features, scribbles))


class StockGPU(_GPUMixin, _StackRunner):
    """cuCIM's ``multiscale_basic_features`` on CuPy + cuML's random forest, written the obvious way.

    cuML wants class indices ``0..K-1``; the scribbles' classes ``1..K`` are
    shifted by one and back.
    """

    name = STOCK

    @classmethod
    def unavailable(cls):
        reason = super().unavailable()
        if reason is not None:
            return reason
        from gpuseg._backend import gpu_trainer

        trainer, detail, _ = gpu_trainer()
        return None if trainer == "cuml" else detail

    def _classifier(self):
        from gpuseg._backend import import_cuml  # the allocator gpuseg-gpu runs with: a fair comparison

        import_cuml()
        from cuml.ensemble import RandomForestClassifier

        return RandomForestClassifier(**self.forest_params)

    def _stack(self, image):
        import cupy as cp
        from cucim.skimage.feature import multiscale_basic_features

        return multiscale_basic_features(cp.asarray(image))

    def _fit(self, features, scribbles):
        import cupy as cp

        scribbles = cp.asarray(scribbles)
        mask = scribbles > 0
        clf = self._classifier()
        clf.fit(features[mask], (scribbles[mask] - 1).astype(cp.int32))
        return clf

    @staticmethod
    def _predict(features, clf):
        import cupy as cp

        flat = features.reshape(-1, features.shape[-1])
        return cp.asnumpy(clf.predict(flat).reshape(features.shape[:-1])).astype(np.uint8) + 1


APOC_SIGMAS = (0.5, 1, 2, 4, 8, 16)
"""scikit-image's default sigmas (0.5 to 16, one per octave), given to APOC's filters."""
APOC_FILTERS = ("gaussian_blur", "sobel_of_gaussian_blur", "small_hessian_eigenvalue_of_gaussian_blur",
                "large_hessian_eigenvalue_of_gaussian_blur")
"""APOC's nearest to scikit-image's intensity, edges and texture (Hessian eigenvalues) at each sigma."""
APOC_FEATURES = " ".join(f"{name}={sigma:g}" for sigma in APOC_SIGMAS for name in APOC_FILTERS)
APOC_HINT = "pip install 'gpuseg[apoc]', and an OpenCL driver for the CPU (Debian: apt-get install pocl-opencl-icd)"


class _OpenCLImages(list):
    """APOC's feature stack, a list of OpenCL images, with the ``shape`` of a stack on the last axis."""

    @property
    def shape(self):
        return tuple(self[0].shape) + (len(self),)


class ApocCPU(_StackRunner):
    """APOC's ``PixelClassifier`` (OpenCL through pyclesperanto-prototype) on an OpenCL CPU device, e.g. pocl.

    Features: the feature string :data:`APOC_FEATURES`, APOC's filters closest
    to scikit-image's defaults at its sigmas 0.5 to 16: ``gaussian_blur``
    (intensity), ``sobel_of_gaussian_blur`` (edges) and
    ``small_``/``large_hessian_eigenvalue_of_gaussian_blur`` (texture: the
    Hessian eigenvalues of the blurred image by finite differences). In 2D
    these are scikit-image's 24 features, computed differently (clEsperanto's
    kernels and borders): away from the borders each follows its
    scikit-image counterpart closely (correlation above 0.99, the Hessian's
    at sigmas 0.5 and 1 less; tested in ``tests/test_benchmarks.py``). In 3D
    APOC has no middle eigenvalue, so 24 features against scikit-image's 30.

    Forest: ``n_estimators`` becomes ``num_ensembles`` and ``max_depth`` stays;
    APOC's ``train`` builds scikit-learn's forest itself (``random_state=0``,
    one thread, each tree on a bootstrap sample as large as all the scribbled
    pixels), so ``max_samples`` and ``n_jobs`` cannot be passed. ``fit`` is
    APOC's ``train``: the forest, written out as OpenCL source. pocl compiles
    that source on the first prediction, for the work-group size it picks from
    the image's size (minutes for 50 trees of depth 10), and caches the result
    by the kernel's code: ``end_to_end``, which runs first, pays the compile;
    ``fit`` then trains the same forest again (the same scribbles, and APOC's
    ``random_state=0``), so ``predict`` runs the kernel compiled already, and
    ``fit`` + ``predict`` fall short of ``end_to_end`` by the compile.
    :attr:`details` ``repeat_predict_s`` is a second, untimed prediction (close
    to ``predict`` where nothing was compiled). Each worker process gets a
    fresh pocl cache (``POCL_CACHE_DIR``), so no earlier run's compile is
    reused. The ``.cl`` files go
    to a temporary folder. ``features`` leaves the stack on the OpenCL device,
    as APOC's users hold it; ``predict`` and ``end_to_end`` pull the labels to
    the host.
    """

    name = "apoc-cpu"
    max_pixels = 512 * 512
    max_repeats = 1
    limit_note = ("pocl compiles the forest's OpenCL source at the first prediction of each image size: 29 s at "
                  "256x256 and 267 s at 512x512 on the 2-core Xeon, not finished after 23 minutes at 1024x1024 "
                  "(benchmarks/results/cpu-2core-apoc); and a second end_to_end in the same process would reuse "
                  "the compiled kernel, so one repeat")
    setup_note = (f"apoc-cpu: APOC's PixelClassifier on pocl's OpenCL CPU device, features "
                  f"`{' '.join(APOC_FILTERS)}` at sigmas {', '.join(f'{s:g}' for s in APOC_SIGMAS)} (APOC's nearest to "
                  "scikit-image's intensity, edges and Hessian eigenvalues; 3D lacks the middle eigenvalue); forest "
                  "num_ensembles=n_estimators and max_depth, but APOC fixes the rest (random_state=0, one thread, "
                  "bootstrap samples of all the scribbled pixels: no max_samples). Its `fit` is APOC's `train`; pocl "
                  "compiles the forest's OpenCL source at its first prediction, in `end_to_end` (a fresh pocl cache "
                  "per worker); `fit` retrains the same forest, so `predict` runs the compiled kernel and `fit` + "
                  "`predict` fall short of `end_to_end` by the compile.")

    @classmethod
    def note(cls):
        from importlib.metadata import PackageNotFoundError, version

        try:
            versions = [f"{p} {version(p)}" for p in ("apoc", "pyclesperanto-prototype", "pyopencl")]
        except PackageNotFoundError:
            return cls.setup_note
        if cls.unavailable() is None:
            device = _cle().get_device().device
            versions.append(f"OpenCL: {device.platform.name} {device.platform.version}, {device.name}")
        return f"{cls.setup_note} Software: {'; '.join(versions)}."

    def __init__(self, forest_params: dict):
        import tempfile

        super().__init__(forest_params)
        self._folder = tempfile.TemporaryDirectory(prefix="gpuseg-apoc-")  # APOC's .cl files, never the repo
        self._n_fits = 0
        if "pyopencl" not in sys.modules:  # before pocl starts (a worker process): a cache of this process's own
            os.environ["POCL_CACHE_DIR"] = _process_folder("gpuseg-pocl-cache-")

    @classmethod
    def unavailable(cls):
        try:
            import apoc  # noqa: F401  (imports pyclesperanto_prototype and pyopencl)
        except Exception as error:  # noqa: BLE001  (missing, or an OpenCL loader or NumPy mismatch at import time)
            return f"apoc does not import ({type(error).__name__}: {error}): {APOC_HINT}"
        import pyopencl

        try:
            devices = [d for p in pyopencl.get_platforms() for d in p.get_devices(pyopencl.device_type.CPU)
                       if d.available]
        except pyopencl.Error as error:
            return f"no OpenCL platform ({error}): {APOC_HINT}"
        return None if devices else f"no OpenCL CPU device: {APOC_HINT}"

    def device(self):
        return f"{cpu_model()}, OpenCL {_cle().get_device().name}"

    def sync(self):
        _cle().get_device().queue.finish()

    def run_stage(self, stage, image, scribbles):
        seconds, labels = super().run_stage(stage, image, scribbles)
        self.details = {}
        if stage == "predict":  # the kernel is compiled now: time a second prediction, outside the stage
            start = time.perf_counter()
            self.predict(image)
            self.sync()
            self.details = {"repeat_predict_s": time.perf_counter() - start}
        return seconds, labels

    def _stack(self, image):
        import apoc

        _cle()
        return _OpenCLImages(apoc.generate_feature_stack(image, APOC_FEATURES))

    def _fit(self, features, scribbles):
        """A classifier trained on ``scribbles``, its forest written as OpenCL source."""
        import apoc

        self._n_fits += 1
        path = Path(self._folder.name) / f"fit-{self._n_fits}.cl"
        clf = apoc.PixelClassifier(opencl_filename=str(path), max_depth=self.forest_params["max_depth"],
                                   num_ensembles=self.forest_params["n_estimators"])
        clf.train(features, scribbles)
        return clf

    def _predict(self, features, clf):
        return np.asarray(_cle().pull(clf.predict(features=features)))


@functools.cache
def _process_folder(prefix: str) -> str:
    """A temporary folder that lives as long as this process."""
    import atexit
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, folder, True)
    return folder


@functools.cache
def _cle():
    """pyclesperanto-prototype, its device an OpenCL CPU (a GPU's OpenCL driver would otherwise be preferred)."""
    import pyclesperanto_prototype as cle

    cle.select_device(dev_type="cpu")
    return cle


class GpusegCPUZarr(GpusegCPU):
    """Tiled prediction of a Zarr-backed image into a Zarr output, as ``gpuseg predict`` runs it (scenario ``large``).

    The model is trained, untimed, on a corner of the image; only
    :func:`gpuseg.stream.predict_to_zarr` of the whole image, tile by tile, is
    timed. The labels are read back for scoring afterwards, untimed.
    """

    name = "gpuseg-cpu-zarr"
    stages = ("predict",)
    TRAIN_EDGE = 1024
    TILE_EDGE = 1024

    def load_image(self, directory):
        import zarr

        self._out = directory / "labels.zarr"
        return zarr.open_array(store=str(directory / "image.zarr"), mode="r")

    def setup(self, image, scribbles):
        corner = tuple(slice(0, self.TRAIN_EDGE) for _ in range(image.ndim))
        self.fit(np.asarray(image[corner]), np.asarray(scribbles[corner]))

    def run_stage(self, stage, image, scribbles):
        import shutil

        import zarr

        shutil.rmtree(self._out, ignore_errors=True)  # a fresh output: nothing to resume
        seconds, out = super().run_stage(stage, image, scribbles)
        return seconds, zarr.open_array(str(Path(out) / "0"), mode="r")[:]  # level 0 of the OME-Zarr output

    def predict(self, image):
        from gpuseg.stream import predict_to_zarr

        return predict_to_zarr(self._model, image, self._out, tile_shape=(self.TILE_EDGE,) * image.ndim,
                               progress=False)


class ClusterCPU(GpusegCPUZarr):
    """:func:`gpuseg.stream.predict_to_zarr` on a ``LocalCluster`` of worker processes (scenario ``scale``).

    Each worker is one process of one thread, and its Numba kernels run on one
    thread (``NUMBA_NUM_THREADS=1``), so ``n_workers`` is the number of cores
    used and tiles per second can be compared across worker counts. The
    workers' kernels are compiled before the clock starts. After each run,
    :attr:`details` holds the tile count and the stored bytes per chunk.
    """

    name = "gpuseg-cluster-1"
    stages = ("predict",)
    TILE_EDGE = 512
    n_workers = 1

    @classmethod
    def unavailable(cls):
        return None if importlib.util.find_spec("distributed") else "distributed is not installed (pip install '.[bench]')"

    def load_image(self, directory):
        self._input = directory / "image.zarr"
        return super().load_image(directory)

    def setup(self, image, scribbles):
        super().setup(image, scribbles)
        if getattr(self, "_client", None) is None:
            from distributed import Client, LocalCluster

            self._cluster = LocalCluster(n_workers=self.n_workers, threads_per_worker=1, processes=True,
                                         dashboard_address=None, env={"NUMBA_NUM_THREADS": "1"})
            self._client = Client(self._cluster)
        self._client.run(self._model.predict, np.asarray(image[(slice(0, 64),) * image.ndim]), progress=False)

    def predict(self, image):
        from gpuseg.stream import predict_to_zarr

        return predict_to_zarr(self._model, image, self._out, tile_shape=(self.TILE_EDGE,) * image.ndim,
                               progress=False, client=self._client)

    def run_stage(self, stage, image, scribbles):
        seconds, labels = super().run_stage(stage, image, scribbles)
        tiles = [-(-n // self.TILE_EDGE) for n in image.shape]
        self.details = {
            "workers": self.n_workers,
            "tile_edge": self.TILE_EDGE,
            "halo": self._model.feature_params.halo(),
            "n_tiles": int(np.prod(tiles)),
            "input_chunk_bytes": _mean_chunk_bytes(self._input),
            "output_chunk_bytes": _mean_chunk_bytes(self._out / "0"),
        }
        return seconds, labels


class ClusterCPU2(ClusterCPU):
    name = "gpuseg-cluster-2"
    n_workers = 2


def _mean_chunk_bytes(array_dir: Path) -> float:
    """Mean stored (compressed) size of the chunks of a Zarr v3 array directory."""
    sizes = [f.stat().st_size for f in (array_dir / "c").rglob("*") if f.is_file()]
    return float(np.mean(sizes)) if sizes else 0.0


class AppCPU(GpusegCPU):
    """The app's stroke-to-overlay latency on 2D images (scenario ``app``), measured by the app itself.

    ``gpuseg.app.latency.measure_stroke_to_overlay`` computes the feature
    stack and two strokes untimed, then returns the median seconds from a
    new stroke to its overlay, each timed by ``Session.refresh``, which the
    app's callback runs.
    """

    name = "app-cpu"
    stages = ("stroke_to_overlay",)

    @classmethod
    def unavailable(cls):
        return None if importlib.util.find_spec("dash") else "the app extra is not installed (pip install 'gpuseg[app]')"

    def run_stage(self, stage, image, scribbles):
        from gpuseg.app.latency import measure_stroke_to_overlay

        return float(measure_stroke_to_overlay(image, backend=self.backend)), None


RUNNERS = {
    cls.name: cls
    for cls in (ReferenceCPU, GpusegCPU, GpusegCPUDefaults, GpusegGPU, StockGPU, ApocCPU, GpusegCPUZarr,
                ClusterCPU, ClusterCPU2, AppCPU)
}


def setup_notes(names) -> list[str]:
    """The report's setup lines of the runners ``names`` that differ from the common setup."""
    lines = []
    for runner in (RUNNERS[n] for n in names if n in RUNNERS):
        limits = [f"at most {runner.max_pixels} pixels"] * (runner.max_pixels is not None)
        limits += [f"{runner.max_repeats} repeat(s) per stage"] * (runner.max_repeats is not None)
        text = " ".join(filter(None, [runner.note(), limits and f"Limits: {', '.join(limits)}: {runner.limit_note}."]))
        if text:
            lines.append(f"- {text}")
    return lines


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's model name, x86 family and model, widest vector extension and logical core count, e.g.
    ``"AMD EPYC, family 25 model 17, AVX-512 (2 cores)"``: a virtual machine's model name often hides
    the generation, which changes the speed-ups."""
    fields = {}
    try:
        with open(cpuinfo) as f:
            for line in f:
                if not line.strip() and fields:
                    break  # the first processor's block
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    parts = [fields.get("model name") or platform.processor() or platform.machine()]
    if "cpu family" in fields and "model" in fields:
        parts.append(f"family {fields['cpu family']} model {fields['model']}")
    flags = set(fields.get("flags", "").split())
    parts += ["AVX-512"] if "avx512f" in flags else ["AVX2"] if "avx2" in flags else []
    return f"{', '.join(parts)} ({os.cpu_count()} cores)"
