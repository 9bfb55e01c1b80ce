"""The ``gpuseg`` command line: argument parsing only; the work is in the library."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path, PurePosixPath

from .features import PRESETS


def _feature_and_forest_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("features")
    g.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="a feature set by name (not with the sigma and --no-* options; without any of them: compact)")
    g.add_argument("--spacing", type=float, nargs="+", default=None, metavar="SIZE",
                   help="physical pixel size per spatial axis, e.g. 4 1 1 for a z-step of 4 pixels "
                   "(default: from the first image's OME/ImageJ metadata, else isotropic)")
    g.add_argument("--auto-context", action="store_true",
                   help="a second forest on the features and the first's smoothed class probabilities")
    g.add_argument("--sigma-min", type=float, default=None, help="scikit-image's features from this sigma (0.5)")
    g.add_argument("--sigma-max", type=float, default=None, help="scikit-image's features up to this sigma (16)")
    g.add_argument("--num-sigma", type=int, default=None)
    g.add_argument("--no-intensity", action="store_true", help="leave out smoothed intensity")
    g.add_argument("--no-edges", action="store_true", help="leave out Sobel edges")
    g.add_argument("--no-texture", action="store_true", help="leave out Hessian eigenvalues")
    g.add_argument("--channel-axis", type=int, default=None, help="axis holding channels (e.g. -1 for RGB)")
    f = p.add_argument_group("random forest (scikit-learn names)")
    f.add_argument("--n-estimators", type=int, default=None)
    f.add_argument("--max-depth", type=int, default=None)
    f.add_argument("--max-samples", type=_max_samples, default=None,
                   help="fraction of the scribbled pixels each tree draws, or 'auto' (at most 20,000; the default)")
    f.add_argument("--min-samples-leaf", type=int, default=None)
    f.add_argument("--random-state", type=int, default=None)


def _max_samples(text: str):
    return text if text == "auto" else float(text)


def _path_or_url(text: str):
    return text if "://" in text else Path(text)


def _backend_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=("auto", "cpu", "gpu"), default="auto")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpuseg", description="Trainable pixel classification on GPUs and CPUs.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="segment a bundled sample and write labels, overlay and model")
    demo.add_argument("--out", type=Path, default=Path("gpuseg-demo"))
    demo.add_argument("--size", type=int, default=1024, help="side of the sample image in pixels")
    _backend_option(demo)

    train = sub.add_parser("train", help="train a model on IMAGE LABELS pairs")
    train.add_argument("pairs", nargs="+", metavar="IMAGE LABELS",
                       help="image and scribble files, alternating (several pairs train one model)")
    train.add_argument("-o", "--output", type=Path, required=True, help="model file (.gpuseg)")
    _feature_and_forest_options(train)
    _backend_option(train)

    predict = sub.add_parser("predict", help="segment images with a model")
    predict.add_argument("model", type=Path)
    predict.add_argument("inputs", nargs="+", type=_path_or_url,
                         help="image files or folders of them (Zarr images also as URLs: s3://, gs://, file://)")
    predict.add_argument("-o", "--output", type=_path_or_url, required=True,
                         help="output file (.tif, .npy, .png, .zarr) for one input, or a folder (a URL for Zarr)")
    predict.add_argument("--proba", action="store_true", help="write class probabilities instead of labels")
    predict.add_argument("--tile", type=int, nargs="+", default=None, metavar="N", help="tile shape (one or per axis)")
    predict.add_argument("--overwrite", action="store_true", help="replace an output made with another model")
    predict.add_argument("--scheduler", default=None, metavar="ADDRESS",
                         help="predict on a Dask cluster into Zarr outputs the workers write: a scheduler address "
                              "(tcp://host:8786), local:N (N worker processes here) or local-cuda (one per GPU)")
    _backend_option(predict)

    sub.add_parser("info", help="versions, backends, GPU")

    app = sub.add_parser("app", help="open the interactive app in the browser")
    app.add_argument("image", nargs="?", type=Path, default=None)
    app.add_argument("--host", default="127.0.0.1")
    app.add_argument("--port", type=int, default=8050)
    app.add_argument("--model", type=Path, default=None)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    logging.getLogger("gpuseg").setLevel(logging.INFO)
    try:
        return COMMANDS[args.command](args) or 0
    except (ValueError, TypeError, OSError, RuntimeError, MemoryError) as exc:
        print(f"gpuseg {args.command}: error: {_message(exc)}", file=sys.stderr)
        return 2


def _message(exc: BaseException) -> str:
    """One line naming the problem and, where the exception does not, the fix."""
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename}; check its permissions, or choose another path."
    if isinstance(exc, MemoryError):
        return (f"out of memory ({exc or 'an allocation failed'}); predict into a .zarr output, which is written "
                "tile by tile, or use a smaller --tile.")
    if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError) and exc.filename:
        return f"{exc.strerror or exc}: {exc.filename}"
    return " ".join(str(exc).split()) or type(exc).__name__


def _cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(args.out, size=args.size, backend=args.backend)


def _cmd_train(args) -> int:
    import numpy as np

    from . import Segmenter
    from .image_io import open_image
    from .metadata import read_spacing

    if len(args.pairs) % 2:
        raise ValueError("train takes IMAGE LABELS pairs: an even number of files.")
    forest = {k: getattr(args, k) for k in ("n_estimators", "max_depth", "max_samples", "min_samples_leaf",
                                            "random_state") if getattr(args, k) is not None}
    images = [open_image(Path(p)) for p in args.pairs[0::2]]
    labels = [open_image(Path(p)) for p in args.pairs[1::2]]
    spacing = args.spacing
    if spacing is None:
        spacing = read_spacing(args.pairs[0], len(labels[0].shape))
        if spacing is not None:
            print(f"spacing {spacing} from {args.pairs[0]}'s metadata")
    features = {k: v for k, v in (("intensity", not args.no_intensity), ("edges", not args.no_edges),
                                  ("texture", not args.no_texture)) if not v}
    features.update({k: getattr(args, k) for k in ("sigma_min", "sigma_max", "num_sigma") if getattr(args, k)})
    seg = Segmenter(backend=args.backend, preset=args.preset, spacing=spacing, channel_axis=args.channel_axis,
                    auto_context=args.auto_context, **features, **forest)
    seg.fit(images, labels)
    path = seg.save(args.output)
    n = sum(int(np.count_nonzero(np.asarray(lab))) for lab in labels)
    print(f"trained on {len(images)} image(s), {n} labelled pixels, classes {[int(c) for c in seg.classes_]}; model: {path}")


def _expand_inputs(inputs) -> list:
    from .image_io import INPUT_SUFFIXES

    files = []
    for p in inputs:
        if isinstance(p, str):  # a URL: one image
            files.append(p)
        elif p.is_dir() and p.suffix != ".zarr":
            files += sorted(q for q in p.iterdir() if q.suffix.lower() in INPUT_SUFFIXES)
        elif p.exists():
            files.append(p)
        else:
            raise FileNotFoundError(f"No such input: {p}")
    if not files:
        raise ValueError(f"No images found in {', '.join(map(str, inputs))}.")
    return files


def _targets(files, output, proba: bool, zarr_only: bool) -> tuple:
    """``(input, output)`` pairs, and whether the output is one file: ``output`` itself for one input and a
    file name, else ``output/<stem>_<kind>.<suffix>`` in the folder ``output`` (not created here)."""
    from .image_io import INPUT_SUFFIXES

    name = PurePosixPath(output) if isinstance(output, str) else output
    if len(files) == 1 and name.suffix.lower() in INPUT_SUFFIXES:
        if zarr_only and name.suffix != ".zarr":
            raise ValueError(f"With --scheduler or a URL output, outputs are Zarr, not {name.suffix}: "
                             "name the output *.zarr, or a folder.")
        return [(files[0], output)], True
    suffix = ".zarr" if zarr_only or any(PurePosixPath(str(f)).suffix == ".zarr" for f in files) else ".tif"
    kind = "proba" if proba else "labels"
    names = [f"{PurePosixPath(str(f).rstrip('/')).stem}_{kind}{suffix}" for f in files]
    folder = [f"{output.rstrip('/')}/{n}" if isinstance(output, str) else output / n for n in names]
    return list(zip(files, folder)), False


def _cmd_predict(args) -> int:
    from tqdm.auto import tqdm

    from . import load
    from ._file_guards import check_outputs
    from .stream import predict_to_file, predict_to_zarr, prepare_zarr
    from .tiling import check_tile_shape

    seg = load(args.model, backend=args.backend)
    files = _expand_inputs(args.inputs)
    tile = None
    if args.tile:
        tile = tuple(args.tile) * seg.ndim_ if len(args.tile) == 1 else tuple(args.tile)
        check_tile_shape(tile, seg.ndim_)
    zarr_only = args.scheduler is not None or isinstance(args.output, str)
    targets, single = _targets(files, args.output, args.proba, zarr_only)
    check_outputs(targets)  # before anything is written
    if not single and isinstance(args.output, Path):
        args.output.mkdir(parents=True, exist_ok=True)
    if args.scheduler is not None:
        from .cluster import connect, write_tiles

        jobs = [prepare_zarr(seg, src, dst, proba=args.proba, tile_shape=tile, overwrite=args.overwrite)
                for src, dst in targets]
        total, done = sum(j.n_tiles for j in jobs), sum(j.n_done for j in jobs)
        with connect(args.scheduler) as client:
            for _ in tqdm(write_tiles(client, jobs), total=total, initial=done, desc="gpuseg predict", unit="tile"):
                pass
        for src, dst in targets:
            print(f"{src} -> {dst}")
        return 0
    for src, dst in tqdm(targets, desc="gpuseg predict", unit="image", disable=len(targets) < 2):
        if PurePosixPath(str(dst)).suffix == ".zarr":
            predict_to_zarr(seg, src, dst, proba=args.proba, tile_shape=tile, overwrite=args.overwrite)
        else:
            predict_to_file(seg, src, dst, proba=args.proba)
        print(f"{src} -> {dst}")


def _cmd_info(args) -> int:
    from .info import describe

    print(describe())


def _cmd_app(args) -> int:
    try:
        from . import app
    except ImportError as exc:
        raise RuntimeError(f"The app needs Dash and plotly: pip install 'gpuseg[app]' ({exc})") from None
    app.run(args.image, host=args.host, port=args.port, model=args.model)


COMMANDS = {"demo": _cmd_demo, "train": _cmd_train, "predict": _cmd_predict, "info": _cmd_info, "app": _cmd_app}

if __name__ == "__main__":
    sys.exit(main())
