"""The ``gpuseg`` command line: argument parsing only; the work is in the library."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path, PurePosixPath

from . import __version__
from .features import PRESETS
from .guards import InputMismatchWarning
from .training import FOREST_DEFAULTS

EXAMPLES = """examples:
  gpuseg demo
  gpuseg train image.tif scribbles.png -o model.gpuseg --sigma-max 16
  gpuseg train rgb.png scribbles.png -o rgb.gpuseg            # RGB: axes YXC from the file
  gpuseg predict model.gpuseg movie.tif -o movie-labels.tif   # a TYX time-lapse, frame by frame
  gpuseg predict model.gpuseg cells.ome.zarr                  # labels into cells.ome.zarr/labels/gpuseg
  gpuseg predict model.gpuseg stack.tif -o p.tif --proba --axes ZCYX
"""


class _Help(argparse.RawDescriptionHelpFormatter):
    """Each option's default in its help (unless the help says it, or it is a flag), the examples kept as written."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def _feature_and_forest_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("features")
    g.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="a feature set by name (not with the sigma and --no-* options; without any of them: compact)")
    g.add_argument("--spacing", type=float, nargs="+", default=None, metavar="SIZE",
                   help="physical pixel size per spatial axis, e.g. 4 1 1 for a z-step of 4 pixels "
                   "(default: from the first image's OME/ImageJ metadata, else isotropic)")
    g.add_argument("--auto-context", action="store_true",
                   help="a second forest on the features and the first's smoothed class probabilities")
    g.add_argument("--sigma-min", type=float, default=None,
                   help="smallest Gaussian sigma, in pixels, of scikit-image's features (default: 0.5)")
    g.add_argument("--sigma-max", type=float, default=None,
                   help="largest Gaussian sigma, in pixels, of scikit-image's features (default: 16.0)")
    g.add_argument("--num-sigma", type=int, default=None, help="number of sigmas (default: one per octave)")
    g.add_argument("--no-intensity", action="store_true", help="leave out smoothed intensity")
    g.add_argument("--no-edges", action="store_true", help="leave out Sobel edges")
    g.add_argument("--no-texture", action="store_true", help="leave out Hessian eigenvalues")
    g.add_argument("--channel-axis", type=int, default=None,
                   help="axis holding channels, for images whose axes are neither in the file nor given by --axes")
    f = p.add_argument_group("random forest (scikit-learn names)")
    f.add_argument("--n-estimators", type=int, default=FOREST_DEFAULTS["n_estimators"], help="number of trees")
    f.add_argument("--max-depth", type=int, default=FOREST_DEFAULTS["max_depth"], help="largest depth of a tree")
    f.add_argument("--max-samples", type=_max_samples, default=FOREST_DEFAULTS["max_samples"],
                   help="fraction of the scribbled pixels each tree draws, or 'auto' (one per 256 image pixels, "
                        "256 to 20,000)")
    f.add_argument("--min-samples-leaf", type=int, default=FOREST_DEFAULTS["min_samples_leaf"], help="fewest pixels in a leaf")
    f.add_argument("--random-state", type=int, default=None, help="seed, for repeatable models")


def _max_samples(text: str):
    return text if text == "auto" else float(text)


def _path_or_url(text: str):
    return text if "://" in text else Path(text)


def _common_options(p: argparse.ArgumentParser, axes=None) -> None:
    p.add_argument("--backend", choices=("auto", "cpu", "gpu"), default="auto",
                   help="where to compute: the GPU when one works (auto), or the one named")
    if axes:
        p.add_argument("--axes", default=None, type=str.upper,
                       help="the images' axes in OME letters, e.g. TYX, YXC, CZYX, TCZYX: T frame by frame, "
                       f"C channels, Z 3D (default: what the file says, else {axes})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpuseg", description="Trainable pixel classification on GPUs and CPUs.",
                                     epilog=EXAMPLES, formatter_class=_Help)
    parser.add_argument("--version", action="version", version=f"gpuseg {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens (backend, timings)")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name, text):
        return sub.add_parser(name, help=text, description=text, epilog=EXAMPLES, formatter_class=_Help)

    demo = command("demo", "segment a bundled sample and write labels, overlay and model")
    demo.add_argument("--out", type=Path, default=Path("gpuseg-demo"), help="folder for the files")
    demo.add_argument("--size", type=int, default=1024, help="side of the sample image in pixels")
    _common_options(demo)

    train = command("train", "train a model on IMAGE LABELS pairs")
    train.add_argument("pairs", nargs="+", metavar="IMAGE LABELS",
                       help="image and scribble files, alternating (several pairs train one model)")
    train.add_argument("-o", "--output", type=Path, required=True, help="model file (.gpuseg)")
    _feature_and_forest_options(train)
    _common_options(train, axes="the image's dimensions and --channel-axis")

    predict = command("predict", "segment images with a model")
    predict.add_argument("model", type=Path, help="model file (.gpuseg)")
    predict.add_argument("inputs", nargs="+", type=_path_or_url,
                         help="image files or folders of them (Zarr images also as URLs: s3://, gs://, file://)")
    predict.add_argument("-o", "--output", type=_path_or_url, default=None,
                         help="output file (.tif: ImageJ hyperstack, .ome.tif, .npy, .png, .zarr: OME-Zarr) for one "
                         "input, or a folder (a URL for Zarr; default for OME-Zarr inputs: their labels/gpuseg)")
    predict.add_argument("--proba", action="store_true", help="write class probabilities instead of labels")
    predict.add_argument("--overlay", action="store_true",
                         help="also write the labels in colour over the image, as <output>_overlay.png (2D)")
    predict.add_argument("--tile", type=int, nargs="+", default=None, metavar="N",
                         help="tile shape, one or per axis (default: from free memory, or the input's Zarr chunks)")
    predict.add_argument("--overwrite", action="store_true", help="replace an output made with another model")
    predict.add_argument("--no-input-check", action="store_true",
                         help="do not warn about images of another dtype or range than the training images")
    predict.add_argument("--scheduler", default=None, metavar="ADDRESS",
                         help="predict on a Dask cluster into Zarr outputs the workers write: a scheduler address "
                              "(tcp://host:8786), local:N (N worker processes here) or local-cuda (one per GPU)")
    _common_options(predict, axes="the model's own layout, e.g. YX or YXC")

    command("info", "versions, backends, GPU")

    app = command("app", "open the interactive app in the browser")
    app.add_argument("image", nargs="?", type=Path, default=None, help="image to open (default: a bundled sample)")
    app.add_argument("--host", default="127.0.0.1", help="address to serve on")
    app.add_argument("--port", type=int, default=8050, help="port to serve on")
    app.add_argument("--model", type=Path, default=None, help="model file to open")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("gpuseg").setLevel(logging.INFO if args.verbose else logging.WARNING)
    try:
        with warnings.catch_warnings():
            if getattr(args, "no_input_check", False):
                warnings.simplefilter("ignore", InputMismatchWarning)
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
    from .axes import training_frames
    from .guards import check_scribbles
    from .image_io import open_image
    from .metadata import read_metadata, read_spacing

    if len(args.pairs) % 2:
        raise ValueError("train takes IMAGE LABELS pairs: an even number of files.")
    forest = {k: getattr(args, k) for k in ("n_estimators", "max_depth", "max_samples", "min_samples_leaf",
                                            "random_state") if getattr(args, k) is not None}
    images = [open_image(Path(p)) for p in args.pairs[0::2]]
    labels = [open_image(Path(p)) for p in args.pairs[1::2]]
    for lab, path in zip(labels, args.pairs[1::2]):
        check_scribbles(lab, path)
    axes = [args.axes or read_metadata(p, im.shape).axes for p, im in zip(args.pairs[0::2], images)]
    channel_axis = args.channel_axis
    if channel_axis is None and axes[0] is not None and dict(zip(axes[0], images[0].shape)).get("C", 1) > 1:
        channel_axis = -1
    spacing = args.spacing
    if spacing is None:
        ndim = sum(a in "ZYX" for a in axes[0]) if axes[0] is not None else len(labels[0].shape)
        spacing = read_spacing(args.pairs[0], ndim)
        if spacing is not None:
            print(f"spacing {spacing} from {args.pairs[0]}'s metadata")
    features = {k: v for k, v in (("intensity", not args.no_intensity), ("edges", not args.no_edges),
                                  ("texture", not args.no_texture)) if not v}
    features.update({k: getattr(args, k) for k in ("sigma_min", "sigma_max", "num_sigma") if getattr(args, k)})
    seg = Segmenter(backend=args.backend, preset=args.preset, spacing=spacing, channel_axis=channel_axis,
                    auto_context=args.auto_context, **features, **forest)
    if any(a is not None and a not in ("YX", "ZYX") for a in axes):
        if None in axes:
            raise ValueError("Some images say their axes and others do not: give --axes for all of them.")
        frames = [training_frames(im, lab, a, channel_axis) for im, lab, a in zip(images, labels, axes)]
        seg.fit([f for ims, _ in frames for f in ims], [f for _, labs in frames for f in labs])
    else:
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


def _targets(files: list, output, proba: bool, zarr_only: bool = False) -> tuple:
    """``(input, output)`` pairs (one output file, a folder of them, or the labels of OME-Zarr inputs), and the
    local folder to make (``None`` when there is none, or it is a URL: object stores have no folders)."""
    from .image_io import OUTPUT_SUFFIXES, ZARR_SUFFIX

    kind = "proba" if proba else "labels"
    if output is None:
        if proba or not all(_is_ome_zarr_05(f) for f in files):
            raise ValueError("give -o: only labels of OME-Zarr 0.5 inputs have a default place (their labels/gpuseg).")
        return [(f, f"{f.rstrip('/')}/labels/gpuseg" if isinstance(f, str) else f / "labels" / "gpuseg")
                for f in files], None
    name = PurePosixPath(output) if isinstance(output, str) else output
    suffix = name.suffix.lower()
    known = OUTPUT_SUFFIXES + (ZARR_SUFFIX,)
    if len(files) == 1 and suffix in known:
        if zarr_only and suffix != ZARR_SUFFIX:
            raise ValueError(f"With --scheduler or a URL output, outputs are Zarr, not {name.suffix}: "
                             "name the output *.zarr, or a folder.")
        return [(files[0], output)], None
    if suffix and not (isinstance(output, Path) and output.is_dir()):
        raise ValueError(f"Cannot write {output}: " + (
            f"gpuseg writes {', '.join(known)} files." if suffix not in known else
            f"{len(files)} inputs need a folder as -o, not a {suffix} file."))
    zarr_in = any(PurePosixPath(str(f)).suffix == ZARR_SUFFIX for f in files)
    out_suffix = ZARR_SUFFIX if zarr_only or zarr_in else ".tif"
    names = [f"{PurePosixPath(str(f).rstrip('/')).stem}_{kind}{out_suffix}" for f in files]
    if isinstance(output, str):
        return [(f, f"{output.rstrip('/')}/{n}") for f, n in zip(files, names)], None
    return [(f, output / n) for f, n in zip(files, names)], output


def _is_ome_zarr_05(path) -> bool:
    """An OME-Zarr image on Zarr v3 (NGFF 0.5), whose ``labels`` group gpuseg can add to."""
    from .image_io import ZARR_SUFFIX, open_image_and_multiscale

    if PurePosixPath(str(path).rstrip("/")).suffix != ZARR_SUFFIX:
        return False
    array, ome = open_image_and_multiscale(path)
    return ome is not None and array.metadata.zarr_format == 3


def _cmd_predict(args) -> int:
    from tqdm.auto import tqdm

    from . import load
    from ._file_guards import check_outputs
    from .stream import predict_to_file, predict_to_zarr, prepare_zarr, run_jobs
    from .tiling import check_tile_shape

    seg = load(args.model, backend=args.backend)
    files = _expand_inputs(args.inputs)
    tile = None
    if args.tile:
        tile = tuple(args.tile) * seg.ndim_ if len(args.tile) == 1 else tuple(args.tile)
        check_tile_shape(tile, seg.ndim_)
    if args.overlay and args.proba:
        raise ValueError("--overlay colours labels: leave out --proba, or --overlay.")
    zarr_only = args.scheduler is not None or isinstance(args.output, str)
    targets, folder = _targets(files, args.output, args.proba, zarr_only)
    if args.overlay and (args.scheduler is not None or any(isinstance(d, str) for _, d in targets)):
        raise ValueError("--overlay writes a PNG beside a local output: leave out --scheduler and URL outputs.")
    check_outputs(targets)  # before anything is written
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    if args.scheduler is not None:
        from .cluster import connect

        jobs = [prepare_zarr(seg, src, dst, proba=args.proba, tile_shape=tile, overwrite=args.overwrite,
                             axes=args.axes) for src, dst in targets]
        with connect(args.scheduler) as client:
            run_jobs(jobs, client)
        for src, dst in targets:
            print(f"{src} -> {dst}")
        return 0
    bar = tqdm(targets, desc="gpuseg predict", unit="image", disable=len(targets) < 2)
    for src, dst in bar:
        if PurePosixPath(str(dst)).suffix.lower() in (".zarr", ""):
            predict_to_zarr(seg, src, dst, proba=args.proba, tile_shape=tile, overwrite=args.overwrite,
                            axes=args.axes, progress=len(targets) == 1)
        else:
            predict_to_file(seg, src, dst, proba=args.proba, axes=args.axes, tile_shape=tile,
                            progress=None if len(targets) == 1 else False)  # one bar at a time
        bar.write(f"{src} -> {dst}")
        if args.overlay:
            bar.write(f"{src} -> {_write_overlay(seg, src, dst, args.axes)}")


def _write_overlay(seg, src, dst, axes):
    """``<dst stem>_overlay.png``: the labels at ``dst`` in colour over the image at ``src`` (2D results only)."""
    import imageio.v3 as iio
    import numpy as np

    from .image_io import atomic_write, open_image
    from .samples import overlay
    from .stream import open_source

    frames = open_source(seg, src, axes).frames
    if frames.out_axes(False) != "YX":
        raise ValueError(f"--overlay draws 2D labels; {src} gives {frames.out_axes(False)}.")
    image = np.asarray(next(iter(frames))[1])
    if seg.channel_axis is not None:
        image = np.moveaxis(image, seg.channel_axis, -1)
    labels = np.asarray(open_image(dst)[()])
    path = dst.with_name(f"{dst.name.split('.')[0]}_overlay.png")
    atomic_write(path, lambda f: f.write(iio.imwrite("<bytes>", overlay(image, labels), extension=".png")))
    return path


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
