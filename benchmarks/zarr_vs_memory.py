"""Zarr-to-Zarr prediction against in-memory prediction, one model, one process, alternated.

Run ``python -m benchmarks.zarr_vs_memory [--size 4096] [--chunks 1024] [--repeats 3] [--out DIR]``.
It makes the standard benchmark image (:func:`benchmarks.data.make_image`),
writes it as a Zarr v3 array with ``--chunks``-edge chunks, trains one
``Segmenter`` (scikit-image's features and the recipe's forest, as
``gpuseg-cpu``) on its scribbles, then alternates ``Segmenter.predict`` of
the image in memory and :func:`gpuseg.stream.predict_to_zarr` of the Zarr
array into a fresh output, ``--repeats`` pairs, the first path of a pair
alternating (in memory first in even pairs, Zarr first in odd ones: a drift
of the machine's speed, or a warmth one path leaves the other, does not
favour one path), and prints (and writes as ``zarr_vs_memory.md`` into
``--out``) the medians, their ratio and the median of the pairs' ratios (two
runs back to back share the machine's state of the moment). The Zarr
path's time includes reading the input, the pyramid and the markers; its
labels are checked equal to the in-memory ones.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from . import data
from .report import print_section
from .runners import USER_FOREST


def measure(size: int, chunks: int, repeats: int) -> dict:
    """Seconds of each path per repeat, in the order they ran."""
    import zarr

    import gpuseg
    from gpuseg.stream import predict_to_zarr

    image, _, scribbles = data.make_image((size, size))
    model = gpuseg.Segmenter(backend="cpu", preset="skimage", **USER_FOREST).fit(image, scribbles)
    memory, stream = [], []
    with tempfile.TemporaryDirectory(prefix="gpuseg-zarr-vs-memory-") as tmp:
        source = zarr.create_array(store=str(Path(tmp) / "image.zarr"), shape=image.shape,
                                   chunks=(chunks, chunks), dtype="float32")
        source[...] = image
        reference = model.predict(image, progress=False)  # warm-up, and the labels to compare with
        def in_memory():
            t0 = time.perf_counter()
            model.predict(image, progress=False)
            memory.append(time.perf_counter() - t0)

        def to_zarr():
            out = Path(tmp) / "labels.zarr"
            t0 = time.perf_counter()
            predict_to_zarr(model, source, out, progress=False)
            stream.append(time.perf_counter() - t0)
            labels = zarr.open_group(str(out), mode="r")["0"][...]
            if not np.array_equal(labels, reference):
                raise AssertionError("the Zarr output differs from in-memory prediction")
            shutil.rmtree(out)

        for r in range(repeats):
            for path in (in_memory, to_zarr) if r % 2 == 0 else (to_zarr, in_memory):
                path()
    return {"size": size, "chunks": chunks, "memory": memory, "zarr": stream}


def report(m: dict) -> str:
    """Markdown: the medians of both paths, the Zarr path's overhead per pixel, and the median of the pairs' ratios."""
    mem, zar = float(np.median(m["memory"])), float(np.median(m["zarr"]))
    pairs = np.asarray(m["zarr"]) / np.asarray(m["memory"])
    edge, chunks, n = m["size"], m["chunks"], len(m["memory"])
    return "\n".join([
        f"## Zarr streaming against in-memory prediction ({edge}x{edge}, {chunks}x{chunks} chunks)", "",
        f"`python -m benchmarks.zarr_vs_memory --size {edge} --chunks {chunks} --repeats {n}`: one model "
        "(scikit-image's features, the recipe's forest), the two paths alternated in one process, "
        "labels equal; in memory first in even pairs, Zarr first in odd ones.", "",
        "| path | median seconds | Mpx/s | each repeat |", "|---|---|---|---|",
        f"| in memory (`Segmenter.predict`) | {mem:.2f} | {edge * edge / mem / 1e6:.2f} | "
        + ", ".join(f"{s:.2f}" for s in m["memory"]) + " |",
        f"| Zarr to Zarr (`predict_to_zarr`) | {zar:.2f} | {edge * edge / zar / 1e6:.2f} | "
        + ", ".join(f"{s:.2f}" for s in m["zarr"]) + " |",
        "", f"Zarr per pixel: {zar / mem:.3f}x the in-memory time ({(zar / mem - 1):+.1%}); median of the "
        f"pairs' ratios {float(np.median(pairs)):.3f}x (each pair: " + ", ".join(f"{p:.3f}" for p in pairs) + ").", ""])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--chunks", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, help="folder to write zarr_vs_memory.md into")
    args = parser.parse_args(argv)
    print_section(report(measure(args.size, args.chunks, args.repeats)), args.out, "zarr_vs_memory.md")


if __name__ == "__main__":
    main()
