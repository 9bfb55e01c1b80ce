"""``gpuseg demo``: segment a bundled texture mosaic and write what a user would look at."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from . import Segmenter
from ._backend import resolve_backend
from .image_io import atomic_write
from .samples import overlay, texture_mosaic


def run_demo(out: Path, *, size: int = 1024, backend: str = "auto") -> dict:
    """Train on scribbles of a texture mosaic, predict every pixel, write labels, overlay and model.

    Parameters
    ----------
    out : Path
        Folder for ``labels.tif``, ``overlay.png``, ``scribbles.png`` and ``model.gpuseg``.
    size : int
        Side of the square sample image.
    backend : {"auto", "cpu", "gpu"}

    Returns
    -------
    summary : dict
        Backend, timings in seconds, accuracy against the ground truth, file paths.
    """
    import imageio.v3 as iio
    import tifffile

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    image, truth, scribbles = texture_mosaic((size, size))
    name = resolve_backend(backend)
    seg = Segmenter(backend=name, random_state=0)
    t0 = time.perf_counter()
    seg.fit(image, scribbles)
    t1 = time.perf_counter()
    labels = seg.predict(image)
    t2 = time.perf_counter()
    files = {"labels": out / "labels.tif", "overlay": out / "overlay.png",
             "scribbles": out / "scribbles.png", "model": out / "model.gpuseg"}
    atomic_write(files["labels"], lambda f: tifffile.imwrite(f, labels))
    atomic_write(files["overlay"], lambda f: iio.imwrite(f, overlay(image, labels), extension=".png"))
    atomic_write(files["scribbles"], lambda f: iio.imwrite(f, overlay(image, scribbles, alpha=0.9), extension=".png"))
    seg.save(files["model"])
    summary = {"backend": name, "shape": image.shape, "labelled_pixels": int(np.count_nonzero(scribbles)),
               "fit_s": t1 - t0, "predict_s": t2 - t1, "accuracy": float(np.mean(labels == truth)), "files": files}
    print(f"gpuseg demo on the {name.upper()} backend: texture mosaic {size}x{size}, "
          f"{summary['labelled_pixels']} scribbled pixels, 3 classes")
    print(f"  fit {summary['fit_s']:.2f} s, predict {summary['predict_s']:.2f} s, "
          f"accuracy against the ground truth {summary['accuracy']:.1%}")
    for key, path in files.items():
        print(f"  {key:9s} {path}")
    return summary
