"""The command line as people expect it: --version, help with defaults and examples, quiet by default,
axes from files, overlays, refusals of outputs it cannot write, the demo's files read back by train."""

import os
import subprocess
import sys
import warnings

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
import zarr

import gpuseg
from gpuseg.cli import build_parser, main
from gpuseg.predictor import Predictor


def test_version_and_help(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"gpuseg {gpuseg.__version__}"
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices
    for name, command in sub.items():
        for action in command._actions:
            assert action.help, f"gpuseg {name} {action.option_strings or action.dest} has no help"
        text = command.format_help()
        assert "examples:" in text and "gpuseg predict model.gpuseg movie.tif" in text
    text = sub["train"].format_help()
    assert "(default: 50)" in text and "(default: 16.0)" in text and "(default: auto)" in text


@pytest.fixture
def rgb_files(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 80, (64, 64, 3), dtype=np.uint8)
    image[:, 32:, 0] += 150
    scribbles = np.zeros((64, 64), np.uint8)
    scribbles[2:6, 4:28] = 1
    scribbles[2:6, 36:60] = 2
    iio.imwrite(tmp_path / "rgb.png", image)
    iio.imwrite(tmp_path / "scribbles.png", scribbles)
    return tmp_path, image


def _train(folder, *extra):
    return main(["train", str(folder / "rgb.png"), str(folder / "scribbles.png"), "-o", str(folder / "m.gpuseg"),
                 "--sigma-max", "2", "--n-estimators", "5", "--random-state", "0", "--backend", "cpu", *extra])


def test_rgb_png_trains_as_yxc_quietly_and_predicts_with_an_overlay(rgb_files, caplog):
    folder, image = rgb_files
    assert _train(folder) == 0
    seg = gpuseg.load(folder / "m.gpuseg")
    assert seg.channel_axis == -1 and seg.n_channels_ == 3  # YXC from the file, no --channel-axis
    assert main(["predict", str(folder / "m.gpuseg"), str(folder / "rgb.png"), "-o", str(folder / "out.png"),
                 "--overlay"]) == 0
    assert "gpuseg backend" not in caplog.text  # only with -v
    np.testing.assert_array_equal(iio.imread(folder / "out.png"), seg.predict(image))
    overlay = iio.imread(folder / "out_overlay.png")
    assert overlay.shape == (64, 64, 3) and len(np.unique(overlay.reshape(-1, 3), axis=0)) > 2
    assert main(["-v", "predict", str(folder / "m.gpuseg"), str(folder / "rgb.png"), "-o", str(folder / "v.npy")]) == 0
    assert "gpuseg backend:" in caplog.text


def test_cyx_ome_zarr_labels_go_under_labels(rgb_files, capsys):
    folder, image = rgb_files
    assert _train(folder) == 0
    axes = [{"name": "c", "type": "channel"}, {"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
    src = folder / "rgb.ome.zarr"
    group = zarr.create_group(str(src), attributes={"ome": {"version": "0.5", "multiscales": [{"axes": axes, "datasets": [
        {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1.0, 1.0, 1.0]}]}]}]}})
    group.create_array("0", data=np.moveaxis(image, -1, 0), chunks=(3, 32, 32))
    assert main(["predict", str(folder / "m.gpuseg"), str(src), "--backend", "cpu"]) == 0
    out = zarr.open_group(str(src / "labels" / "gpuseg"), mode="r")
    np.testing.assert_array_equal(out["0"][:], gpuseg.load(folder / "m.gpuseg").predict(image))
    assert zarr.open_group(str(src / "labels"), mode="r").attrs["ome"]["labels"] == ["gpuseg"]
    # the labels group is not part of the input's identity: a rerun finds its output complete
    assert main(["predict", str(folder / "m.gpuseg"), str(src), "--backend", "cpu"]) == 0
    capsys.readouterr()
    assert main(["predict", str(folder / "m.gpuseg"), str(src), "--proba", "--backend", "cpu"]) == 2
    assert "give -o" in capsys.readouterr().err
    v04 = zarr.create_group(str(folder / "v04.ome.zarr"), zarr_format=2, attributes={"multiscales": [
        {"version": "0.4", "axes": axes, "datasets": [{"path": "0"}]}]})
    v04.create_array("0", data=np.moveaxis(image, -1, 0))
    assert main(["predict", str(folder / "m.gpuseg"), str(folder / "v04.ome.zarr"), "--backend", "cpu"]) == 2
    assert "only labels of OME-Zarr 0.5 inputs" in capsys.readouterr().err


def test_outputs_refused_and_tiles_honoured(rgb_files, capsys, monkeypatch):
    folder, _ = rgb_files
    assert _train(folder) == 0
    model, src = str(folder / "m.gpuseg"), str(folder / "rgb.png")
    for output, message in [("out.bmp", "gpuseg writes .npy"), ("o.tif", None)]:
        code = main(["predict", model, src, src, "-o", str(folder / output), "--backend", "cpu"])
        assert code == 2
        assert (message or "2 inputs need a folder as -o, not a .tif file") in capsys.readouterr().err
    assert not (folder / "out.bmp").exists() and not (folder / "o.tif").exists()
    calls = []
    real = Predictor.classify
    monkeypatch.setattr(Predictor, "classify", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert main(["predict", model, src, "-o", str(folder / "t.tif"), "--tile", "16", "--backend", "cpu"]) == 0
    assert len(calls) == 16


def test_swapped_files_refused(tmp_path, capsys):
    iio.imwrite(tmp_path / "photo.png", np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8))
    iio.imwrite(tmp_path / "scribbles.png", np.zeros((64, 64), np.uint8))
    assert main(["train", str(tmp_path / "scribbles.png"), str(tmp_path / "photo.png"), "-o", str(tmp_path / "m.gpuseg"),
                 "--backend", "cpu"]) == 2
    assert "are the image and the scribbles swapped?" in capsys.readouterr().err


def test_time_lapse_and_input_check_on_the_command_line(tmp_path, small_model, mosaic, capsys):
    image = mosaic[0]
    model = small_model.save(tmp_path / "m.gpuseg")
    movie = np.stack([image, np.roll(image, 9, axis=1)]).astype(np.float32)  # a float copy of uint8 data
    tifffile.imwrite(tmp_path / "movie.tif", movie, imagej=True, metadata={"axes": "TYX"})
    with pytest.warns(gpuseg.guards.InputMismatchWarning, match="trained on uint8"):
        assert main(["predict", str(model), str(tmp_path / "movie.tif"), "-o", str(tmp_path / "l.tif")]) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", gpuseg.guards.InputMismatchWarning)
        assert main(["predict", str(model), str(tmp_path / "movie.tif"), "-o", str(tmp_path / "l.tif"),
                     "--no-input-check"]) == 0
    assert tifffile.TiffFile(tmp_path / "l.tif").series[0].axes == "TYX"
    np.save(tmp_path / "movie.npy", movie.astype(np.uint8))
    assert main(["predict", str(model), str(tmp_path / "movie.npy"), "-o", str(tmp_path / "n.npy")]) == 2
    assert "give them with --axes" in capsys.readouterr().err
    assert main(["predict", str(model), str(tmp_path / "movie.npy"), "-o", str(tmp_path / "n.npy"),
                 "--axes", "tyx"]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "n.npy")[1], small_model.predict(movie[1].astype(np.uint8)))


def test_demo_scribbles_train_again(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--size", "128", "--backend", "cpu"]) == 0
    demo = tmp_path / "gpuseg-demo"
    assert iio.imread(demo / "scribbles.png").ndim == 2
    assert main(["train", str(demo / "image.tif"), str(demo / "scribbles.png"), "-o", str(tmp_path / "again.gpuseg"),
                 "--sigma-max", "2", "--n-estimators", "5", "--backend", "cpu"]) == 0
    assert "classes [1, 2, 3]" in capsys.readouterr().out


def test_first_compile_is_announced_once(tmp_path):
    code = "import gpuseg._cpu as c; c.announce_first_compile(); c.announce_first_compile()"
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}  # an empty cache: nothing compiled yet
    err = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stderr
    assert err.count("compiling gpuseg's CPU kernels (once, about 20 s)") == 1


def test_benchmarks_check_their_extra_first(monkeypatch):
    import benchmarks.__main__ as bench

    monkeypatch.setattr(bench, "BENCH_EXTRA", ("matplotlib", "no_such_module_gpuseg"))
    monkeypatch.setattr(bench.suite, "run", lambda plan: pytest.fail("measured without the extra"))
    with pytest.raises(SystemExit, match=r"no_such_module_gpuseg.*pip install -e '\.\[bench\]'"):
        bench.main(["--quick"])


def test_one_progress_bar_for_many_files(rgb_files, capsys):
    folder, image = rgb_files
    assert _train(folder) == 0
    iio.imwrite(folder / "rgb2.png", image[::-1])
    capsys.readouterr()
    assert main(["predict", str(folder / "m.gpuseg"), str(folder / "rgb.png"), str(folder / "rgb2.png"),
                 "-o", str(folder / "out"), "--tile", "16", "--backend", "cpu"]) == 0
    captured = capsys.readouterr()
    assert "image" in captured.err and "tile" not in captured.err  # the files' bar, not the tiles' (16 each)
    assert captured.out.count(" -> ") == 2
