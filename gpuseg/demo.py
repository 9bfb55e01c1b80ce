"""``gpuseg demo``: segment a bundled texture mosaic and write what a user would look at."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from . import Segmenter
from ._backend import resolve_backend
from .image_io import atomic_write, write_image
from .samples import overlay, texture_mosaic


def run_demo(out: Path, *, size: int = 1024, backend: str = "auto") -> dict:
    """Train on scribbles of a texture mosaic, predict every pixel, write labels, overlay and model.

    Parameters
    ----------
    out : Path
        Folder for ``image.tif``, ``scribbles.png`` (a label image ``gpuseg train`` reads),
        ``labels.tif``, ``overlay.png``, ``scribbles-overlay.png`` and ``model.gpuseg``.
    size : int
        Side of the square sample image.
    backend : {"auto", "cpu", "gpu"}

    Returns
    -------
    summary : dict
        Backend, timings in seconds, accuracy against the ground truth, file paths.
    """
    import imageio.v3 as iio

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
    files = {"image": out / "image.tif", "scribbles": out / "scribbles.png", "labels": out / "labels.tif",
             "overlay": out / "overlay.png", "scribbles overlay": out / "scribbles-overlay.png",
             "model": out / "model.gpuseg"}
    write_image(files["image"], image)
    write_image(files["scribbles"], scribbles.astype(np.uint8))  # a label image: gpuseg train image.tif scribbles.png
    write_image(files["labels"], labels)
    for key, values, alpha in (("overlay", labels, 0.45), ("scribbles overlay", scribbles, 0.9)):
        picture = overlay(image, values, alpha=alpha)
        atomic_write(files[key], lambda f: f.write(iio.imwrite("<bytes>", picture, extension=".png")))
    seg.save(files["model"])
    summary = {"backend": name, "shape": image.shape, "labelled_pixels": int(np.count_nonzero(scribbles)),
               "fit_s": t1 - t0, "predict_s": t2 - t1, "accuracy": float(np.mean(labels == truth)), "files": files}
    print(f"gpuseg demo on the {name.upper()} backend: texture mosaic {size}x{size}, "
          f"{summary['labelled_pixels']} scribbled pixels, 3 classes")
    print(f"  fit {summary['fit_s']:.2f} s, predict {summary['predict_s']:.2f} s, "
          f"accuracy against the ground truth {summary['accuracy']:.1%}")
    for key, path in files.items():
        print(f"  {key:17s} {path}")
    return summary
